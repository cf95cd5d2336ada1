// SmolLM2-135M-Instruct built from its GGUF metadata must give the ids transformers gives
// (AutoTokenizer.from_pretrained(dir, gguf_file=...)) -- on tricky strings and on the full WikiText-2 test, PTB
// test and PTB valid texts. Skipped when the GGUF (models/smollm2/... under the package root, or
// $LLMPRUNE_SMOLLM2_GGUF) or the data files are absent.
import Eval
import Foundation
import Testing
import Support
import Tokenizer

@Suite(.enabled(if: Fixtures.smolGGUFExists, "SmolLM2 GGUF not present"), .serialized)
struct SmolLM2Tests {
    static let shared: Result<(GGUFTokenizerMetadata, BPETokenizer), Error> = Result {
        let meta = try GGUFTokenizerMetadata(url: Fixtures.smolGGUF)
        return (meta, try meta.tokenizer())
    }

    @Test func metadataAndFacts() throws {
        let (meta, tok) = try Self.shared.get()
        let exp = try SmolExpected.load().facts
        #expect(meta.model == "gpt2")
        #expect(meta.pre == "smollm")
        #expect(meta.addBOS == false)
        #expect(tok.bosId == exp.bos_token_id)
        #expect(tok.eosId == exp.eos_token_id)
        #expect(tok.vocabularySize == exp.len)
        #expect(tok.encode("Hello world") == exp.hello_ids)  // no BOS
    }

    static func checkStrings(_ tok: BPETokenizer, key: KeyPath<SmolExpected, [[Int32]]>) throws {
        let exp = try SmolExpected.load()
        let strings = exp.strings
        let ids = exp[keyPath: key]
        var failures = 0
        for (i, s) in strings.enumerated() {
            let got = tok.encode(s)
            if got != ids[i] {
                failures += 1
                Issue.record("\(key) #\(i) \(s.debugDescription): got \(got), HF \(ids[i])")
                if failures > 10 { return }
            }
        }
    }

    @Test func trickyAndFuzzStrings() throws {
        let (_, tok) = try Self.shared.get()
        try Self.checkStrings(tok, key: \.ids)
        let exp = try SmolExpected.load()
        for s in exp.strings { #expect(tok.decode(tok.encode(s)) == s) }
    }

    @Test func otherSplitsAndAddBOS() throws {
        let (meta, _) = try Self.shared.get()
        let llama = try BPETokenizer(vocabulary: meta.tokens, merges: meta.merges, tokenTypes: meta.tokenTypes,
                                     preTokenizer: "llama-bpe", bosId: meta.bosId, eosId: meta.eosId, addBOS: false)
        try Self.checkStrings(llama, key: \.llama3_split_ids)
        let bos = try BPETokenizer(vocabulary: meta.tokens, merges: meta.merges, tokenTypes: meta.tokenTypes,
                                   preTokenizer: meta.pre, bosId: meta.bosId, eosId: meta.eosId, addBOS: true)
        try Self.checkStrings(bos, key: \.add_bos_ids)
        // no hand-written scanner for this split: the NSRegularExpression fallback
        let gpt4o = try BPETokenizer(vocabulary: meta.tokens, merges: meta.merges, tokenTypes: meta.tokenTypes,
                                     preTokenizer: "gpt-4o", bosId: meta.bosId, eosId: meta.eosId, addBOS: false)
        try Self.checkStrings(gpt4o, key: \.gpt4o_split_ids)
    }

    static func checkFile(_ tok: BPETokenizer, group: KeyPath<SmolExpected, [String: SmolExpected.FileEntry]>,
                          key: String) throws {
        let e = try #require(try SmolExpected.load()[keyPath: group][key])
        let url = URL(fileURLWithPath: e.path)
        guard FileManager.default.fileExists(atPath: url.path) else {
            print("skip \(key): \(url.path) absent")
            return
        }
        let text = try EvalDataset.text(of: url)   // the project protocol, shared with eval
        #expect(text.unicodeScalars.count == e.chars)
        let t0 = Date()
        let ids = tok.encode(text)
        let dt = Date().timeIntervalSince(t0)
        print("\(key): \(ids.count) tokens in \(String(format: "%.3f", dt)) s")
        #expect(ids.count == e.count)
        #expect(Array(ids.prefix(256)) == e.first)
        #expect(Array(ids.suffix(256)) == e.last)
        #expect(SHA256.hex(ids: ids) == e.sha256, "\(key) hash")
    }

    @Test(arguments: ["wikitext2_test", "ptb_test", "ptb_valid"])
    func fullFiles(key: String) throws {
        let (_, tok) = try Self.shared.get()
        try Self.checkFile(tok, group: \.files, key: key)
    }

    @Test func wikitextWithLlama3Split() throws {
        let (meta, _) = try Self.shared.get()
        let llama = try BPETokenizer(vocabulary: meta.tokens, merges: meta.merges, tokenTypes: meta.tokenTypes,
                                     preTokenizer: "llama-bpe", bosId: meta.bosId, eosId: meta.eosId, addBOS: false)
        try Self.checkFile(llama, group: \.llama3_split_files, key: "wikitext2_test")
    }
}
