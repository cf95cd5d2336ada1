// SentencePiece-style (LLaMA/Mistral), Llama-3 and Qwen2 tokenizers against transformers 5 (AutoTokenizer):
// fixtures made by scripts/reference/make_tokenizer_fixtures.py (tokenizers trained on ptb.valid), ids recorded
// on tricky strings and on the full WikiText-2 and PTB test texts (project protocol). Each tokenizer is loaded as
// llmprune loads it: tokenizer.json (+ tokenizer_config.json) from a directory, or the metadata of a vocab-only GGUF.
import Eval
import Foundation
import Support
import Testing
import Tokenizer

struct BreadthExpected: Decodable {
    struct FileEntry: Decodable {
        var chars: Int
        var count: Int
        var sha256: String
        var first: [Int32]
        var last: [Int32]
    }
    struct Entry: Decodable {
        var with_special: [[Int32]]
        var without_special: [[Int32]]
        var decoded: [String]
        var files: [String: FileEntry]
    }
    var strings: [String]
    var files: [String: String]
    var tokenizers: [String: Entry]

    static let shared: Result<BreadthExpected, Error> = Result {
        try Fixtures.load(BreadthExpected.self, "breadth_expected.json")
    }
}

enum Breadth {
    static let jsonNames = ["spm_metaspace", "spm_legacy", "spm_legacy_llamaclass", "llama3", "qwen2"]
    static let ggufNames = ["spm_gguf": "spm_vocab.gguf", "llama3_gguf": "llama3_vocab.gguf", "qwen2_gguf": "qwen2_vocab.gguf"]
    static let all = jsonNames + ggufNames.keys.sorted()

    static func load(_ name: String) throws -> BPETokenizer {
        if let g = ggufNames[name] {
            return try GGUFTokenizerMetadata(url: Fixtures.resources.appendingPathComponent(g)).tokenizer()
        }
        return try BPETokenizer(tokenizerJSON: Fixtures.resources.appendingPathComponent("\(name)/tokenizer.json"))
    }

    static func dataFile(_ rel: String) -> URL? {
        let url = Fixtures.packageRoot.appendingPathComponent(rel)
        if FileManager.default.fileExists(atPath: url.path) { return url }
        let alt = URL(fileURLWithPath: "/work/shared/data").appendingPathComponent(
            rel.components(separatedBy: "shared/data/").last ?? rel)
        return FileManager.default.fileExists(atPath: alt.path) ? alt : nil
    }
}

@Suite(.serialized)
struct BreadthTests {
    @Test(arguments: Breadth.all)
    func strings(name: String) throws {
        let exp = try BreadthExpected.shared.get()
        let e = try #require(exp.tokenizers[name])
        let tok = try Breadth.load(name)
        var failures = 0
        for (i, s) in exp.strings.enumerated() {
            let with = tok.encode(s)
            let without = tok.encode(s, addSpecialTokens: false)
            if with != e.with_special[i] || without != e.without_special[i] {
                failures += 1
                Issue.record("\(name) #\(i) \(s.debugDescription): got \(with) / \(without), HF \(e.with_special[i]) / \(e.without_special[i])")
            }
            let dec = tok.decode(e.without_special[i])
            if dec != e.decoded[i] {
                failures += 1
                Issue.record("\(name) decode #\(i): got \(dec.debugDescription), HF \(e.decoded[i].debugDescription)")
            }
            if failures > 10 { return }
        }
    }

    static let fileCases: [(String, String)] = Breadth.all.flatMap { n in ["wikitext2_test", "ptb_test"].map { (n, $0) } }

