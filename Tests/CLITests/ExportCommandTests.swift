// `llmprune export` through the real binary: a GGUF the binary reads back (info, eval), and every bad input a
// one-line error naming the file or flag, a non-zero exit and no output file, partial or not.
import Foundation
import Testing

@Suite struct ExportCommandTests {
    static func leftovers(_ s: Scratch) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: s.url.path).filter { $0.hasPrefix(".") }
    }

    @Test func exportsAGGUFTheBinaryReadsBack() throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("tiny.gguf").path
        let r = try llmprune(["export", "--model", fixtures.appendingPathComponent("tiny_llama_bias.gguf").path,
                              "--out", out, "--type", "q8_0", "--quiet"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("arch llama") && r.stdout.contains("q8_0"), "\(r.stdout)")
        let info = try llmprune(["info", "--model", out, "--json"])
        #expect(info.status == 0, "\(info.stderr)")
        #expect(try Self.leftovers(s).isEmpty)
    }

    @Test func existingOutputWithoutForce() throws {
        let s = Scratch()
        let out = try s.file("x.gguf", Data("keep me".utf8))
        let r = try llmprune(["export", "--model", fixtures.appendingPathComponent("tiny.gguf").path, "--out", out])
        expectCleanFailure(r, mentions: [out, "--force"])
        #expect(try Data(contentsOf: URL(fileURLWithPath: out)) == Data("keep me".utf8))
        let forced = try llmprune(["export", "--model", fixtures.appendingPathComponent("tiny.gguf").path, "--out", out,
                                   "--force", "--quiet"])
        #expect(forced.status == 0, "\(forced.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: out)).prefix(4) == Data("GGUF".utf8))
    }

    @Test func unknownType() throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("x.gguf").path
        let r = try llmprune(["export", "--model", fixtures.appendingPathComponent("tiny.gguf").path, "--out", out,
                              "--type", "q4_k"])
        expectCleanFailure(r, mentions: ["--type", "q4_k", "q8_0"])
        #expect(r.status == 2)
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    @Test func aModelLlamaCppCannotRepresentIsRefusedByNameAndNothingIsWritten() throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("swa.gguf").path
        let model = fixtures.appendingPathComponent("tiny_mistral_swa").path
        let r = try llmprune(["export", "--model", model, "--out", out])
        expectCleanFailure(r, mentions: [model, "llama.cpp cannot represent", "sliding-window attention"])
        #expect(!FileManager.default.fileExists(atPath: out))
        #expect(try Self.leftovers(s).isEmpty)
    }

    @Test func aFailureHalfWayLeavesNoPartialFile() throws {
        // a Hugging Face directory without tokenizer.json: refused before writing; one whose weights hold a NaN:
        // refused while converting, after the header and earlier tensors went to the temporary file
        let s = Scratch()
        let noTok = fixtures.appendingPathComponent("tiny").path
        let out = s.url.appendingPathComponent("t.gguf").path
        expectCleanFailure(try llmprune(["export", "--model", noTok, "--out", out]), mentions: ["tokenizer.json"])
        #expect(!FileManager.default.fileExists(atPath: out))

        let bad = s.url.appendingPathComponent("bad")
        try FileManager.default.copyItem(at: fixtures.appendingPathComponent("tiny"), to: bad)
        // a minimal byte-level tokenizer.json of the model's 256 ids
        var vocab: [String: Int] = [:]
        for i in 0..<256 { vocab["t\(i)"] = i }
        let tokenizer: [String: Any] = [
            "model": ["type": "BPE", "vocab": vocab, "merges": [String]()],
            "pre_tokenizer": ["type": "ByteLevel", "add_prefix_space": false, "use_regex": true],
            "decoder": ["type": "ByteLevel"]]
        try JSONSerialization.data(withJSONObject: tokenizer).write(to: bad.appendingPathComponent("tokenizer.json"))
        // poison the last value of model.safetensors' last tensor (F32) with a NaN
        let st = bad.appendingPathComponent("model.safetensors")
        var d = try Data(contentsOf: st)
        let nan = Float.nan.bitPattern
        withUnsafeBytes(of: nan.littleEndian) { d.replaceSubrange((d.count - 4)..<d.count, with: $0) }
        try d.write(to: st)
        let r = try llmprune(["export", "--model", bad.path, "--out", out, "--type", "f16"])
        expectCleanFailure(r, mentions: [bad.path, "nan"])
        #expect(!FileManager.default.fileExists(atPath: out))
        #expect(try Self.leftovers(s).isEmpty)
    }
}
