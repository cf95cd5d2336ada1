// Low-memory execution and the memory planner through the real binary, on a synthetic bf16 model of SmolLM2-135M's
// shape: keeping the layers mapped in bf16 and widening one at a time gives the same plan (bit for bit) and the same
// pruned weights as an fp32 load of the same file; a job the planner says cannot fit is refused before anything is
// loaded; and a per-rank budget is enforced for real (cluster/mem-budget.sh: a cgroup, else an address-space limit).
import Foundation
import Formats
import Testing

/// The default model's tokenizer is copied into synthetic models; without it the calibration has no tokenizer.
let defaultModelPath = packageRoot.appendingPathComponent("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf").path
let memBudgetScript = packageRoot.appendingPathComponent("cluster/mem-budget.sh").path

/// One synthetic 135M-shaped bf16 model (270 MB), written once into the temporary directory and reused by later
/// runs (synth is deterministic in the seed); the tests below only read it.
let synthetic135M: Result<String, Error> = Result {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("llmprune-test-smollm2-135m-bf16-s11").path
    if FileManager.default.fileExists(atPath: dir + "/model.safetensors.index.json") { return dir }
    let r = try llmprune(["synth", "--shape", "smollm2-135m", "--dtype", "bf16", "--seed", "11", "--out", dir,
                          "--tokenizer", defaultModelPath, "--quiet", "--force"])
    guard r.status == 0 else { throw NSError(domain: "synth", code: Int(r.status), userInfo: [NSLocalizedDescriptionKey: r.stderr]) }
    return dir
}

func lowMemoryArgs(_ model: String, out: String) -> [String] {
    ["prune", "--model", model, "--out", out, "--shard", "layers", "--ratio", "0.2", "--calib", "ptb-valid",
     "--calib-samples", "4", "--calib-len", "32", "--quiet", "--force"]
}

@Suite(.enabled(if: FileManager.default.fileExists(atPath: defaultModelPath), "default model not fetched (scripts/setup.sh)"),
       .serialized)
struct LowMemory {
    @Test func bf16StreamingGivesTheFP32PlanAndWeights() throws {
        let model = try synthetic135M.get(), s = Scratch()
        let fp = s.url.appendingPathComponent("fp32").path, low = s.url.appendingPathComponent("low").path
        // The fp32 job writes fp32 (`--dtype f32`; its default would be the bf16 of its input).
        let rf = try llmprune(["cluster"] + lowMemoryArgs(model, out: fp) + ["--dtype", "f32"])
        #expect(rf.status == 0, "\(rf.stderr)")
        let rl = try llmprune(["cluster"] + lowMemoryArgs(model, out: low) + ["--low-memory"])
        #expect(rl.status == 0, "\(rl.stderr)")
        // Recomputing every layer's internals instead of keeping them changes nothing either.
        let recomputed = s.url.appendingPathComponent("recomputed").path
        let rr = try llmprune(["cluster"] + lowMemoryArgs(model, out: recomputed) + ["--low-memory", "--activation-cache", "0"])
        #expect(rr.status == 0, "\(rr.stderr)")
        let cachedPlan = try readJSON(low + ".job/report.json")["memoryPlan"] as! [String: Any]
        #expect(((cachedPlan["ranks"] as! [[String: Any]])[0]["cachedLayers"] as! Int) > 0)
        let pr = try readJSON(recomputed + ".job/plan.json")
        // The same plan: same kept units, and scores equal bit for bit (the same products on the same values).
        let pf = try readJSON(fp + ".job/plan.json"), pl = try readJSON(low + ".job/plan.json")
        expectSamePlan(pf, pl)
        let lf = pf["layers"] as! [[String: Any]], ll = pl["layers"] as! [[String: Any]]
        for (a, b) in Array(zip(lf, ll)) + Array(zip(lf, pr["layers"] as! [[String: Any]])) {
            #expect(a["mlpScores"] as! [Double] == b["mlpScores"] as! [Double], "layer \(a["layer"]!)")
            #expect(a["attentionScores"] as! [Double] == b["attentionScores"] as! [Double], "layer \(a["layer"]!)")
        }
        // The low-memory output is bf16 (the file dtype); widened, every tensor equals the fp32 job's.
        let of = try ShardedSafetensors(indexPath: fp + "/model.safetensors.index.json")
        let ol = try ShardedSafetensors(indexPath: low + "/model.safetensors.index.json")
        #expect(Set(of.tensorNames) == Set(ol.tensorNames))
        for name in of.tensorNames {
            #expect(of.dtype(of: name) == "F32" && ol.dtype(of: name) == "BF16", "\(name)")
            #expect(try of.floats(name) == ol.floats(name), "\(name)")
        }
        // The pruned model reads back with the planned widths.
        let info = try llmprune(["info", "--model", low, "--json"])
        #expect(info.status == 0, "\(info.stderr)")
        #expect(info.stdout.contains("\(pl["parametersAfter"] as! Int)"), "\(info.stdout)")
        // The report has the planner's prediction and the measured peak of the rank.
        let report = try readJSON(low + ".job/report.json")
        let plan = report["memoryPlan"] as! [String: Any]
        #expect(plan["lowMemory"] as? Bool == true)
        let predicted = (plan["ranks"] as! [[String: Any]])[0]["peakBytes"] as! Int
        let measured = (report["perRank"] as! [[String: Any]])[0]["peakRSSBytes"] as! Int
        #expect(predicted > 0 && measured > 0)
    }