    @Test(arguments: fileCases)
    func fullFile(name: String, file: String) throws {
        let exp = try BreadthExpected.shared.get()
        let e = try #require(exp.tokenizers[name]?.files[file])
        guard let url = Breadth.dataFile(try #require(exp.files[file])) else {
            print("skip \(name)/\(file): data file absent")
            return
        }
        let tok = try Breadth.load(name)
        let text = try EvalDataset.text(of: url)
        #expect(text.unicodeScalars.count == e.chars)
        let t0 = Date()
        let ids = tok.encode(text)
        print("\(name)/\(file): \(ids.count) ids in \(String(format: "%.2f", Date().timeIntervalSince(t0))) s")
        #expect(ids.count == e.count)
        let first = Array(ids.prefix(e.first.count))
        if first != e.first, let k = zip(first, e.first).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset {
            Issue.record("\(name)/\(file): first divergence at id #\(k): got \(Array(first[k...].prefix(8))), HF \(Array(e.first[k...].prefix(8)))")
        }
        #expect(Array(ids.suffix(e.last.count)) == e.last)
        #expect(SHA256.hex(ids: ids) == e.sha256, "\(name)/\(file) hash")
    }

    @Test func componentsAndSpecialIds() throws {
        let meta = try Breadth.load("spm_metaspace")
        #expect(meta.bosId == 1 && meta.eosId == 2)
        #expect(meta.encode("hi").first == 1)                  // LLaMA adds BOS
        #expect(meta.id(of: "<0x0A>") != nil)
        let gguf = try Breadth.load("spm_gguf")
        #expect(gguf.vocabularySize == 2000)
        // "\n" has no token: "▁" prefix, then the newline as its byte token
        #expect(gguf.encode("\n", addSpecialTokens: false) == [Int32(gguf.id(of: "\u{2581}")!), Int32(gguf.id(of: "<0x0A>")!)])
        // HF's chain: Strip removes one leading space of the fused text, so with <s> kept the space stays
        #expect(gguf.decode(gguf.encode("a\nb é")) == "<s> a\nb é")
        #expect(gguf.decode(gguf.encode("a\nb é"), skipSpecialTokens: true) == "a\nb é")
        let l3 = try Breadth.load("llama3")
        #expect(l3.encode("x").first == Int32(l3.id(of: "<|begin_of_text|>")!))
        let q = try Breadth.load("qwen2")
        #expect(q.bosId == nil || q.encode("x").count == q.encode("x", addSpecialTokens: false).count)
        // SentencePiece-style tokenizers are written back as tokenizer.json (SPMExportTests checks the ids)
        #expect(throws: Never.self) { try meta.tokenizerJSON() }
        #expect(throws: Never.self) { try gguf.tokenizerJSON() }
    }

    @Test func unsupportedComponentsNameTheFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("llmprune-tok-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("tokenizer.json")
        try Data(#"{"model": {"type": "Unigram", "vocab": [["a", 0.0]]}}"#.utf8).write(to: url)
        let e1 = #expect(throws: TokenizerError.self) { try BPETokenizer(tokenizerJSON: url) }
        #expect(e1?.description == "\(url.path): tokenizer: unsupported model type Unigram (only BPE)")
        try Data(#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "normalizer": {"type": "NFKC"}}"#.utf8).write(to: url)
        let e2 = #expect(throws: TokenizerError.self) { try BPETokenizer(tokenizerJSON: url) }
        #expect(e2?.description == "\(url.path): tokenizer: unsupported normalizer NFKC")
        try Data(#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "decoder": {"type": "WordPiece"}}"#.utf8).write(to: url)
        let e3 = #expect(throws: TokenizerError.self) { try BPETokenizer(tokenizerJSON: url) }
        #expect(e3?.description == "\(url.path): tokenizer: unsupported decoder WordPiece")
        // a SentencePiece GGUF vocabulary without its byte tokens is refused, not tokenized with holes
        #expect(throws: TokenizerError.self) {
            try BPETokenizer(sentencePieceVocabulary: ["<unk>", "<s>", "</s>", "a"], scores: [0, 0, 0, -1], tokenTypes: nil,
                             bosId: 1, eosId: 2, unkId: 0, addBOS: true)
        }
    }
}
