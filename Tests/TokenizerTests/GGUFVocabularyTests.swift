// tokenizer.json → llama.cpp's GGUF tokenizer keys (GGUFVocabulary, used by `llmprune export`): each breadth fixture
// written as a vocab-only GGUF and read back as llmprune reads a GGUF's tokenizer gives transformers' ids on the tricky
// strings and on the whole WikiText-2 test text. For the SentencePiece-style fixtures that is llama.cpp's SentencePiece
// merge (llmprune's SPMModel follows llm_tokenizer_spm) driven by the scores the export derives from the merge ranks;
// llama.cpp itself tokenizes the exported files in scripts/reference/check_gguf_export.py.
import Eval
import Formats
import Foundation
import Support
import Testing
import Tokenizer

@Suite(.serialized)
struct GGUFVocabularyTests {
    static let expectedModel = ["spm_metaspace": "llama", "spm_legacy": "llama", "spm_legacy_llamaclass": "llama",
                                "llama3": "gpt2", "qwen2": "gpt2"]
    static let expectedPre = ["llama3": "llama-bpe", "qwen2": "qwen2"]

    /// `tok`'s GGUF keys written to a vocab-only GGUF and read back.
    static func roundTrip(_ tok: BPETokenizer, vocabSize: Int) throws -> (GGUFVocabulary, BPETokenizer) {
        let v = try tok.ggufVocabulary(vocabSize: vocabSize)
        var w = GGUFWriter()
        w.set("general.architecture", .string("llama"))
        w.set("tokenizer.ggml.model", .string(v.model))
        if let p = v.pre { w.set("tokenizer.ggml.pre", .string(p)) }
        w.set("tokenizer.ggml.tokens", .strings(v.tokens))
        if let s = v.scores { w.set("tokenizer.ggml.scores", .float32s(s)) }
        w.set("tokenizer.ggml.token_type", .int32s(v.tokenTypes.map(\.rawValue)))
        if let m = v.merges { w.set("tokenizer.ggml.merges", .strings(m)) }
        if let b = v.bosId { w.set("tokenizer.ggml.bos_token_id", .uint32(UInt32(b))) }
        if let e = v.eosId { w.set("tokenizer.ggml.eos_token_id", .uint32(UInt32(e))) }
        if let u = v.unkId { w.set("tokenizer.ggml.unknown_token_id", .uint32(UInt32(u))) }
        w.set("tokenizer.ggml.add_bos_token", .bool(v.addBOS))
        if let p = v.addSpacePrefix { w.set("tokenizer.ggml.add_space_prefix", .bool(p)) }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("vocab-\(UUID().uuidString).gguf")
        try w.write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        return (v, try GGUFTokenizerMetadata(url: url).tokenizer())
    }

    @Test(arguments: Breadth.jsonNames)
    func exportedVocabularyTokenizesAsTransformers(name: String) throws {
        let exp = try BreadthExpected.shared.get()
        let e = try #require(exp.tokenizers[name])
        let tok = try Breadth.load(name)
        let (v, back) = try Self.roundTrip(tok, vocabSize: tok.vocabularySize + 3)
        #expect(v.model == Self.expectedModel[name])
        #expect(v.pre == Self.expectedPre[name])
        #expect(v.tokens.count == tok.vocabularySize + 3 && v.tokenTypes.last == .unused)
        if v.model == "llama" {
            #expect(v.tokenTypes[Int(tok.id(of: "<0x0A>")!)] == .byte)
            #expect(v.addSpacePrefix == true)
        }
        // The legacy normalizer (Prepend "▁" to every segment between added tokens, even one starting with "▁") is
        // what llama.cpp's add_space_prefix does, but llmprune's GGUF reader follows transformers' GGUF loader
        // (Metaspace "first": once, at the start, not doubled); the two agree on text that starts with neither " " nor
        // "▁" and holds no added token. llama.cpp's own ids on this fixture: scripts/reference/check_gguf_export.py.
        let legacy = name == "spm_legacy"
        func comparable(_ s: String) -> Bool {
            !legacy || (!s.hasPrefix(" ") && !s.hasPrefix("\u{2581}") && !["<s>", "</s>", "<unk>"].contains(where: { s.contains($0) }))
        }
        var failures = 0
        for (i, s) in exp.strings.enumerated() where failures < 5 && comparable(s) {
            let with = back.encode(s), without = back.encode(s, addSpecialTokens: false)
            if with != e.with_special[i] || without != e.without_special[i] {
                failures += 1
                Issue.record("\(name) #\(i) \(s.debugDescription): got \(with) / \(without), HF \(e.with_special[i]) / \(e.without_special[i])")
            }
        }
        if legacy { return }            // WikiText-2 starts with " = Robert Boulter = "
        let f = try #require(e.files["wikitext2_test"])
        guard let url = Breadth.dataFile(try #require(exp.files["wikitext2_test"])) else { return }
        let ids = back.encode(try EvalDataset.text(of: url))
        #expect(ids.count == f.count && SHA256.hex(ids: ids) == f.sha256, "\(name): WikiText-2 ids differ from transformers'")
    }

    @Test func refusesWhatLlamaCppHasNoNameFor() throws {
        let tok = try Breadth.load("llama3")
        #expect(throws: TokenizerError.self) { try tok.ggufVocabulary(vocabSize: 10) }     // fewer rows than tokens
        let gguf = try Breadth.load("spm_gguf")                                            // a GGUF SentencePiece vocabulary
        #expect(throws: TokenizerError.self) { try gguf.ggufVocabulary(vocabSize: gguf.vocabularySize) }
        // a Split pre-tokenizer of another regex
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vocab-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("tokenizer.json")
        try Data(#"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Isolated", "invert": false}, {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]}, "decoder": {"type": "ByteLevel"}}"#.utf8).write(to: url)
        let odd = try BPETokenizer(tokenizerJSON: url)
        let e = #expect(throws: TokenizerError.self) { try odd.ggufVocabulary(vocabSize: 3) }
        #expect(e?.description.contains("pre-tokenizer") == true)
    }
}
