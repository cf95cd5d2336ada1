// SentencePiece-style tokenizers written back as Hugging Face files (tokenizer.json + tokenizer_config.json) and
// read again by llmprune's own loader must give transformers' ids (breadth_expected.json) on the tricky strings
// and on the full WikiText-2 and PTB test texts: the three tokenizer.json fixtures (Metaspace, the older
// Prepend+Replace normalizer, and that one under tokenizer_class LlamaTokenizer) and the GGUF "llama" vocabulary
// (written as BPE with merges recovered from its scores). With $LLMPRUNE_EXPORT_DIR set, each export is also
// written to $LLMPRUNE_EXPORT_DIR/<name> for scripts/reference/check_spm_export.py (transformers' side).
import Eval
import Foundation
import Support
import Testing
import Tokenizer

enum SPMExport {
    static let names = ["spm_metaspace", "spm_legacy", "spm_legacy_llamaclass", "spm_gguf"]

    /// `name` loaded as in BreadthTests, written to a fresh directory and loaded back from it.
    static func exported(_ name: String) throws -> BPETokenizer {
        let tok = try Breadth.load(name)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("llmprune-spmexport-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try tok.writeHuggingFaceFiles(to: dir, modelMaxLength: 2048)
        if let out = ProcessInfo.processInfo.environment["LLMPRUNE_EXPORT_DIR"] {
            try tok.writeHuggingFaceFiles(to: URL(fileURLWithPath: out).appendingPathComponent(name), modelMaxLength: 2048)
        }
        return try BPETokenizer(tokenizerJSON: dir.appendingPathComponent("tokenizer.json"))
    }
}

@Suite(.serialized)
struct SPMExportTests {
    @Test(arguments: SPMExport.names)
    func strings(name: String) throws {
        let exp = try BreadthExpected.shared.get()
        let e = try #require(exp.tokenizers[name])
        let back = try SPMExport.exported(name)
        var failures = 0
        for (i, s) in exp.strings.enumerated() {
            let with = back.encode(s), without = back.encode(s, addSpecialTokens: false)
            if with != e.with_special[i] || without != e.without_special[i] {
                failures += 1
                Issue.record("exported \(name) #\(i) \(s.debugDescription): got \(with) / \(without), HF \(e.with_special[i]) / \(e.without_special[i])")
            }
            let dec = back.decode(e.without_special[i])
            if dec != e.decoded[i] {
                failures += 1
                Issue.record("exported \(name) decode #\(i): got \(dec.debugDescription), HF \(e.decoded[i].debugDescription)")
            }
            if failures > 10 { return }
        }
    }

    static let fileCases: [(String, String)] = SPMExport.names.flatMap { n in ["wikitext2_test", "ptb_test"].map { (n, $0) } }

    @Test(arguments: fileCases)
    func fullFile(name: String, file: String) throws {
        let exp = try BreadthExpected.shared.get()
        let e = try #require(exp.tokenizers[name]?.files[file])
        guard let url = Breadth.dataFile(try #require(exp.files[file])) else {
            print("skip exported \(name)/\(file): data file absent")
            return
        }
        let back = try SPMExport.exported(name)
        let ids = back.encode(try EvalDataset.text(of: url))
        #expect(ids.count == e.count, "exported \(name)/\(file) count")
        let first = Array(ids.prefix(e.first.count))
        if first != e.first, let k = zip(first, e.first).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset {
            Issue.record("exported \(name)/\(file): first divergence at id #\(k): got \(Array(first[k...].prefix(8))), HF \(Array(e.first[k...].prefix(8)))")
        }
        #expect(Array(ids.suffix(e.last.count)) == e.last)
        #expect(SHA256.hex(ids: ids) == e.sha256, "exported \(name)/\(file) hash")
    }

    @Test func configAndDeterminism() throws {
        let gguf = try Breadth.load("spm_gguf")
        let data = try gguf.tokenizerConfigJSON(modelMaxLength: 2048)
        let c = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(c["add_bos_token"] as? Bool == true)
        #expect(c["add_eos_token"] as? Bool == false)
        #expect(c["bos_token"] as? String == "<s>")
        #expect(c["eos_token"] as? String == "</s>")
        #expect(c["unk_token"] as? String == "<unk>")
        let j = try #require(try JSONSerialization.jsonObject(with: try gguf.tokenizerJSON()) as? [String: Any])
        let model = try #require(j["model"] as? [String: Any])
        #expect(model["byte_fallback"] as? Bool == true)
        #expect(model["fuse_unk"] as? Bool == true)
        #expect((model["merges"] as? [Any])?.isEmpty == false)
        // writing the re-read tokenizer gives the same bytes
        for name in ["spm_metaspace", "spm_legacy", "spm_legacy_llamaclass"] {
            let tok = try Breadth.load(name)
            let back = try BPETokenizer(tokenizerJSONData: try tok.tokenizerJSON())
            #expect(try back.tokenizerJSON() == (try tok.tokenizerJSON()), "\(name)")
        }
    }
}

struct SPMRestrictionExportTests {
    /// A GGUF SentencePiece vocabulary cut to fewer ids (its merge-list form, see VocabularyRestriction.swift) is
    /// written and read back alike, and never emits an id at or above the cut.
    @Test func ggufVocabularyCutAndWritten() throws {
        let exp = try BreadthExpected.shared.get()
        let full = try Breadth.load("spm_gguf")
        let small = try full.restricted(toVocabularySize: 1500)
        #expect(small.vocabularySize == 1500)
        let back = try BPETokenizer(tokenizerJSONData: try small.tokenizerJSON(),
                                    tokenizerConfigData: try small.tokenizerConfigJSON(modelMaxLength: 2048))
        for s in exp.strings {
            let ids = small.encode(s)
            #expect(ids.allSatisfy { $0 < 1500 }, "\(s.debugDescription)")
            #expect(back.encode(s) == ids, "\(s.debugDescription)")
            #expect(back.decode(ids) == full.decode(ids), "\(s.debugDescription)")
        }
        // a cut that keeps every id changes nothing
        #expect(try full.restricted(toVocabularySize: 2000) === full)
    }
}
