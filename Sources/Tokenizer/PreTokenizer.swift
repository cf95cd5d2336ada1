// Pre-tokenization: cutting text into the words BPE runs on. `PreTokenizer` names the schemes a GGUF selects;
// `PreTokenizerStep` is the general pipeline a tokenizer.json describes (Split, ByteLevel, Digits, Sequence),
// applied the way HF `tokenizers` applies it: every step re-splits every piece the previous steps produced.
import Foundation

/// The pre-tokenizer of a GGUF byte-level vocabulary, chosen from `tokenizer.ggml.pre` the way transformers
/// (`integrations/gguf/gguf_tokenizer_mapping.py`) chooses it.
public enum PreTokenizer: Sendable, Equatable {
    /// `ByteLevel(add_prefix_space: false)` with GPT-2's regex. transformers' default for a GGUF `gpt2`
    /// vocabulary whose `pre` is not in its table -- including "smollm", "gpt2", "default".
    case gpt2
    /// `Split(Llama-3 regex, isolated)` then `ByteLevel(use_regex: false)`: pre = llama3, llama-bpe, smaug-bpe,...
    case llama3
    /// As Llama-3 but one digit at a time (`\p{N}` instead of `\p{N}{1,3}`): pre = qwen2, deepseek-r1-qwen,...
    case qwen2
    /// Any other split regex (isolated) then `ByteLevel(use_regex: false)`, run with NSRegularExpression.
    case regex(String)

