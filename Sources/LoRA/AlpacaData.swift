// Alpaca instruction data as LLM-Pruner's post_training.py (alpaca-lora) uses it: records with instruction,
// input and output; the Alpaca prompt template; tokenization truncated at cutoff_len with EOS appended when
// there is room; prompt tokens masked −100 unless train_on_inputs; and the validation split of
// datasets.train_test_split(test_size = val_set_size, shuffle = True, seed = 42).
import Foundation
import Tokenizer

public struct AlpacaRecord: Equatable, Sendable {
    public var instruction: String
    public var input: String
    public var output: String
    public init(instruction: String, input: String = "", output: String) {
        self.instruction = instruction
        self.input = input
        self.output = output
    }
}

public enum AlpacaData {
    /// Reads a JSON array of records or JSON Lines (one object per line). `input` may be absent or null.
    public static func load(path: String) throws -> [AlpacaRecord] {
        func fail(_ r: String) -> LoRAError { .malformedData(path: path, reason: r) }
        guard let data = FileManager.default.contents(atPath: path) else { throw fail("cannot read the file") }
        guard let first = data.first(where: { ![0x20, 0x09, 0x0A, 0x0D, 0xEF, 0xBB, 0xBF].contains($0) }) else {
            throw fail("empty file, expected a JSON array or JSON Lines of {instruction, input, output}")
        }
        var objects: [(where: String, value: Any)] = []
        if first == UInt8(ascii: "[") {
            let any: Any
            do { any = try JSONSerialization.jsonObject(with: data) } catch {
                throw fail("not valid JSON (\(oneLine(error)))")
            }
            guard let array = any as? [Any] else { throw fail("top level is not a JSON array") }
            objects = array.enumerated().map { ("record \($0.offset)", $0.element) }
        } else if first == UInt8(ascii: "{") {
            for (i, line) in data.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated() {
                guard line.contains(where: { ![0x20, 0x09, 0x0D].contains($0) }) else { continue }
                do { objects.append(("line \(i + 1)", try JSONSerialization.jsonObject(with: Data(line)))) } catch {
                    throw fail("line \(i + 1): not valid JSON (\(oneLine(error)))")
                }
            }
        } else {
            throw fail("expected a JSON array ([...]) or JSON Lines ({...} per line) of Alpaca records")
        }
        guard !objects.isEmpty else { throw fail("no records") }
        return try objects.map { w, value in
            guard let o = value as? [String: Any] else { throw fail("\(w): not a JSON object") }
            func field(_ k: String, required: Bool) throws -> String {
                switch o[k] {
                case let s as String: return s
                case nil where !required, is NSNull where !required: return ""
                case nil: throw fail("\(w): missing \"\(k)\"")
                default: throw fail("\(w): \"\(k)\" is not a string")
                }
            }
            return AlpacaRecord(instruction: try field("instruction", required: true),
                                input: try field("input", required: false), output: try field("output", required: true))
        }
    }

    /// alpaca-lora's Prompter.generate_prompt with templates/alpaca.json: the input variant when input is non-empty;
    /// the output (label) appended when given and non-empty.
    public static func prompt(instruction: String, input: String, output: String? = nil) -> String {
        var s: String
        if !input.isEmpty {
            s = "Below is an instruction that describes a task, paired with an input that provides further context. "
                + "Write a response that appropriately completes the request.\n\n### Instruction:\n\(instruction)\n\n"
                + "### Input:\n\(input)\n\n### Response:\n"
        } else {
            s = "Below is an instruction that describes a task. Write a response that appropriately completes the "
                + "request.\n\n### Instruction:\n\(instruction)\n\n### Response:\n"
        }
        if let output, !output.isEmpty { s += output }
        return s
    }

    /// (train, validation) record indices as datasets' train_test_split(test_size: valSize, shuffle: True, seed):
    /// p = default_rng(seed).permutation(n); validation = p[..<valSize], train = p[valSize...]. valSize 0: no split,
    /// train in file order.
    public static func split(count n: Int, validationSize: Int, seed: UInt64 = 42) throws -> (train: [Int], validation: [Int]) {
        guard validationSize >= 0, validationSize < n else {
            throw LoRAError.invalidConfig("validation size \(validationSize) must be in 0..<\(n) (the number of records)")
        }
        if validationSize == 0 { return (Array(0..<n), []) }
        var rng = NumpyRandom(seed: seed)
        let p = rng.permutation(n)
        return (Array(p[validationSize...]), Array(p[..<validationSize]))
    }
}

/// Tokenizes Alpaca records as post_training.py's generate_and_tokenize_prompt.
public struct AlpacaTokenization {
    public let tokenizer: BPETokenizer
    public var cutoff: Int = 256
    public var trainOnInputs = false
    /// Whether the user prompt is tokenized with EOS (then one token less is masked); the reference default is false.
    public var addEOSToPrompt = false

    public init(tokenizer: BPETokenizer, cutoff: Int = 256, trainOnInputs: Bool = false) {
        self.tokenizer = tokenizer
        self.cutoff = cutoff
        self.trainOnInputs = trainOnInputs
    }

    /// tokenizer(text, truncation=True, max_length=cutoff) with the tokenizer's own special tokens, then EOS
    /// appended if `addEOS`, the last id is not already EOS, and the result is shorter than the cutoff.
    public func tokenize(_ text: String, addEOS: Bool) -> [Int32] {
        var ids = tokenizer.encode(text, addSpecialTokens: true)
        if ids.count > cutoff {
            // HF truncates the text's tokens and keeps the special ones around them (BOS for Llama tokenizers).
            let prefix = tokenizer.specialPrefixIds, suffix = tokenizer.specialSuffixIds
            let body = tokenizer.encode(text, addSpecialTokens: false)
            ids = Array((prefix + body.prefix(max(0, cutoff - prefix.count - suffix.count)) + suffix).prefix(cutoff))
        }
        if addEOS, let eos = tokenizer.eosId.map(Int32.init), ids.last != eos, ids.count < cutoff { ids.append(eos) }
        return ids
    }

    public func example(_ r: AlpacaRecord) -> TokenizedExample {
        let full = tokenize(AlpacaData.prompt(instruction: r.instruction, input: r.input, output: r.output), addEOS: true)
        var labels = full
        if !trainOnInputs {
            var promptLength = tokenize(AlpacaData.prompt(instruction: r.instruction, input: r.input), addEOS: addEOSToPrompt).count
            if addEOSToPrompt { promptLength -= 1 }
            for i in 0..<min(promptLength, labels.count) { labels[i] = TokenBatch.ignoreIndex }
        }
        return TokenizedExample(ids: full, labels: labels)
    }
}

func oneLine(_ error: Error) -> String {
    let s = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String ?? "\(error)"
    return s.split(whereSeparator: \.isNewline).joined(separator: " ")
}
