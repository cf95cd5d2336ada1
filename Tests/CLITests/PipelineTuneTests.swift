// Layer-sharded LoRA recovery through the real binary on the tiny model (tiny.gguf, 3 layers): `tune --pipeline P` under
// mpiexec computes the single-process update — the adapter within 1e-5 after the run and the same loss curve —
// with P = 2 and 3 stages, on a 2 × 2 grid (data parallel within each stage), and with low-memory stages; a run
// killed after a checkpoint resumes (with another number of replicas) to the adapter of an uninterrupted run;
// report.json holds the predicted and measured peak of every rank.
import Foundation
import Formats
import Testing

@Suite(.enabled(if: mpiexecPath() != nil, "mpiexec not installed"), .serialized) struct PipelineTune {
    static let args = ["--model", fixtures.appendingPathComponent("tiny.gguf").path, "--data", TuneCommandTests.alpaca,
                       "--steps", "5", "--batch", "8", "--micro-batch", "2", "--val-size", "4", "--cutoff", "256",
                       "--lr", "1e-2", "--warmup", "2", "--rank", "4", "--threads", "1", "--checkpoint-every", "2",
                       "--max-grad-norm", "0.05"]

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

    /// Largest |Δ| between two adapters (same tensors required).
    func difference(_ a: [String: [Float]], _ b: [String: [Float]]) -> Float {
        #expect(a.keys.sorted() == b.keys.sorted() && !a.isEmpty)
        var worst: Float = 0
        for (k, x) in a { for (u, v) in zip(x, b[k] ?? []) { worst = max(worst, abs(u - v)) } }
        return worst
    }

    /// The loss column of loss.csv.
    func losses(_ dir: String) throws -> [Double] {
        try String(contentsOfFile: dir + "/loss.csv", encoding: .utf8).split(separator: "\n").dropFirst()
            .map { Double($0.split(separator: ",")[2])! }
    }

    func expectSameRun(_ reference: String, _ other: String, _ what: String) throws {
        let worst = difference(try adapter(reference), try adapter(other))
        #expect(worst <= 1e-5, "\(what): max |Δ| \(worst)")
        let a = try losses(reference), b = try losses(other)
        #expect(a.count == 5 && b.count == 5)
        for (x, y) in zip(a, b) { #expect(abs(x - y) <= 1e-5 * max(1, abs(x)), "\(what): loss \(x) vs \(y)") }
    }

    @Test func stagesComputeTheUpdateOfOneProcess() throws {
        let s = Scratch()
        let one = s.url.appendingPathComponent("one").path
        _ = try tune(1, out: one)
        // The curve moved: the adapter is not still its initialisation (B starts at zero).
        #expect(try adapter(one).filter { $0.key.contains("lora_B") }.values.contains { $0.contains { $0 != 0 } })
        for (ranks, extra, what) in [(2, ["--pipeline", "2"], "2 stages"), (3, ["--pipeline", "3"], "3 stages"),
                                     (4, ["--pipeline", "2"], "2 stages × 2 replicas"),
                                     (2, ["--pipeline", "2", "--low-memory"], "2 low-memory stages")] {
            let out = s.url.appendingPathComponent("p\(ranks)-\(extra.count)").path
            let r = try tune(ranks, out: out, extra: extra + ["--json"])
            try expectSameRun(one, out, what)
            let report = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
            let grid = report["pipeline"] as! [String: Any]
            let ranksReport = grid["ranks"] as! [[String: Any]]
            #expect(ranksReport.count == ranks)
            for rank in ranksReport {
                #expect((rank["predictedPeakBytes"] as! Int) > 0 && (rank["measuredPeakBytes"] as! Int) > 0)
                #expect((rank["bytesPerStep"] as! Int) > 0, "a stage moves activations every step")
            }
        }
    }

    @Test func killedAfterACheckpointResumesWithAnotherReplicaCount() throws {
        let s = Scratch()
        let clean = s.url.appendingPathComponent("clean").path, cut = s.url.appendingPathComponent("cut").path
        _ = try tune(2, out: clean, extra: ["--pipeline", "2"])
        // Rank 1 (the last stage) parks before step 4 (index 3), after the checkpoint at step 2; then it is killed.
        let log = s.url.appendingPathComponent("cut.log")
        let p = try startClusterJob(2, command: ["tune"], Self.args + ["--out", cut, "--pipeline", "2"], fault: "stall@1:step3", log: log)
        let job = cut + ".job"
        #expect(waitForFile("\(job)/attempt-0/rank-1.stalled", timeout: 120))
        kill(try rankPID(job, epoch: 0, rank: 1), SIGKILL)
        #expect(waitForExit(p, timeout: 30) != nil && p.terminationStatus != 0)
        #expect(!FileManager.default.fileExists(atPath: cut))
        let ck = try readJSON(job + "/checkpoint.json")
        #expect(ck["step"] as? Int == 2 && ck["pipeline"] as? Int == 2)
        let dir = job + "/" + (ck["directory"] as! String)
        #expect(FileManager.default.fileExists(atPath: dir + "/stage-0.safetensors"))
        #expect(FileManager.default.fileExists(atPath: dir + "/stage-1.safetensors"))
        // Another number of stages (here data parallel on 2 ranks) is refused by name, and changes nothing.
        let other = try run(mpiexecPath()!, ["-n", "2", llmpruneBinary().path, "tune", "--resume", job, "--pipeline", "1"])
        #expect(other.status != 0 && !other.signaled)
        #expect(other.stderr.contains("written by a layer-sharded run with --pipeline 2"), "\(other.stderr)")
        #expect(!FileManager.default.fileExists(atPath: cut))
        // Resumed on 4 ranks: the same 2 stages, now 2 replicas each.
        let r = try run(mpiexecPath()!, ["-n", "4", llmpruneBinary().path, "tune", "--resume", job, "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        #expect(report["resumedAtStep"] as? Int == 2 && report["ranks"] as? Int == 4)
        try expectSameRun(clean, cut, "resumed with 2 replicas")
    }

    @Test func gridThatDoesNotFitIsRefused() throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("x").path
        // 3 ranks cannot form 2 stages × D.
        let r = try run(mpiexecPath()!, ["-n", "3", llmpruneBinary().path, "tune"] + Self.args + ["--out", out, "--pipeline", "2"])
        #expect(r.status != 0 && !r.signaled)
        #expect(r.stderr.contains("--pipeline 2: does not divide the 3 rank(s)"), "\(r.stderr)")
        // 4 stages for 3 layers.
        let q = try run(mpiexecPath()!, ["-n", "4", llmpruneBinary().path, "tune"] + Self.args + ["--out", out, "--pipeline", "4"])
        #expect(q.status != 0 && !q.signaled)
        #expect(q.stderr.contains("--pipeline 4: more stages than the model's 3 layers"), "\(q.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out) && !FileManager.default.fileExists(atPath: out + ".job"))
    }
}

/// Bad input of a layer-sharded tune in one process: one line naming the flag, non-zero exit, nothing written.
@Suite struct PipelineTuneBadInput {
    @Test func refusedBeforeAnyWork() throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("x").path
        let base = ["tune"] + PipelineTune.args + ["--out", out]
        expectCleanFailure(try llmprune(base + ["--pipeline", "2"]), mentions: ["--pipeline 2", "does not divide the 1 rank"])
        expectCleanFailure(try llmprune(base + ["--pipeline", "2", "--eval", "wikitext2"]), mentions: ["--pipeline 2"])
        expectCleanFailure(try llmprune(base + ["--low-memory", "--eval", "wikitext2"]), mentions: ["--eval"])
        // A budget below what one process needs: refused from the headers, before loading, naming what would fit.
        expectCleanFailure(try llmprune(base + ["--mem-per-rank", "20M"]), mentions: ["--mem-per-rank", "predicted"])
        #expect(!FileManager.default.fileExists(atPath: out) && !FileManager.default.fileExists(atPath: out + ".job"))
    }
}
