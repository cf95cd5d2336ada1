// `BPETokenizer.restricted(toVocabularySize:)`: the cut tokenizer only emits ids below the limit, still round-trips
// text, gives the full tokenizer's ids wherever those were all below the limit (the fixtures' merges create ids in
// rank order, so such texts used kept merges only), is exported and re-read unchanged, and refuses a cut that
// would lose a byte of the alphabet or a token the tokenizer needs. SmolLM2 (the default model's GGUF) is cut to
// LLaMA's 32000, as `llmprune synth` does; those tests are skipped when the GGUF is absent.
import Eval
import Foundation
import Testing
import Tokenizer

struct RestrictionTests {
    /// Checks the cut tokenizer `small` (limit `v`) against `full` on `strings`; returns how many strings got
    /// different ids.
    @discardableResult
    static func check(_ full: BPETokenizer, _ small: BPETokenizer, limit v: Int, _ strings: [String],
                      _ what: String) -> Int {
        #expect(small.vocabularySize <= v)
        var changed = 0, failures = 0
        for (i, s) in strings.enumerated() where failures <= 10 {
            for special in [false, true] {
                let f = full.encode(s, addSpecialTokens: special), r = small.encode(s, addSpecialTokens: special)
                if let bad = r.first(where: { $0 < 0 || Int($0) >= v }) {
                    failures += 1
                    Issue.record("\(what) #\(i) \(s.debugDescription): id \(bad) >= \(v)")
                }
                if f.allSatisfy({ Int($0) < v }) {
                    if r != f {
                        failures += 1
                        Issue.record("\(what) #\(i) \(s.debugDescription) special=\(special): \(r) vs full \(f)")
                    }
                } else if !special {
                    changed += 1
                }
                // the text survives wherever the full tokenizer's decoding gave it back
                if full.decode(f) == s && small.decode(r) != s {
                    failures += 1
                    Issue.record("\(what) #\(i) \(s.debugDescription): decodes to \(small.decode(r).debugDescription)")
                }
            }
        }
        // tokenizer.json of the cut tokenizer: re-read, same ids; every id in it below the limit
        do {
            let json = try small.tokenizerJSON()
            let back = try BPETokenizer(tokenizerJSONData: json)
            #expect(back.vocabularySize == small.vocabularySize)
            ExportTests.expectSameIds(small, back, strings, what + " restricted, exported")
            let root = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
            let model = try #require(root["model"] as? [String: Any])
            let vocab = try #require(model["vocab"] as? [String: Int])
            #expect(vocab.values.allSatisfy { $0 < v })
            let added = try #require(root["added_tokens"] as? [[String: Any]])
            #expect(added.allSatisfy { ($0["id"] as? Int ?? .max) < v })
            _ = try small.tokenizerConfigJSON(modelMaxLength: 2048)
        } catch {
            Issue.record("\(what): export of the restricted tokenizer failed: \(error)")
        }
        return changed
    }

    // MARK: tiny fixtures (always present)

    @Test(arguments: TinyTokenizerTests.names)
    func tinyTokenizersCut(name: String) throws {
        let full = try TinyTokenizerTests.load(name)
        let strings = try ExportTests.tinyStrings()
        for v in [400, 300] {
            let small = try full.restricted(toVocabularySize: v)
            let changed = Self.check(full, small, limit: v, strings, "\(name) → \(v)")
            #expect(changed > 0, "\(name) → \(v): no string used a dropped token, the test shows nothing")
            #expect(small.bosId == full.bosId && small.eosId == full.eosId)
        }
        // nothing to cut: the tokenizer itself
        #expect(try full.restricted(toVocabularySize: full.vocabularySize) === full)
        #expect(try full.restricted(toVocabularySize: 100_000) === full)
    }

    @Test func addedTokenBeyondTheLimitIsDropped() throws {
        let full = try TinyTokenizerTests.load("tiny_llama3")   // "<think>" is added token 500
        let think = try #require(full.id(of: "<think>"))
        #expect(think == 500)
        let small = try full.restricted(toVocabularySize: 500)
        #expect(small.id(of: "<think>") == nil)
        #expect(small.token(of: 500) == nil)
        let ids = small.encode("a <think> b")
        #expect(!ids.contains(500))
        #expect(small.decode(ids) == full.decode(full.encode("a <think> b")))
        // the special tokens below the limit are still matched whole
        let eot = try #require(full.id(of: "<|eot_id|>"))
        #expect(small.encode("x<|eot_id|>y", addSpecialTokens: false).contains(Int32(eot)))
    }

    /// A GGUF-style byte-level vocabulary: the 256 byte tokens (ids 0...255), "ab" (256) from the merge "a b",
    /// "<eos>" (257, CONTROL).
    static func byteVocabulary(eos: Bool) throws -> BPETokenizer {
        var bytes = [String]()
        var next: UInt32 = 256
        for b in 0..<256 {   // GPT-2's bytes_to_unicode
            if (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b) {
                bytes.append(String(Unicode.Scalar(UInt32(b))!))
            } else {
                bytes.append(String(Unicode.Scalar(next)!)); next += 1
            }
        }
        let vocab = bytes + ["ab", "<eos>"]
        return try BPETokenizer(vocabulary: vocab, merges: ["a b"], tokenTypes: Array(repeating: 1, count: 257) + [3],
                                preTokenizer: "gpt2", bosId: nil, eosId: eos ? 257 : nil, addBOS: false)
    }

