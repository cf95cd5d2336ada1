// Data-parallel LoRA recovery through the real binary on the tiny model: `mpiexec -n 2 llmprune tune` computes
// the update of one rank with the same global batch and seed (dropout included: a mask depends on seed, step and
// micro-batch only), and a run killed after a checkpoint and resumed ends with exactly the adapter of an
// uninterrupted run.
import Foundation
import Formats
import Testing

@Suite(.enabled(if: mpiexecPath() != nil, "mpiexec not installed"), .serialized) struct TuneCluster {
    static let args = ["--model", fixtures.appendingPathComponent("tiny.gguf").path, "--data", TuneCommandTests.alpaca,
                       "--steps", "10", "--batch", "8", "--micro-batch", "2", "--val-size", "4", "--cutoff", "256",
                       "--lr", "1e-2", "--warmup", "2", "--rank", "4", "--threads", "1", "--checkpoint-every", "4"]

    func tune(_ ranks: Int, out: String, extra: [String] = []) throws -> RunResult {
        let r = ranks == 1 ? try llmprune(["tune"] + Self.args + ["--out", out] + extra)
            : try run(mpiexecPath()!, ["-n", "\(ranks)", llmpruneBinary().path, "tune"] + Self.args + ["--out", out] + extra)
        #expect(r.status == 0, "\(r.stderr)")
        return r
    }

    func adapter(_ dir: String) throws -> [String: [Float]] {
        let f = try SafetensorsFile(path: dir + "/adapter_model.safetensors")
        return Dictionary(uniqueKeysWithValues: try f.tensorNames.map { ($0, try f.floats($0)) })
    }

    @Test func twoRanksComputeTheUpdateOfOne() throws {
        let s = Scratch()
        let one = s.url.appendingPathComponent("one").path, two = s.url.appendingPathComponent("two").path
        _ = try tune(1, out: one)
        let r = try tune(2, out: two, extra: ["--json"])
        let a = try adapter(one), b = try adapter(two)
        #expect(a.keys.sorted() == b.keys.sorted() && !a.isEmpty)
        var worst: Float = 0, largest: Float = 0
        for (k, x) in a { for (u, v) in zip(x, b[k]!) { worst = max(worst, abs(u - v)); largest = max(largest, abs(u)) } }
        #expect(worst <= 1e-5, "max |Δ| \(worst) (largest value \(largest))")
        let report = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        #expect(report["ranks"] as? Int == 2 && (report["allreduceBytes"] as? Int ?? 0) > 0)
        #expect(FileManager.default.fileExists(atPath: two + "/loss.svg"))
    }

    @Test func killedAfterACheckpointResumesToTheSameAdapter() throws { try killedAndResumed() }

    /// A 2-rank run (with `extra` flags) killed after its step-4 checkpoint and resumed ends with the adapter and
    /// losses of an uninterrupted one. Returns both loss.csv files (clean, resumed).
    @discardableResult
    func killedAndResumed(extra: [String] = []) throws -> (clean: String, resumed: String) {
        let s = Scratch()
        let clean = s.url.appendingPathComponent("clean").path, cut = s.url.appendingPathComponent("cut").path
        _ = try tune(2, out: clean, extra: extra)
        // Rank 1 parks before step 7 (index 6), after the checkpoint at step 4; then it is killed.
        let log = s.url.appendingPathComponent("cut.log")
        let p = try startClusterJob(2, command: ["tune"], Self.args + ["--out", cut] + extra, fault: "stall@1:step6", log: log)
        let job = cut + ".job"
        #expect(waitForFile("\(job)/attempt-0/rank-1.stalled", timeout: 120))
        kill(try rankPID(job, epoch: 0, rank: 1), SIGKILL)
        #expect(waitForExit(p, timeout: 30) != nil && p.terminationStatus != 0)
        #expect(!FileManager.default.fileExists(atPath: cut))
        #expect(try readJSON(job + "/checkpoint.json")["step"] as? Int == 4)
        // --threads is a run-time option, given again as the first launch had it (docs/lora.md: with another thread
        // count OpenBLAS' Haswell kernels round differently).
        let r = try run(mpiexecPath()!, ["-n", "2", llmpruneBinary().path, "tune", "--resume", job, "--threads", "1", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        #expect(report["resumedAtStep"] as? Int == 4)
        #expect(try adapter(cut) == adapter(clean), "the resumed adapter differs from the uninterrupted one")
        let csv = try String(contentsOfFile: cut + "/loss.csv", encoding: .utf8).split(separator: "\n")
        #expect(csv.count == 11)
        // Same losses step by step (the seconds column differs).
        let lossOf = { (path: String) throws -> [String] in
            try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map { $0.split(separator: ",").prefix(7).joined(separator: ",") }
        }
        #expect(try lossOf(cut + "/loss.csv") == lossOf(clean + "/loss.csv"))
        return (try String(contentsOfFile: clean + "/loss.csv", encoding: .utf8),
                try String(contentsOfFile: cut + "/loss.csv", encoding: .utf8))
    }
}