    @Test(.enabled(if: mpiexecPath() != nil, "mpiexec not installed"))
    func twoStreamedRanksGiveTheSingleProcessPlan() throws {
        let model = try synthetic135M.get(), s = Scratch()
        let one = s.url.appendingPathComponent("one").path, two = s.url.appendingPathComponent("two").path
        #expect(try llmprune(["cluster"] + lowMemoryArgs(model, out: one) + ["--low-memory"]).status == 0)
        let r = try run(mpiexecPath()!, ["-n", "2", llmpruneBinary().path, "cluster"]
                        + lowMemoryArgs(model, out: two) + ["--low-memory"])
        #expect(r.status == 0, "\(r.stderr)")
        expectSamePlan(try readJSON(one + ".job/plan.json"), try readJSON(two + ".job/plan.json"))
    }

    /// A low-memory job killed while writing resumes as a low-memory layers job (the mode and the budget are part
    /// of the job) and ends with the uninterrupted job's plan and bf16 weights.
    @Test(.enabled(if: mpiexecPath() != nil, "mpiexec not installed"))
    func killedWhileWritingResumesStreamed() throws {
        let model = try synthetic135M.get(), s = Scratch()
        let clean = s.url.appendingPathComponent("clean").path, out = s.url.appendingPathComponent("struck").path
        let args = Array(lowMemoryArgs(model, out: out).dropFirst()) + ["--low-memory", "--mem-per-rank", "2G"]
        let r = try run(mpiexecPath()!, ["-n", "2", llmpruneBinary().path, "cluster"]
                        + lowMemoryArgs(model, out: clean) + ["--low-memory"])
        #expect(r.status == 0, "\(r.stderr)")
        let job = out + ".job", log = s.url.appendingPathComponent("struck.log")
        let p = try startClusterJob(2, args, fault: "stall@1:write", log: log)
        try #require(waitForFile("\(job)/attempt-0/rank-1.stalled", timeout: 60), "rank 1 never reached the write")
        kill(try rankPID(job, epoch: 0, rank: 1), SIGKILL)
        #expect(waitForExit(p, timeout: 20) != nil)
        #expect(!FileManager.default.fileExists(atPath: out), "no half-written output")
        let resumed = try run(mpiexecPath()!, ["-n", "2", llmpruneBinary().path, "cluster", "prune", "--resume", job, "--quiet"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let report = try readJSON(job + "/report.json")
        #expect(report["startPhase"] as? String == "write")
        #expect(report["shard"] as? String == "layers")
        #expect((report["memoryPlan"] as! [String: Any])["lowMemory"] as? Bool == true)
        expectSamePlan(try readJSON(clean + ".job/plan.json"), try readJSON(job + "/plan.json"))
        let a = try ShardedSafetensors(indexPath: clean + "/model.safetensors.index.json")
        let b = try ShardedSafetensors(indexPath: out + "/model.safetensors.index.json")
        for name in a.tensorNames {
            #expect(b.dtype(of: name) == "BF16")
            #expect(try a.floats(name) == b.floats(name), "\(name)")
        }
    }

    @Test func aJobThatCannotFitIsRefusedBeforeLoading() throws {
        let model = try synthetic135M.get(), s = Scratch()
        let out = s.url.appendingPathComponent("refused").path
        let r = try llmprune(["cluster"] + lowMemoryArgs(model, out: out) + ["--mem-per-rank", "64M"])
        expectCleanFailure(r, mentions: ["--mem-per-rank", "needs", "GiB per rank with 1 rank"])
        #expect(r.status == 2)
        #expect(!FileManager.default.fileExists(atPath: out))
        #expect(!FileManager.default.fileExists(atPath: out + ".job"), "the planner runs before the job directory")
        expectCleanFailure(try llmprune(["cluster"] + lowMemoryArgs(model, out: out) + ["--mem-per-rank", "lots"]),
                           mentions: ["--mem-per-rank", "lots"])
        expectCleanFailure(try llmprune(["cluster", "prune", "--model", model, "--out", out, "--low-memory"]),
                           mentions: ["--low-memory", "--shard layers"])
    }

    /// The budget is real: under cluster/mem-budget.sh a job that fits its planned budget completes, and the same job
    /// with a budget well below its need (the planner not asked) is killed by the kernel, not finished.
    @Test func theBudgetIsEnforcedByTheKernel() throws {
        let model = try synthetic135M.get(), s = Scratch()
        let probe = try run(memBudgetScript, ["512M", "--", "/bin/true"])
        try #require(probe.status == 0, "no budget mechanism: \(probe.stderr)")
        let cgroup = probe.stderr.contains("cgroup")
        let ok = s.url.appendingPathComponent("ok").path
        // A cgroup counts resident memory; an address-space limit needs room for reservations beyond it.
        let fits = try run(memBudgetScript, ["-q", cgroup ? "1G" : "4G", "--", llmpruneBinary().path, "cluster"]
                           + lowMemoryArgs(model, out: ok) + ["--low-memory", "--mem-per-rank", "1G"])
        #expect(fits.status == 0, "\(fits.stderr)")
        let report = try readJSON(ok + ".job/report.json")
        let measured = (report["perRank"] as! [[String: Any]])[0]["peakRSSBytes"] as! Int
        #expect(measured < 1 << 30)
        let starved = try run(memBudgetScript, ["-q", "150M", "--", llmpruneBinary().path, "cluster"]
                              + lowMemoryArgs(model, out: s.url.appendingPathComponent("starved").path))
        // A cgroup's OOM killer ends it with SIGKILL; an address-space limit makes an allocation fail.
        if cgroup {
            #expect(starved.signaled && starved.status == SIGKILL, "status \(starved.status): \(starved.stderr)")
        } else {
            #expect(starved.status != 0, "status \(starved.status): \(starved.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: s.url.appendingPathComponent("starved").path))
    }
}

/// `llmprune cluster memory`: the planner alone, for a published shape (no file read). Its --shard defaults to
/// samples as in `cluster prune`, so the layers-mode plans name it.
struct MemoryCommandTests {
    @Test func sevenBillionNeedsFourRanksOfSixGiB() throws {
        let one = try llmprune(["cluster", "memory", "--shape", "llama-7b", "--ranks", "1", "--ratio", "0.2",
                                "--shard", "layers", "--mem-per-rank", "6G"])
        #expect(one.status == 2)
        #expect(one.stderr.contains("needs") && one.stderr.contains("per rank with 1 rank") && one.stderr.contains("use ≥ 4 ranks"),
                "\(one.stderr)")
        #expect(one.stdout.contains("0..<32"), "the table comes first: \(one.stdout)")
        let four = try llmprune(["cluster", "memory", "--shape", "llama-7b", "--ranks", "4", "--ratio", "0.2",
                                 "--shard", "layers", "--mem-per-rank", "6G"])
        #expect(four.status == 0, "\(four.stderr)")
        #expect(four.stdout.contains("fits --mem-per-rank 6.00 GiB") && four.stdout.contains("(with --low-memory)"), "\(four.stdout)")
        let json = try llmprune(["cluster", "memory", "--shape", "llama2-70b", "--ranks", "8", "--shard", "layers",
                                  "--low-memory", "--json"])
        #expect(json.status == 0, "\(json.stderr)")
        let plan = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as! [String: Any]
        #expect((plan["ranks"] as! [[String: Any]]).count == 8)
        expectCleanFailure(try llmprune(["cluster", "memory", "--shape", "llama-99b"]), mentions: ["--shape", "llama-99b"])
        expectCleanFailure(try llmprune(["cluster", "memory", "--shape", "llama-7b", "--ranks", "33"]), mentions: ["--ranks", "33"])
    }
}

/// Low memory on a quantised GGUF (the tiny Q8/F32 fixture): layers are dequantised one at a time, embedding rows
/// decoded as needed, and the plan is the fp32 load's; with `--dtype f32` (a GGUF's default is bf16) the shards
/// are F32 and equal the fp32 load's.
@Suite(.enabled(if: mpiexecPath() != nil, "mpiexec not installed")) struct LowMemoryGGUF {
    @Test func quantisedLayersStreamToTheSamePlan() throws {
        let s = Scratch()
        let fp = s.url.appendingPathComponent("fp").path, low = s.url.appendingPathComponent("low").path
        let base = try clusterJobArgs(s) + ["--shard", "layers", "--quiet", "--dtype", "f32"]
        #expect(try clusterRun(2, ["prune"] + base + ["--out", fp]).status == 0)
        let r = try clusterRun(2, ["prune"] + base + ["--out", low, "--low-memory"])
        #expect(r.status == 0, "\(r.stderr)")
        let pf = try readJSON(fp + ".job/plan.json"), pl = try readJSON(low + ".job/plan.json")
        expectSamePlan(pf, pl)
        for (a, b) in zip(pf["layers"] as! [[String: Any]], pl["layers"] as! [[String: Any]]) {
            #expect(a["mlpScores"] as! [Double] == b["mlpScores"] as! [Double])
        }
        let of = try ShardedSafetensors(indexPath: fp + "/model.safetensors.index.json")
        let ol = try ShardedSafetensors(indexPath: low + "/model.safetensors.index.json")
        for name in of.tensorNames {
            #expect(ol.dtype(of: name) == "F32")
            #expect(try of.floats(name) == ol.floats(name), "\(name)")
        }
    }
}
