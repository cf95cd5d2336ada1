// `--dtype f32|bf16|f16` of prune, apply, cluster prune and merge through the real binary: every tensor of a bf16 or
// f16 output reads back as the fp32 output's value rounded to nearest even, bit for bit (norms and biases too);
// config.json names the dtype; the default follows the input (a GGUF → bf16, a safetensors model → its own dtype);
// N ranks write the single process's bytes in every dtype and shard mode; `prune --eval` reports the perplexity of
// the model as written; an unknown dtype is one line naming --dtype, and nothing is left behind.
import Foundation
import Formats
import Testing

/// Every tensor of `dir` (single file or sharded), by name.
func modelTensors(_ dir: String) throws -> TensorSource {
    let index = dir + "/model.safetensors.index.json"
    return FileManager.default.fileExists(atPath: index) ? try ShardedSafetensors(indexPath: index)
        : try SafetensorsFile(path: dir + "/model.safetensors")
}

/// The stored bytes of tensor `name` in `source`.
func rawBytes(_ source: TensorSource, _ name: String) throws -> Data {
    if let f = source as? SafetensorsFile { return Data(try f.rawBytes(name)) }
    return Data(try (source as! ShardedSafetensors).rawBytes(name))
}

/// `out` holds exactly `reference`'s (fp32) tensors, each stored in `dtype` as its values rounded to nearest even,
/// and its config.json says so.
func expectRounded(_ out: String, from reference: String, dtype: TensorDType, _ what: String,
                   sourceLocation: SourceLocation = #_sourceLocation) throws {
    let ref = try modelTensors(reference), got = try modelTensors(out)
    #expect(Set(got.tensorNames) == Set(ref.tensorNames), "\(what)", sourceLocation: sourceLocation)
    for name in ref.tensorNames {
        #expect(ref.storageType(of: name) == "F32", sourceLocation: sourceLocation)
        #expect(got.storageType(of: name) == dtype.safetensorsName, "\(what): \(name)", sourceLocation: sourceLocation)
        let want = try ref.floats(name).map { FloatEncoding.rounded($0, to: dtype).bitPattern }
        #expect(try got.floats(name).map(\.bitPattern) == want, "\(what): \(name)", sourceLocation: sourceLocation)
    }
    let config = try readJSON(out + "/config.json")
    #expect(config["torch_dtype"] as? String == dtype.torchName && config["dtype"] as? String == dtype.torchName,
            "\(what): \(config["torch_dtype"] ?? "none")", sourceLocation: sourceLocation)
}

/// `a` and `b` store the same tensors with the same bytes.
func expectSameBytes(_ a: String, _ b: String, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let x = try modelTensors(a), y = try modelTensors(b)
    #expect(Set(x.tensorNames) == Set(y.tensorNames), "\(what)", sourceLocation: sourceLocation)
    for name in x.tensorNames {
        #expect(x.storageType(of: name) == y.storageType(of: name), "\(what): \(name)", sourceLocation: sourceLocation)
        #expect(try rawBytes(x, name) == rawBytes(y, name), "\(what): \(name)", sourceLocation: sourceLocation)
    }
}

/// No output directory, plan, job directory or temporary left beside `out`.
func expectNothingLeft(_ out: String, sourceLocation: SourceLocation = #_sourceLocation) {
    let fm = FileManager.default
    for p in [out, out + ".plan.json", out + ".job"] {
        #expect(!fm.fileExists(atPath: p), "left behind: \(p)", sourceLocation: sourceLocation)
    }
    let parent = URL(fileURLWithPath: out).deletingLastPathComponent().path
    let left = ((try? fm.contentsOfDirectory(atPath: parent)) ?? []).filter { $0.contains(".tmp-") || $0.contains(".partial-") }
    #expect(left.isEmpty, "temporaries left: \(left)", sourceLocation: sourceLocation)
}

@Suite struct DTypeCommands {
    @Test func pruneAndApplyWriteTheRoundedModelInEachDType() throws {
        let s = Scratch()
        let path = { (name: String) in s.url.appendingPathComponent(name).path }
        let f32 = try llmprune(try tinyPruneArgs(s, out: path("f32"), extra: ["--dtype", "f32", "--json"]))
        #expect(f32.status == 0, "\(f32.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(f32.stdout.utf8)) as! [String: Any]
        #expect(report["dtype"] as? String == "f32")
        let parameters = report["parametersAfter"] as! Int
        for d in [TensorDType.bf16, .f16] {
            let r = try llmprune(try tinyPruneArgs(s, out: path("\(d)"), extra: ["--dtype", d.rawValue]))
            #expect(r.status == 0, "\(r.stderr)")
            try expectRounded(path("\(d)"), from: path("f32"), dtype: d, "prune --dtype \(d)")
            let file = try SafetensorsFile(path: path("\(d)") + "/model.safetensors")
            #expect(file.entries.reduce(0) { $0 + $1.end - $1.begin } == 2 * parameters)
            // apply with the same plan writes the same bytes
            let a = try llmprune(["apply", "--plan", path("\(d)") + ".plan.json", "--model",
                                  fixtures.appendingPathComponent("tiny.gguf").path, "--out", path("apply-\(d)"),
                                  "--dtype", d.rawValue])
            #expect(a.status == 0, "\(a.stderr)")
            try expectSameBytes(path("apply-\(d)"), path("\(d)"), "apply --dtype \(d)")
        }
        // No --dtype on a GGUF input: bf16.
        let byDefault = try llmprune(try tinyPruneArgs(s, out: path("default")))
        #expect(byDefault.status == 0, "\(byDefault.stderr)")
        try expectSameBytes(path("default"), path("bf16"), "prune without --dtype on a GGUF")
        #expect(try readJSON(path("default") + "/config.json")["torch_dtype"] as? String == "bfloat16")
    }

