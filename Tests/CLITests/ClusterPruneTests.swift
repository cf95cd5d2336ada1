// `mpiexec -n N llmprune cluster prune` on the tiny model: with sample sharding and with layer sharding, on 1–3
// ranks, the plan is the single-process plan (same kept units, scores within 1e-5 relative) and the sharded output
// holds exactly the tensors of the single-process output.
import Foundation
import Formats
import Testing

func mpiexecPath() -> String? {
    ["/usr/bin/mpiexec", "/usr/local/bin/mpiexec"].first { FileManager.default.isExecutableFile(atPath: $0) }
}

/// The flags every test job shares (tiny model, scored layers 0..<3, a small calibration text).
func clusterJobArgs(_ s: Scratch, criterion: String = "element1") throws -> [String] {
    let calib = try s.file("calib.txt", Data(String(repeating: "the quick brown fox jumps over the lazy dog\n", count: 40).utf8))
    return ["--model", fixtures.appendingPathComponent("tiny.gguf").path, "--layers", "0:3", "--calib", calib,
            "--calib-samples", "5", "--calib-len", "8", "--criterion", criterion]
}

/// `llmprune cluster …` on `ranks` ranks (plain process for one).
func clusterRun(_ ranks: Int, _ args: [String]) throws -> RunResult {
    ranks == 1 ? try llmprune(["cluster"] + args)
        : try run(mpiexecPath()!, ["-n", "\(ranks)", llmpruneBinary().path, "cluster"] + args)
}

func readJSON(_ path: String) throws -> [String: Any] {
    try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
}

func expectSamePlan(_ one: [String: Any], _ other: [String: Any], sourceLocation: SourceLocation = #_sourceLocation) {
    let l1 = one["layers"] as! [[String: Any]], l2 = other["layers"] as! [[String: Any]]
    #expect(l1.count == l2.count, sourceLocation: sourceLocation)
    var worst = 0.0
    for (a, b) in zip(l1, l2) {
        #expect(a["layer"] as! Int == b["layer"] as! Int, sourceLocation: sourceLocation)
        for key in ["keptKVHeads", "keptQueryHeads", "keptMLPChannels"] {
            #expect(a[key] as! [Int] == b[key] as! [Int], "\(key) differs", sourceLocation: sourceLocation)
        }
        for key in ["attentionScores", "mlpScores"] {
            let x = a[key] as! [Double], y = b[key] as! [Double]
            #expect(x.count == y.count, sourceLocation: sourceLocation)
            for (u, v) in zip(x, y) { worst = max(worst, abs(u - v) / max(abs(u), 1e-30)) }
        }
    }
    #expect(worst < 1e-5, "worst relative score difference \(worst)", sourceLocation: sourceLocation)
    #expect(one["parametersAfter"] as! Int == other["parametersAfter"] as! Int, sourceLocation: sourceLocation)
    #expect((one["calibration"] as! [String: Any])["offsets"] as! [Int]
            == (other["calibration"] as! [String: Any])["offsets"] as! [Int], sourceLocation: sourceLocation)
}

/// The single-process reference: `llmprune prune` (plan beside the output), weights in fp32 (`--dtype f32`, the
/// cut's values exactly).
func singleProcessPrune(_ s: Scratch, criterion: String) throws -> (plan: [String: Any], out: String) {
    let out = s.url.appendingPathComponent("single-\(criterion)").path
    let r = try llmprune(["prune"] + (try clusterJobArgs(s, criterion: criterion)) + ["--out", out, "--quiet", "--dtype", "f32"])
    #expect(r.status == 0, "\(r.stderr)")
    return (try readJSON(out + ".plan.json"), out)
}

