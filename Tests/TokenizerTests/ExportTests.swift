// Export to Hugging Face files: tokenizer.json written by `tokenizerJSON()` and read back must give the same ids
// as the tokenizer it came from -- on the tiny tokenizers' strings, on exactness corner cases (escapes, U+FEFF,
// canonically equivalent tokens) and, for SmolLM2 built from its GGUF, on the full WikiText-2 test and PTB test
// texts. With $LLMPRUNE_EXPORT_DIR set, the SmolLM2 files are written there for
// scripts/reference/check_tokenizer_export.py (transformers must load them and give the GGUF's ids).
import Eval
import Formats
import Foundation
import Support
import Testing
import Tokenizer

struct ExportTests {
    static func roundTrip(_ tok: BPETokenizer) throws -> BPETokenizer {
        try BPETokenizer(tokenizerJSONData: try tok.tokenizerJSON())
    }

    static func config(_ tok: BPETokenizer, _ maxLength: Int = 2048) throws -> [String: Any] {
        let data = try tok.tokenizerConfigJSON(modelMaxLength: maxLength)
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    static func expectSameIds(_ a: BPETokenizer, _ b: BPETokenizer, _ strings: [String], _ what: String) {
        var failures = 0
        for (i, s) in strings.enumerated() {
            for special in [false, true] {
                let x = a.encode(s, addSpecialTokens: special), y = b.encode(s, addSpecialTokens: special)
                if x != y {
                    failures += 1
                    Issue.record("\(what) #\(i) \(s.debugDescription) special=\(special): \(x) vs exported \(y)")
                }
            }
            if failures > 10 { return }
        }
    }

    static func tinyStrings() throws -> [String] { try Fixtures.load(TinyExpected.self, "tiny_expected.json").strings }

    @Test(arguments: TinyTokenizerTests.names)
    func tinyTokenizersRoundTrip(name: String) throws {
        let tok = try TinyTokenizerTests.load(name)
        let back = try Self.roundTrip(tok)
        let strings = try Self.tinyStrings()
        Self.expectSameIds(tok, back, strings, name)
        for s in strings.prefix(40) {
            let ids = tok.encode(s)
            #expect(back.decode(ids) == tok.decode(ids))
        }
        #expect(back.vocabularySize == tok.vocabularySize)
        #expect(back.bosId == tok.bosId)
        #expect(back.eosId == tok.eosId)
        // writing is deterministic, and writing the re-read tokenizer gives the same bytes
        #expect(try tok.tokenizerJSON() == (try back.tokenizerJSON()))
    }

    @Test func tinyLlama3ConfigAddsBOS() throws {
        let c = try Self.config(try TinyTokenizerTests.load("tiny_llama3"))
        #expect(c["add_bos_token"] as? Bool == true)
        #expect(c["add_eos_token"] as? Bool == false)
        #expect(c["bos_token"] as? String == "<|begin_of_text|>")
        #expect(c["tokenizer_class"] as? String == "PreTrainedTokenizerFast")
        #expect(c["model_max_length"] as? Int == 2048)
    }

    @Test func stringsAreWrittenExactly() throws {
        // canonically equivalent tokens, escapes, an astral scalar, a raw U+FEFF after a quote, controls, DEL, U+2028
        let json = """
        {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "\u{00E9}": 3, "e": 4, "\\u0301": 5, "e\u{0301}": 6,
           "\\"q\\\\": 7, "\\ud83d\\ude42": 8, ";": 9, "\u{037E}": 10},
         "merges": ["a b", "e \u{0301}"]},
         "added_tokens": [{"id": 11, "content": "\u{FEFF}x", "special": true, "normalized": false},
                          {"id": 12, "content": "\\u0000\\u001f\\n\\t\u{7F}\u{2028}/", "special": false, "normalized": false}]}
        """
        let tok = try BPETokenizer(tokenizerJSONData: Data(json.utf8))
        let data = try tok.tokenizerJSON()
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.utf8.elementsEqual(Array(data)))
        #expect(text.contains(#""\"q\\": 7"#))
        #expect(text.contains("\"\u{FEFF}x\""))
        #expect(text.contains(#""\u0000\u001f\n\t"# + "\u{7F}\u{2028}/\""))
        #expect(text.contains("\"\u{037E}\": 10"))
        let back = try BPETokenizer(tokenizerJSONData: data)
        for (t, id) in [("\u{00E9}", 3), ("e\u{0301}", 6), ("\"q\\", 7), ("🙂", 8), (";", 9), ("\u{037E}", 10),
                        ("\u{FEFF}x", 11), ("\u{0}\u{1F}\n\t\u{7F}\u{2028}/", 12)] {
            #expect(back.id(of: t) == id, "\(t.debugDescription)")
        }
        Self.expectSameIds(tok, back, ["ab", "e\u{0301}\u{00E9}", ";\u{037E};", "a\u{FEFF}xb", "x\u{0}\u{1F}\n\t\u{7F}\u{2028}/b"],
                           "exactness")
        #expect(back.encode("a\u{FEFF}xb") == [0, 11, 1])
    }

    @Test func configLeavesOutTokensItCannotName() throws {
        // a GGUF-style vocabulary without BOS/EOS: no named tokens, add_bos_token false
        let tok = try BPETokenizer(vocabulary: ["a", "b", "ab"], merges: ["a b"], tokenTypes: nil, preTokenizer: "gpt2",
                                   bosId: nil, eosId: nil, addBOS: false)
        let c = try Self.config(tok, 77)
        #expect(c["bos_token"] is NSNull)
        #expect(c["unk_token"] is NSNull)
        #expect(c["add_bos_token"] as? Bool == false)
        #expect(c["model_max_length"] as? Int == 77)
        #expect(throws: TokenizerError.self) { try tok.tokenizerConfigJSON(modelMaxLength: 0) }
        let back = try Self.roundTrip(tok)
        #expect(back.encode("abab ba") == tok.encode("abab ba"))
    }
}