    /// A safetensors input keeps its dtype: synthetic f32, bf16 and f16 models of the tiny shape prune to outputs of
    /// the same dtype when no --dtype is given.
    @Test func theDefaultIsASafetensorsInputsOwnDType() throws {
        let s = Scratch()
        for d in TensorDType.allCases {
            let model = s.url.appendingPathComponent("synth-\(d)").path
            let synth = try llmprune(["synth", "--shape", "tiny", "--dtype", d.rawValue, "--seed", "3", "--out", model,
                                      "--tokenizer", fixtures.appendingPathComponent("tiny.gguf").path, "--quiet"])
            #expect(synth.status == 0, "\(synth.stderr)")
            #expect(try readJSON(model + "/config.json")["torch_dtype"] as? String == d.torchName, "synth says its dtype")
            var args = try tinyPruneArgs(s, out: s.url.appendingPathComponent("pruned-\(d)").path)
            args[args.firstIndex(of: "--model")! + 1] = model
            let r = try llmprune(args)
            #expect(r.status == 0, "\(r.stderr)")
            let out = try modelTensors(s.url.appendingPathComponent("pruned-\(d)").path)
            #expect(out.tensorNames.allSatisfy { out.storageType(of: $0) == d.safetensorsName }, "\(d)")
        }
    }

    /// `prune --eval` evaluates the model it wrote: after a bf16 write, the perplexity of `eval` on the output directory.
    @Test func evalAfterIsThePerplexityOfTheWrittenModel() throws {
        let s = Scratch()
        let text = try s.file("eval.txt", Data(String(repeating: "a quick brown dog, a lazy fox. ", count: 60).utf8))
        var after: [String: Double] = [:]
        for d in ["f32", "bf16"] {
            let out = s.url.appendingPathComponent(d).path
            let r = try llmprune(try tinyPruneArgs(s, out: out, extra: ["--dtype", d, "--eval", text, "--eval-windows", "3",
                                                                        "--json"]))
            #expect(r.status == 0, "\(r.stderr)")
            let report = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
            after[d] = (report["perplexityAfter"] as? [String: Double])?[text]
            let e = try llmprune(["eval", "--model", out, "--dataset", text, "--max-windows", "3", "--json"])
            #expect(e.status == 0, "\(e.stderr)")
            let written = ((try JSONSerialization.jsonObject(with: Data(e.stdout.utf8)) as! [String: Any])["result"]
                           as! [String: Any])["perplexity"] as? Double
            #expect(after[d] != nil && after[d] == written, "\(d): prune says \(after[d] ?? .nan), eval of the output \(written ?? .nan)")
        }
        #expect(after["f32"] != after["bf16"], "the bf16 model is not the fp32 one")
    }

