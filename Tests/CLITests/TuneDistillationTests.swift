// `llmprune tune --teacher` through the real binary on the tiny GGUF (student) and tiny_llama_bias.gguf (a teacher
// with the same byte-level tokenizer): the report and loss.csv carry the CE and KD parts; a teacher of another
// vocabulary or tokenizer and out-of-range KD settings fail with one line naming the flag; a checkpoint continues
// only with its own teacher and settings; a killed 2-rank KD run resumes to the uninterrupted run's adapter.
import Foundation
import Testing

@Suite(.serialized) struct TuneDistillationTests {
    static let teacher = fixtures.appendingPathComponent("tiny_llama_bias.gguf").path
    static let args = ["tune", "--model", TuneCommandTests.tiny, "--data", TuneCommandTests.alpaca, "--steps", "2",
                       "--batch", "4", "--micro-batch", "2", "--val-size", "4", "--lr", "1e-2", "--warmup", "0",
                       "--rank", "4", "--threads", "1", "--checkpoint-every", "1"]

    /// tiny.gguf with the spellings of tokens "d" and "e" swapped: same size, another tokenizer.
    static func swappedTokenizer(_ s: Scratch) throws -> String {
        var d = try tinyGGUF()
        let one: [UInt8] = [1, 0, 0, 0, 0, 0, 0, 0]
        let pattern = Data(one + [UInt8(ascii: "d")] + one + [UInt8(ascii: "e")])
        let r = try #require(d.range(of: pattern))
        d[r.lowerBound + 8] = UInt8(ascii: "e")
        d[r.lowerBound + 17] = UInt8(ascii: "d")
        return try s.file("swapped.gguf", d)
    }

    @Test func badTeacherAndSettings() throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("o").path
        let otherVocab = packageRoot.appendingPathComponent("Tests/LoRATests/Resources/kd/teacher").path
        let cases: [([String], [String])] = [
            (["--teacher", otherVocab], ["--teacher", "96 tokens", "256"]),
            (["--teacher", try Self.swappedTokenizer(s)], ["--teacher", "swapped.gguf", "another tokenizer"]),
            (["--teacher", Self.teacher, "--kd-weight", "1.5"], ["--kd-weight"]),
            (["--teacher", Self.teacher, "--kd-weight", "-0.1"], ["--kd-weight"]),
            (["--teacher", Self.teacher, "--kd-temperature", "0"], ["--kd-temperature"]),
            (["--teacher", Self.teacher, "--kd-temperature", "-1"], ["--kd-temperature"]),
        ]
        for (extra, mentions) in cases {
            expectCleanFailure(try llmprune(Self.args + ["--out", out] + extra), mentions: mentions)
            #expect(!FileManager.default.fileExists(atPath: out) && !FileManager.default.fileExists(atPath: out + ".job"))
        }
    }

    @Test func reportPartsAndResumeRefusesAnotherTeacherOrSettings() throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("kd").path
        let r = try llmprune(Self.args + ["--out", out, "--teacher", Self.teacher, "--kd-weight", "0.7",
                                          "--kd-temperature", "2", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        let kd = try #require(report["distillation"] as? [String: Any])
        #expect(kd["weight"] as? Double == 0.7 && kd["temperature"] as? Double == 2)
        #expect((kd["teacher"] as? [String: Any])?["path"] as? String == Self.teacher)
        let last = try #require(report["lastLossParts"] as? [String: Double])
        // The reported loss is the mix of its parts.
        let lastLoss = try #require(report["lastLoss"] as? Double)
        #expect(abs(lastLoss - (0.3 * last["ce"]! + 0.7 * last["kd"]!)) <= 1e-9 * lastLoss)
        #expect(last["kd"]! > 0)
        let csv = try String(contentsOfFile: out + "/loss.csv", encoding: .utf8).split(separator: "\n")
        #expect(csv.count == 3 && csv[0].hasSuffix(",val_loss,ce,kd") && csv[1].split(separator: ",", omittingEmptySubsequences: false).count == 11)
        let job = out + ".job"
        expectCleanFailure(try llmprune(["tune", "--resume", job, "--kd-weight", "0.5"]), mentions: ["--kd-weight", "0.7"])
        expectCleanFailure(try llmprune(["tune", "--resume", job, "--kd-temperature", "1"]), mentions: ["--kd-temperature"])
        let other = fixtures.appendingPathComponent("tiny_q8.gguf").path
        expectCleanFailure(try llmprune(["tune", "--resume", job, "--teacher", other]), mentions: ["--teacher", "tiny_q8.gguf"])

        // A job trained without a teacher is not continued with one.
        let ce = s.url.appendingPathComponent("ce").path
        #expect(try llmprune(Self.args + ["--out", ce, "--quiet"]).status == 0)
        expectCleanFailure(try llmprune(["tune", "--resume", ce + ".job", "--teacher", Self.teacher]),
                           mentions: ["--teacher", "without a teacher"])
    }

    @Test(.enabled(if: mpiexecPath() != nil, "mpiexec not installed"))
    func killedKDRunResumesToTheSameAdapter() throws {
        let (clean, resumed) = try TuneCluster().killedAndResumed(extra: ["--teacher", Self.teacher, "--kd-weight", "0.7",
                                                                        "--kd-temperature", "2"])
        // Every column but the seconds (8th) agrees, the CE and KD parts included.
        let cols = { (csv: String) in csv.split(separator: "\n").map { l -> [Substring] in
            var f = l.split(separator: ",", omittingEmptySubsequences: false); f.remove(at: 7); return f } }
        #expect(cols(clean) == cols(resumed))
        #expect(clean.hasPrefix("step,") && cols(clean)[0].suffix(2) == ["ce", "kd"])
    }
}
