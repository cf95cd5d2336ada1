// The commands that write a model directory through the real binary: a heterogeneous result of prune, apply and
// merge carries the trust_remote_code files (configuration_llmprune.py, modeling_llmprune.py) and model_type
// "llmprune", and every command reads it back (so does cluster prune's sharded output); a uniform prune stays a
// plain llama config without them.
import Foundation
import Testing

let remoteCodeFiles = ["configuration_llmprune.py", "modeling_llmprune.py"]

/// Whether `dir` is a remote-code output: both python files, model_type llmprune with base_model_type `family`.
func expectRemoteCode(_ dir: String, _ expected: Bool, family: String = "llama", sourceLocation: SourceLocation = #_sourceLocation) throws {
    for f in remoteCodeFiles {
        #expect(FileManager.default.fileExists(atPath: dir + "/" + f) == expected, "\(dir)/\(f)", sourceLocation: sourceLocation)
    }
    let cfg = try readJSON(dir + "/config.json")
    #expect(cfg["model_type"] as? String == (expected ? "llmprune" : family), sourceLocation: sourceLocation)
    #expect((cfg["base_model_type"] as? String) == (expected ? family : nil), sourceLocation: sourceLocation)
    #expect((cfg["auto_map"] != nil) == expected && (cfg["layer_widths"] != nil) == expected, sourceLocation: sourceLocation)
}

@Suite struct RemoteCodeCLI {
    @Test func heterogeneousOutputsOfPruneApplyAndMerge() throws {
        let s = Scratch()
        let tiny = fixtures.appendingPathComponent("tiny.gguf").path
        // layer 0 untouched, layers 1-2 cut: heterogeneous
        let out = s.url.appendingPathComponent("hetero").path
        var args = try tinyPruneArgs(s, out: out)
        args[args.firstIndex(of: "--layers")! + 1] = "1:3"
        let r = try llmprune(args)
        #expect(r.status == 0, "\(r.stderr)")
        try expectRemoteCode(out, true)
        let info = try llmprune(["info", "--model", out, "--json"])
        #expect(info.status == 0, "\(info.stderr)")

        let applied = s.url.appendingPathComponent("applied").path
        let a = try llmprune(["apply", "--plan", out + ".plan.json", "--model", tiny, "--out", applied])
        #expect(a.status == 0, "\(a.stderr)")
        try expectRemoteCode(applied, true)
        for f in remoteCodeFiles + ["config.json"] {
            #expect(try Data(contentsOf: URL(fileURLWithPath: applied + "/" + f)) == Data(contentsOf: URL(fileURLWithPath: out + "/" + f)))
        }

        // tune on the remote-code directory (read back by llmprune's loader), then merge: still remote code
        let adapter = s.url.appendingPathComponent("adapter").path
        let t = try llmprune(["tune", "--model", out, "--data", TuneCommandTests.alpaca, "--out", adapter, "--steps", "1",
                              "--batch", "2", "--micro-batch", "2", "--val-size", "2", "--cutoff", "64", "--warmup", "0",
                              "--rank", "2", "--threads", "1", "--quiet"])
        #expect(t.status == 0, "\(t.stderr)")
        let merged = s.url.appendingPathComponent("merged").path
        let m = try llmprune(["merge", "--model", out, "--adapter", adapter, "--out", merged])
        #expect(m.status == 0, "\(m.stderr)")
        try expectRemoteCode(merged, true)
        let e = try llmprune(["eval", "--model", merged, "--dataset", try calibrationFile(s), "--seq-len", "8", "--json"])
        #expect(e.status == 0, "\(e.stderr)")
    }

    @Test(.enabled(if: mpiexecPath() != nil, "mpiexec not installed"))
    func clusterPruneShardedOutputCarriesTheRemoteCode() throws {
        let s = Scratch()
        var args = try clusterJobArgs(s)
        args[args.firstIndex(of: "--layers")! + 1] = "1:3"
        let single = s.url.appendingPathComponent("single").path
        let p = try llmprune(["prune"] + args + ["--out", single, "--quiet"])
        #expect(p.status == 0, "\(p.stderr)")
        let out = s.url.appendingPathComponent("sharded").path
        let r = try clusterRun(2, ["prune"] + args + ["--out", out, "--shard", "layers", "--quiet"])
        #expect(r.status == 0, "\(r.stderr)")
        try expectRemoteCode(out, true)
        #expect(FileManager.default.fileExists(atPath: out + "/model.safetensors.index.json"))
        for f in remoteCodeFiles + ["config.json"] {
            #expect(try Data(contentsOf: URL(fileURLWithPath: out + "/" + f)) == Data(contentsOf: URL(fileURLWithPath: single + "/" + f)))
        }
        #expect(try llmprune(["info", "--model", out]).status == 0)
    }

    @Test func uniformPruneStaysPlain() throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("uniform").path
        let r = try llmprune(try tinyPruneArgs(s, out: out))   // every layer cut alike
        #expect(r.status == 0, "\(r.stderr)")
        try expectRemoteCode(out, false)
        #expect(try readJSON(out + "/config.json")["architectures"] as? [String] == ["LlamaForCausalLM"])
    }
}