    @Test func droppedMergeGivesTheParts() throws {
        let full = try Self.byteVocabulary(eos: false)
        let a = Int32(UInt8(ascii: "a")), b = Int32(UInt8(ascii: "b"))
        #expect(full.encode("ab<eos>") == [256, 257])
        let keepMerge = try full.restricted(toVocabularySize: 257)
        #expect(keepMerge.encode("ab<eos>") == [256, Int32(UInt8(ascii: "<")), Int32(UInt8(ascii: "e")),
                                               Int32(UInt8(ascii: "o")), Int32(UInt8(ascii: "s")), Int32(UInt8(ascii: ">"))])
        let noMerge = try full.restricted(toVocabularySize: 256)
        #expect(noMerge.vocabularySize == 256)
        #expect(noMerge.encode("ab") == [a, b])
        #expect(noMerge.decode(noMerge.encode("ab<eos> café")) == "ab<eos> café")
        let back = try BPETokenizer(tokenizerJSONData: try noMerge.tokenizerJSON())
        #expect(back.encode("abab ab") == noMerge.encode("abab ab"))
    }

    // MARK: refusals

    @Test func losingAByteThrows() throws {
        let full = try TinyTokenizerTests.load("tiny_gpt2")   // byte tokens are ids 1...256
        let error = #expect(throws: TokenizerError.self) { try full.restricted(toVocabularySize: 200) }
        let message = error.map { "\($0)" } ?? ""
        #expect(message.contains("byte-level alphabet"), "\(message)")
        #expect(throws: TokenizerError.self) { try full.restricted(toVocabularySize: 256) }   // byte 256 lost
        _ = try full.restricted(toVocabularySize: 257)                                        // all bytes kept
        #expect(throws: TokenizerError.self) { try full.restricted(toVocabularySize: 0) }
    }

    @Test func losingTheEOSThrows() throws {
        let full = try Self.byteVocabulary(eos: true)
        let error = #expect(throws: TokenizerError.self) { try full.restricted(toVocabularySize: 257) }
        let message = error.map { "\($0)" } ?? ""
        #expect(message.contains("EOS"), "\(message)")
        _ = try full.restricted(toVocabularySize: 258)
    }

    @Test func losingAPostProcessorTokenThrows() throws {
        // BOS added by the post-processor, at the last id
        let json = #"""
        {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "<s>": 3}, "merges": ["a b"]},
         "added_tokens": [{"id": 3, "content": "<s>", "special": true}],
         "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                            {"Sequence": {"id": "A", "type_id": 0}}],
                            "special_tokens": {"<s>": {"id": "<s>", "ids": [3], "tokens": ["<s>"]}}}}
        """#
        let full = try BPETokenizer(tokenizerJSONData: Data(json.utf8))
        #expect(full.encode("ab") == [3, 2])
        #expect(throws: TokenizerError.self) { try full.restricted(toVocabularySize: 3) }
    }

    @Test func losingACharacterOfAPlainBPEThrows() throws {
        let json = #"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "c": 3}, "merges": ["a b"]}}"#
        let full = try BPETokenizer(tokenizerJSONData: Data(json.utf8))
        #expect(throws: TokenizerError.self) { try full.restricted(toVocabularySize: 3) }
        let two = try #require(try? BPETokenizer(tokenizerJSONData: Data(
            #"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}}"#.utf8)))
        let cut = try two.restricted(toVocabularySize: 2)   // only the merge goes
        #expect(cut.encode("ab") == [0, 1])
    }
}

// MARK: SmolLM2 → 32000 (as `llmprune synth --shape llama-7b` writes it)

@Suite(.enabled(if: Fixtures.smolGGUFExists, "SmolLM2 GGUF not present"), .serialized)
struct SmolLM2RestrictionTests {
    static let shared: Result<(BPETokenizer, BPETokenizer), Error> = Result {
        let full = try GGUFTokenizerMetadata(url: Fixtures.smolGGUF).tokenizer()
        return (full, try full.restricted(toVocabularySize: 32000))
    }

    @Test func stringsStayBelow32000() throws {
        let (full, small) = try Self.shared.get()
        #expect(full.vocabularySize == 49152)
        #expect(small.vocabularySize == 32000)
        #expect(small.bosId == full.bosId && small.eosId == full.eosId)
        let strings = try SmolExpected.load().strings
        let changed = RestrictionTests.check(full, small, limit: 32000, strings, "SmolLM2 → 32000")
        #expect(changed > 0)
        for s in strings { #expect(small.decode(small.encode(s)) == s) }
        #expect(small.encode("<|im_start|>user\nhi<|im_end|>") == full.encode("<|im_start|>user\nhi<|im_end|>"))
    }

    @Test func ptbValidStaysBelow32000() throws {
        let (full, small) = try Self.shared.get()
        let e = try #require(try SmolExpected.load().files["ptb_valid"])
        guard FileManager.default.fileExists(atPath: e.path) else { print("skip: \(e.path) absent"); return }
        let text = try EvalDataset.text(of: URL(fileURLWithPath: e.path))
        let f = full.encode(text), r = small.encode(text)
        let maxId = r.max() ?? 0
        print("PTB valid: \(f.count) ids (\(f.filter { $0 >= 32000 }.count) >= 32000) → \(r.count) ids, max \(maxId)")
        #expect(maxId < 32000)
        #expect(r.count > f.count)
        #expect(small.decode(r) == text)
    }
}