// MARK: SmolLM2 from its GGUF

/// The GGUF's tokenizer with everything transformers reads: UNK/PAD ids and the chat template too.
struct SmolGGUFTokenizer {
    let meta: GGUFTokenizerMetadata
    let unkId: Int?
    let padId: Int?
    let chatTemplate: String?

    init(url: URL) throws {
        meta = try GGUFTokenizerMetadata(url: url)
        let m = try GGUFFile(path: url.path).metadata
        unkId = m["tokenizer.ggml.unknown_token_id"]?.int
        padId = m["tokenizer.ggml.padding_token_id"]?.int
        chatTemplate = m["tokenizer.chat_template"]?.string
    }

    func tokenizer(pre: String? = nil, addBOS: Bool? = nil) throws -> BPETokenizer {
        try BPETokenizer(vocabulary: meta.tokens, merges: meta.merges, tokenTypes: meta.tokenTypes,
                         preTokenizer: pre ?? meta.pre, bosId: meta.bosId, eosId: meta.eosId,
                         addBOS: addBOS ?? meta.addBOS ?? false, unkId: unkId, padId: padId)
    }
}

@Suite(.enabled(if: Fixtures.smolGGUFExists, "SmolLM2 GGUF not present"), .serialized)
struct SmolLM2ExportTests {
    static let shared: Result<(SmolGGUFTokenizer, BPETokenizer, BPETokenizer), Error> = Result {
        let g = try SmolGGUFTokenizer(url: Fixtures.smolGGUF)
        let tok = try g.tokenizer()
        return (g, tok, try ExportTests.roundTrip(tok))
    }

    @Test func stringsRoundTrip() throws {
        let (_, tok, back) = try Self.shared.get()
        let exp = try SmolExpected.load()
        ExportTests.expectSameIds(tok, back, exp.strings + (try ExportTests.tinyStrings()), "smollm2")
        // and they are transformers' ids
        for (i, s) in exp.strings.enumerated().prefix(200) { #expect(back.encode(s) == exp.ids[i], "#\(i)") }
        #expect(back.vocabularySize == tok.vocabularySize)
        // (bosId is not compared: tokenizer.json does not name BOS -- tokenizer_config.json does -- and without a
        // BOS template the reader guesses it from conventional names)
        for s in exp.strings.prefix(60) { #expect(back.decode(tok.encode(s)) == s) }
    }

    @Test(arguments: [("llama-bpe", false), ("qwen2", false), ("gpt-4o", false), ("smollm", true), ("llama-bpe", true)])
    func otherSplitsAndBOSRoundTrip(pre: String, addBOS: Bool) throws {
        let (g, _, _) = try Self.shared.get()
        let tok = try g.tokenizer(pre: pre, addBOS: addBOS)
        let back = try ExportTests.roundTrip(tok)
        let exp = try SmolExpected.load()
        ExportTests.expectSameIds(tok, back, exp.strings, "\(pre) addBOS=\(addBOS)")
        if addBOS { #expect(back.encode("hi").first == Int32(try #require(tok.bosId))) }
        let c = try ExportTests.config(tok)
        #expect(c["add_bos_token"] as? Bool == addBOS)
    }

    @Test func config() throws {
        let (g, tok, _) = try Self.shared.get()
        let c = try ExportTests.config(tok, 8192)
        #expect(c["bos_token"] as? String == "<|im_start|>")
        #expect(c["eos_token"] as? String == "<|im_end|>")
        #expect(c["unk_token"] as? String == (g.unkId == nil ? nil : "<|endoftext|>"))
        #expect(c["pad_token"] as? String == (g.padId == nil ? nil : "<|im_end|>"))
        #expect(c["add_bos_token"] as? Bool == false)
        #expect(c["model_max_length"] as? Int == 8192)
    }

    @Test(arguments: ["wikitext2_test", "ptb_test"])
    func fullFilesRoundTrip(key: String) throws {
        let (_, tok, back) = try Self.shared.get()
        let e = try #require(try SmolExpected.load().files[key])
        let url = URL(fileURLWithPath: e.path)
        guard FileManager.default.fileExists(atPath: url.path) else {
            print("skip \(key): \(url.path) absent")
            return
        }
        let text = try EvalDataset.text(of: url)
        let a = tok.encode(text), b = back.encode(text)
        print("\(key): \(b.count) tokens from the exported tokenizer.json")
        #expect(a == b)
        #expect(b.count == e.count)
        #expect(SHA256.hex(ids: b) == e.sha256, "\(key) hash")
    }

    /// Writes the SmolLM2 tokenizer files to $LLMPRUNE_EXPORT_DIR/smollm2 (only when that is set).
    @Test func writeForTransformers() throws {
        guard let dir = ProcessInfo.processInfo.environment["LLMPRUNE_EXPORT_DIR"], !dir.isEmpty else { return }
        let (g, tok, _) = try Self.shared.get()
        let out = URL(fileURLWithPath: dir).appendingPathComponent("smollm2")
        try tok.writeHuggingFaceFiles(to: out, modelMaxLength: 8192, chatTemplate: g.chatTemplate)
        let bos = URL(fileURLWithPath: dir).appendingPathComponent("smollm2_llama3_bos")
        try g.tokenizer(pre: "llama-bpe", addBOS: true).writeHuggingFaceFiles(to: bos, modelMaxLength: 8192)
        print("wrote \(out.path) and \(bos.path)")
    }
}