    /// The scheme transformers uses for this `tokenizer.ggml.pre` value.
    public init(ggufPre: String) {
        switch ggufPre {
        case "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
             "jina-v5-nano", "dbrx", "smaug-bpe":
            self = .llama3
        case "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez":
            self = .qwen2
        case "tekken":
            self = .regex(#"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"#)
        case "gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2":
            self = .regex(#"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"#)
        default:
            self = .gpt2
        }
    }

    func steps() throws -> [PreTokenizerStep] {
        switch self {
        case .gpt2: return [.byteLevel(addPrefixSpace: false, useRegex: true)]
        case .llama3: return [.split(try SplitPattern(regex: KnownPattern.llama3Regex), .isolated, invert: false),
                              .byteLevel(addPrefixSpace: false, useRegex: false)]
        case .qwen2: return [.split(try SplitPattern(regex: KnownPattern.qwen2Regex), .isolated, invert: false),
                             .byteLevel(addPrefixSpace: false, useRegex: false)]
        case .regex(let r): return [.split(try SplitPattern(regex: r), .isolated, invert: false),
                                    .byteLevel(addPrefixSpace: false, useRegex: false)]
        }
    }
}

/// HF `SplitDelimiterBehavior`.
enum SplitBehavior: String, Sendable {
    case removed = "Removed", isolated = "Isolated", mergedWithPrevious = "MergedWithPrevious",
         mergedWithNext = "MergedWithNext", contiguous = "Contiguous"
}

/// What a Split step looks for.
enum SplitPattern: @unchecked Sendable {
    case known(KnownPattern)
    case regex(NSRegularExpression)
    case literal([Unicode.Scalar])
    /// Each numeric scalar (Rust `char::is_numeric`) is one match: the Digits pre-tokenizer.
    case numericScalar

    /// Known regexes get a hand-written scanner; others run on ICU (NSRegularExpression), whose `\s` is Unicode
    /// White_Space like Oniguruma's (checked over U+0000...U+30FF) and whose `\p{L}`/`\p{N}` are the same
    /// general categories. Verified against HF on the gpt-4o and tekken splits (tests + an 8k-string fuzz run).
    init(regex: String) throws {
        if let k = KnownPattern(regex: regex) { self = .known(k); return }
        do { self = .regex(try NSRegularExpression(pattern: regex, options: [])) } catch {
            throw TokenizerError.badRegex(pattern: regex, reason: (error as NSError).localizedDescription)
        }
    }

    /// Match ranges (scalar offsets, relative to the piece) in order.
    func matches(_ s: UnsafeBufferPointer<Unicode.Scalar>, _ cls: UnsafeBufferPointer<CharClass>) -> [(Int, Int)] {
        var out = [(Int, Int)]()
        switch self {
        case .known(let k):
            k.scan(s, cls, 0, s.count) { out.append(($0, $1)) }
        case .numericScalar:
            for i in 0..<s.count where cls[i] == .number { out.append((i, i + 1)) }
        case .literal(let lit):
            guard !lit.isEmpty, lit.count <= s.count else { return out }
            var i = 0
            while i + lit.count <= s.count {
                var ok = true
                for t in 0..<lit.count where s[i + t] != lit[t] { ok = false; break }
                if ok { out.append((i, i + lit.count)); i += lit.count } else { i += 1 }
            }
        case .regex(let re):
            var str = String.UnicodeScalarView()
            str.append(contentsOf: s)
            let text = String(str)
            // UTF-16 offset -> scalar offset
            var u16ToScalar = [Int](repeating: 0, count: text.utf16.count + 1)
            var u = 0
            for (k, sc) in s.enumerated() {
                let w = sc.value > 0xFFFF ? 2 : 1
                for t in 0..<w { u16ToScalar[u + t] = k }
                u += w
            }
            u16ToScalar[u] = s.count
            let ns = NSRange(location: 0, length: u)
            for m in re.matches(in: text, options: [], range: ns) {
                let a = u16ToScalar[m.range.location], b = u16ToScalar[m.range.location + m.range.length]
                out.append((a, b))
            }
        }
        return out
    }
}

/// One step of the pre-tokenizer pipeline.
enum PreTokenizerStep: Sendable {
    case split(SplitPattern, SplitBehavior, invert: Bool)
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    /// HF Metaspace: " " -> replacement, the prefix per scheme, then (if split) cut before each replacement.
    case metaspace(Unicode.Scalar, PrependScheme, split: Bool)
}

/// A piece of text during pre-tokenization.
typealias Piece = ArraySlice<Unicode.Scalar>

enum PreTokenizerPipeline {
    /// Splits `piece` by a pattern with a behaviour, as HF `NormalizedString::split` does.
    static func split(_ piece: Piece, _ pattern: SplitPattern, _ behavior: SplitBehavior, invert: Bool,
                      into out: inout [Piece]) {
        let base = piece.startIndex
        var marked = [(Int, Int, Bool)]()  // (start, end, isMatch), tiling the piece
        piece.withUnsafeBufferPointer { sp in
            let cls = Classifier.classes(sp)
            cls.withUnsafeBufferPointer { cp in
                var prev = 0
                for (a, b) in pattern.matches(sp, cp) {
                    if a > prev { marked.append((prev, a, false)) }
                    marked.append((a, b, true))
                    prev = b
                }
                if prev < sp.count { marked.append((prev, sp.count, false)) }
            }
        }
        if invert { marked = marked.map { ($0.0, $0.1, !$0.2) } }
        var result = [(Int, Int)]()
        switch behavior {
        case .isolated:
            result = marked.map { ($0.0, $0.1) }
        case .removed:
            result = marked.filter { !$0.2 }.map { ($0.0, $0.1) }
        case .mergedWithPrevious:
            var previousMatch = false
            for (a, b, m) in marked {
                if m && !previousMatch, !result.isEmpty { result[result.count - 1].1 = b } else { result.append((a, b)) }
                previousMatch = m
            }
        case .mergedWithNext:
            var previousMatch = false
            for (a, b, m) in marked.reversed() {
                if m && !previousMatch, !result.isEmpty { result[result.count - 1].0 = a } else { result.append((a, b)) }
                previousMatch = m
            }
            result.reverse()
        case .contiguous:
            var previousMatch = false
            for (a, b, m) in marked {
                if m == previousMatch, !result.isEmpty { result[result.count - 1].1 = b } else { result.append((a, b)) }
                previousMatch = m
            }
        }
        for (a, b) in result where b > a { out.append(piece[(base + a)..<(base + b)]) }
    }
}
