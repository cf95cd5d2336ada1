// `llmprune tune` and `llmprune merge` through the real binary on the tiny GGUF (it has a byte-level
// tokenizer): an end-to-end run writes a peft adapter and a loss CSV that merge accepts; bad input fails
// with one line naming the file or flag.
import Foundation
import Testing

struct TuneCommandTests {
    static let tiny = fixtures.appendingPathComponent("tiny.gguf").path
    static let alpaca = packageRoot.deletingLastPathComponent().appendingPathComponent("shared/data/alpaca/alpaca_data_1k.json").path

    @Test func tuneThenMerge() throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("adapter").path
        let r = try llmprune(["tune", "--model", Self.tiny, "--data", Self.alpaca, "--out", out, "--steps", "2",
                              "--batch", "4", "--micro-batch", "2", "--val-size", "4", "--cutoff", "256", "--lr", "1e-2",
                              "--warmup", "0", "--rank", "4", "--targets", "q,v,down", "--threads", "1", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        #expect(report["steps"] as? Int == 2 && report["validationExamples"] as? Int == 4)
        #expect((report["lastLoss"] as? Double).map { $0.isFinite } == true)
        let csv = try String(contentsOfFile: out + "/loss.csv", encoding: .utf8).split(separator: "\n")
        #expect(csv.count == 3 && csv[0].hasPrefix("step,epoch,loss"))
        let cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/adapter_config.json"))) as! [String: Any]
        #expect(cfg["r"] as? Int == 4 && cfg["target_modules"] as? [String] == ["q_proj", "v_proj", "down_proj"])
        // a second run refuses to overwrite without --force
        let again = try llmprune(["tune", "--model", Self.tiny, "--data", Self.alpaca, "--out", out, "--steps", "1"])
        expectCleanFailure(again, mentions: ["--force"])
        let merged = s.url.appendingPathComponent("merged").path
        let m = try llmprune(["merge", "--model", Self.tiny, "--adapter", out, "--out", merged])
        #expect(m.status == 0, "\(m.stderr)")
        #expect(FileManager.default.fileExists(atPath: merged + "/model.safetensors"))
        let info = try llmprune(["info", "--model", merged])
        #expect(info.status == 0, "\(info.stderr)")
    }

    @Test func badInput() throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("o").path
        let bad = try s.file("bad.json", Data(#"[{"instruction": "x"}]"#.utf8))
        expectCleanFailure(try llmprune(["tune", "--model", Self.tiny, "--data", bad, "--out", out]),
                           mentions: [bad, "record 0: missing \"output\""])
        expectCleanFailure(try llmprune(["tune", "--model", Self.tiny, "--data", Self.alpaca, "--out", out, "--targets", "q,lm_head"]),
                           mentions: ["lm_head"])
        expectCleanFailure(try llmprune(["tune", "--model", Self.tiny, "--data", Self.alpaca, "--out", out, "--dropout", "1.5"]),
                           mentions: ["dropout"])
        expectCleanFailure(try llmprune(["tune", "--model", Self.tiny, "--data", Self.alpaca, "--out", out, "--micro-batch", "8", "--batch", "4"]),
                           mentions: ["micro-batch"])
        expectCleanFailure(try llmprune(["tune", "--model", Self.tiny, "--data", Self.alpaca, "--out", out, "--val-size", "1000"]),
                           mentions: ["validation size"])
        expectCleanFailure(try llmprune(["merge", "--model", Self.tiny, "--adapter", s.url.path, "--out", out]),
                           mentions: ["adapter_config.json"])
        expectCleanFailure(try llmprune(["tune", "--model", Self.tiny, "--data", Self.alpaca]), mentions: ["--out"])
    }
}