@Suite(.enabled(if: mpiexecPath() != nil, "mpiexec not installed"), .serialized) struct ClusterPrune {
    @Test(arguments: ["element1", "element2"])
    func everyShardingGivesTheSingleProcessPlanAndModel(criterion: String) throws {
        let s = Scratch()
        let single = try singleProcessPrune(s, criterion: criterion)
        let reference = try SafetensorsFile(path: single.out + "/model.safetensors")
        for (ranks, shard) in [(1, "samples"), (2, "samples"), (3, "samples"), (2, "layers"), (3, "layers")] {
            let out = s.url.appendingPathComponent("c-\(criterion)-\(ranks)-\(shard)").path
            let r = try clusterRun(ranks, ["prune"] + (try clusterJobArgs(s, criterion: criterion))
                                   + ["--out", out, "--shard", shard, "--json", "--dtype", "f32"])
            #expect(r.status == 0, "\(ranks) \(shard): \(r.stderr)")
            guard r.status == 0 else { continue }
            expectSamePlan(single.plan, try readJSON(out + ".job/plan.json"))
            // One shard per rank, the index naming every tensor of the single-process model once.
            let files = try FileManager.default.contentsOfDirectory(atPath: out).filter { $0.hasSuffix(".safetensors") }.sorted()
            #expect(files == (1...ranks).map { String(format: "model-%05d-of-%05d.safetensors", $0, ranks) })
            let index = try readJSON(out + "/model.safetensors.index.json")["weight_map"] as! [String: String]
            #expect(Set(index.keys) == Set(reference.tensorNames))
            let sharded = try ShardedSafetensors(indexPath: out + "/model.safetensors.index.json")
            for name in reference.tensorNames {
                #expect(sharded.dtype(of: name) == "F32" && reference.dtype(of: name) == "F32", "\(name)")
                #expect(try sharded.floats(name) == reference.floats(name), "\(name) differs (\(ranks) \(shard))")
            }
            let report = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
            #expect((report["perRank"] as! [[String: Any]]).count == ranks)
            let traceFile = try readJSON(out + ".job/trace.json")
            let trace = traceFile["traceEvents"] as! [[String: Any]]
            #expect(Set(trace.map { $0["pid"] as! Int }) == Set(0..<ranks))
            // The origin the spans count from, on the wall clock: after the job began, before it ended.
            let origin = try #require((traceFile["otherData"] as? [String: Any])?["origin"] as? Double)
            let attempts = try readJSON(out + ".job/state.json")["attempts"] as! [[String: Any]]
            #expect(origin <= attempts.last!["started"] as! Double && origin > Date().timeIntervalSince1970 - 600)
            #expect(trace.contains { $0["name"] as? String == "load" } && trace.contains { $0["name"] as? String == "write" })
        }
    }

    /// An untied Hugging Face directory (safetensors in, lm_head on the last rank): both shardings on 2 ranks write
    /// exactly the single-process model.
    @Test func untiedHuggingFaceModelShardsLikeOneProcess() throws {
        let s = Scratch()
        let fm = FileManager.default
        let model = s.url.appendingPathComponent("untied")
        try fm.copyItem(at: fixtures.appendingPathComponent("tiny_untied"), to: model)
        // The tiny GGUF's byte-level tokenizer, as `prune` exports it, fits the untied model's 256-token vocabulary.
        let withTokenizer = s.url.appendingPathComponent("tok").path
        #expect(try llmprune(["prune"] + (try clusterJobArgs(s)) + ["--out", withTokenizer, "--quiet"]).status == 0)
        for f in ["tokenizer.json", "tokenizer_config.json"] {
            try fm.copyItem(atPath: withTokenizer + "/" + f, toPath: model.appendingPathComponent(f).path)
        }
        var args = try clusterJobArgs(s, criterion: "element2")
        args[1] = model.path
        args[3] = "0:2"                                     // the untied fixture has 2 layers
        let single = s.url.appendingPathComponent("single").path
        #expect(try llmprune(["prune"] + args + ["--out", single, "--quiet"]).status == 0)
        let reference = try SafetensorsFile(path: single + "/model.safetensors")
        #expect(reference.tensorNames.contains("lm_head.weight"))
        // An fp32 safetensors input is written in fp32 when no --dtype is given.
        #expect(reference.tensorNames.allSatisfy { reference.dtype(of: $0) == "F32" })
        for shard in ["samples", "layers"] {
            let out = s.url.appendingPathComponent("c-\(shard)").path
            let r = try clusterRun(2, ["prune"] + args + ["--out", out, "--shard", shard, "--quiet"])
            #expect(r.status == 0, "\(shard): \(r.stderr)")
            guard r.status == 0 else { continue }
            expectSamePlan(try readJSON(single + ".plan.json"), try readJSON(out + ".job/plan.json"))
            let sharded = try ShardedSafetensors(indexPath: out + "/model.safetensors.index.json")
            for name in reference.tensorNames {
                #expect(sharded.dtype(of: name) == "F32", "\(name) (\(shard))")
                #expect(try sharded.floats(name) == reference.floats(name), "\(name) differs (\(shard))")
            }
        }
    }

    @Test func badFlagsAndFinishedJobsAreOneLineErrors() throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("m").path
        expectCleanFailure(try llmprune(["cluster", "prune"] + (try clusterJobArgs(s)) + ["--out", out, "--shard", "rows"]),
                           mentions: ["--shard", "rows"])
        expectCleanFailure(try llmprune(["cluster", "prune"] + (try clusterJobArgs(s)) + ["--out", out, "--heartbeat-timeout", "0.5"]),
                           mentions: ["--heartbeat-timeout"])
        expectCleanFailure(try llmprune(["cluster", "status", s.url.appendingPathComponent("nope").path]),
                           mentions: ["nope", "not a job directory"])
        expectCleanFailure(try llmprune(["cluster", "frobnicate"]), mentions: ["frobnicate"])
        let ok = try llmprune(["cluster", "prune"] + (try clusterJobArgs(s)) + ["--out", out, "--quiet"])
        #expect(ok.status == 0, "\(ok.stderr)")
        expectCleanFailure(try llmprune(["cluster", "prune"] + (try clusterJobArgs(s)) + ["--out", out, "--quiet"]),
                           mentions: [out])
        expectCleanFailure(try llmprune(["cluster", "prune", "--resume", out + ".job", "--quiet"]),
                           mentions: ["already complete"])
        #expect(try llmprune(["prune"] + (try clusterJobArgs(s)) + ["--out", out + "2", "--quiet"]).status == 0)
    }
}