    @Test func unknownDTypeIsOneLineAndLeavesNothing() throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("o").path
        let tiny = fixtures.appendingPathComponent("tiny.gguf").path
        expectCleanFailure(try llmprune(try tinyPruneArgs(s, out: out, extra: ["--dtype", "fp8"])), mentions: ["--dtype", "fp8"])
        expectNothingLeft(out)
        expectCleanFailure(try llmprune(try tinyPruneArgs(s, out: out, extra: ["--dtype", "BF16"])), mentions: ["--dtype", "BF16"])
        expectNothingLeft(out)
        let plan = s.url.appendingPathComponent("p.json").path
        var planArgs = try tinyPruneArgs(s, out: out)
        planArgs[0] = "plan"
        planArgs[planArgs.firstIndex(of: "--out")!...planArgs.firstIndex(of: "--out")! + 1] = ["--plan", plan]
        #expect(try llmprune(planArgs).status == 0)
        expectCleanFailure(try llmprune(planArgs + ["--force", "--dtype", "bf16"]), mentions: ["--dtype"])   // plan writes no model
        expectCleanFailure(try llmprune(["apply", "--plan", plan, "--model", tiny, "--out", out, "--dtype", "float64"]),
                           mentions: ["--dtype", "float64"])
        expectNothingLeft(out)
        expectCleanFailure(try llmprune(["cluster", "prune"] + (try clusterJobArgs(s)) + ["--out", out, "--dtype", "f64"]),
                           mentions: ["--dtype", "f64"])
        expectNothingLeft(out)
        expectCleanFailure(try llmprune(["merge", "--model", tiny, "--adapter", s.url.path, "--out", out, "--dtype", "half"]),
                           mentions: ["--dtype", "half"])
        expectNothingLeft(out)
    }

    @Test func mergeWritesTheAskedDType() throws {
        let s = Scratch()
        let adapter = s.url.appendingPathComponent("adapter").path
        let tiny = TuneCommandTests.tiny
        let t = try llmprune(["tune", "--model", tiny, "--data", TuneCommandTests.alpaca, "--out", adapter, "--steps", "1",
                              "--batch", "4", "--micro-batch", "2", "--val-size", "4", "--cutoff", "64", "--lr", "1e-2",
                              "--warmup", "0", "--rank", "4", "--threads", "1", "--quiet"])
        #expect(t.status == 0, "\(t.stderr)")
        let path = { (name: String) in s.url.appendingPathComponent(name).path }
        for d in TensorDType.allCases {
            let m = try llmprune(["merge", "--model", tiny, "--adapter", adapter, "--out", path("merged-\(d)"), "--dtype", d.rawValue])
            #expect(m.status == 0, "\(m.stderr)")
        }
        for d in [TensorDType.bf16, .f16] { try expectRounded(path("merged-\(d)"), from: path("merged-f32"), dtype: d, "merge \(d)") }
        let byDefault = try llmprune(["merge", "--model", tiny, "--adapter", adapter, "--out", path("merged")])
        #expect(byDefault.status == 0, "\(byDefault.stderr)")
        try expectSameBytes(path("merged"), path("merged-bf16"), "merge without --dtype on a GGUF")
    }
}

/// `cluster prune` on 2 ranks, sample- and layer-sharded, and layer-sharded low-memory, writes the bytes of the
/// single-process prune in each dtype; the dtype is part of the job (a resume takes it from job.json).
@Suite(.enabled(if: mpiexecPath() != nil, "mpiexec not installed"), .serialized) struct DTypeCluster {
    @Test(arguments: TensorDType.allCases)
    func ranksWriteTheSingleProcessBytes(dtype: TensorDType) throws {
        let s = Scratch()
        let single = s.url.appendingPathComponent("single").path
        let r0 = try llmprune(["prune"] + (try clusterJobArgs(s)) + ["--out", single, "--quiet", "--dtype", dtype.rawValue])
        #expect(r0.status == 0, "\(r0.stderr)")
        for extra in [["--shard", "samples"], ["--shard", "layers"], ["--shard", "layers", "--low-memory"]] {
            let out = s.url.appendingPathComponent("c" + extra.joined()).path
            let r = try clusterRun(2, ["prune"] + (try clusterJobArgs(s)) + ["--out", out, "--quiet", "--dtype", dtype.rawValue]
                                   + extra)
            #expect(r.status == 0, "\(extra): \(r.stderr)")
            guard r.status == 0 else { continue }
            try expectSameBytes(out, single, "\(dtype) \(extra)")
            let config = try readJSON(out + "/config.json")
            #expect(config["torch_dtype"] as? String == dtype.torchName && config["dtype"] as? String == dtype.torchName)
            let index = try readJSON(out + "/model.safetensors.index.json")["metadata"] as! [String: Any]
            let parameters = try readJSON(out + ".job/plan.json")["parametersAfter"] as! Int
            #expect(index["total_size"] as? Int == dtype.byteCount * parameters)
            #expect(try readJSON(out + ".job/report.json")["dtype"] as? String == dtype.rawValue)
            let recorded = try readJSON(out + ".job/job.json")["arguments"] as! [String]
            #expect(recorded.firstIndex(of: "--dtype").map { recorded[$0 + 1] } == dtype.rawValue, "\(recorded)")
        }
    }

    @Test func withoutDTypeRanksWriteBF16FromAGGUF() throws {
        let s = Scratch()
        let single = s.url.appendingPathComponent("single").path, out = s.url.appendingPathComponent("two").path
        #expect(try llmprune(["prune"] + (try clusterJobArgs(s)) + ["--out", single, "--quiet", "--dtype", "bf16"]).status == 0)
        let r = try clusterRun(2, ["prune"] + (try clusterJobArgs(s)) + ["--out", out, "--quiet", "--shard", "layers"])
        #expect(r.status == 0, "\(r.stderr)")
        try expectSameBytes(out, single, "cluster prune without --dtype")
        #expect(try readJSON(out + "/config.json")["torch_dtype"] as? String == "bfloat16")
    }
}
