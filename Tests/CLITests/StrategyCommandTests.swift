// `--strategy layer|channel` through the real binary on the tiny GGUF: the written directory has the cut config
// (num_hidden_layers, hidden_size with head_dim kept), `apply` reproduces it, `export` writes a GGUF that reads
// back with the same parameters; nonsense settings end in one line naming the flag, and nothing is written.
import Foundation
import Testing

@Suite struct StrategyCommand {
    func config(_ dir: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))) as! [String: Any]
    }

    func pruneApplyExport(_ strategy: [String], check: ([String: Any]) -> Void) throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("pruned").path
        // tinyPruneArgs passes --layers 0:3 (every layer of the tiny model) and --ratio 0.5
        var args = try tinyPruneArgs(s, out: out, extra: strategy + ["--json"])
        args[args.firstIndex(of: "--ratio")! + 1] = "0.25"
        let r = try llmprune(args)
        #expect(r.status == 0, "\(r.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        let after = report["parametersAfter"] as! Int
        #expect(after < report["parametersBefore"] as! Int)
        check(try config(out))
        let info = try llmprune(["info", "--model", out, "--json"])
        #expect(info.status == 0, "\(info.stderr)")
        #expect((try JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as! [String: Any])["parameters"] as! Int == after)
        let again = s.url.appendingPathComponent("again").path
        let a = try llmprune(["apply", "--plan", out + ".plan.json", "--model", fixtures.appendingPathComponent("tiny.gguf").path,
                              "--out", again, "--json"])
        #expect(a.status == 0, "\(a.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: again + "/model.safetensors"))
                == Data(contentsOf: URL(fileURLWithPath: out + "/model.safetensors")))
        let gguf = s.url.appendingPathComponent("pruned.gguf").path
        let e = try llmprune(["export", "--model", out, "--out", gguf, "--type", "f32", "--quiet"])
        #expect(e.status == 0, "\(e.stderr)")
        let back = try llmprune(["info", "--model", gguf, "--json"])
        #expect(back.status == 0, "\(back.stderr)")
        #expect((try JSONSerialization.jsonObject(with: Data(back.stdout.utf8)) as! [String: Any])["parameters"] as! Int == after)
    }

    @Test(arguments: ["taylor", "influence"])
    func depthPrunesExportsAndReapplies(importance: String) throws {
        try pruneApplyExport(["--strategy", "layer", "--block-importance", importance]) { c in
            #expect(c["num_hidden_layers"] as? Int == 2)           // 3 − Int(3 · 0.75) = 1 block removed
            #expect(c["hidden_size"] as? Int == 64)
        }
    }

    @Test func channelPrunesExportsAndReapplies() throws {
        try pruneApplyExport(["--strategy", "channel"]) { c in
            #expect(c["hidden_size"] as? Int == 48)                // Int(64 · 0.75)
            #expect(c["head_dim"] as? Int == 16)
            #expect(c["num_hidden_layers"] as? Int == 3)
        }
    }

    @Test(arguments: [
        (["--strategy", "layer", "--ratio", "0.9"], "--ratio"),                      // every layer
        (["--strategy", "layer", "--target-params", "0.01"], "--target-params"),     // closest to every layer
        (["--strategy", "channel", "--ratio", "0.99"], "--ratio"),                   // no hidden channel left
        (["--strategy", "channel", "--layers", "1:3"], "--layers"),
        (["--strategy", "channel", "--attention-unit", "query-head"], "--attention-unit"),
        (["--strategy", "layer", "--round-to", "8"], "--round-to"),
        (["--strategy", "layer", "--reduction", "max"], "--reduction"),
        (["--block-importance", "influence"], "--block-importance"),                 // block-wise
        (["--strategy", "depth"], "--strategy"),
    ])
    func nonsenseIsRefusedByFlag(extra: [String], flag: String) throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("pruned").path
        var args = try tinyPruneArgs(s, out: out)
        if let i = args.firstIndex(of: "--layers"), extra.contains("--layers") { args.removeSubrange(i...(i + 1)) }
        if let i = args.firstIndex(of: "--ratio"), extra.contains("--ratio") { args.removeSubrange(i...(i + 1)) }
        expectCleanFailure(try llmprune(args + extra), mentions: [flag])
        #expect(!FileManager.default.fileExists(atPath: out))
        #expect(!FileManager.default.fileExists(atPath: out + ".plan.json"))
    }

    @Test func clusterRefusesOtherStrategies() throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("pruned").path
        expectCleanFailure(try llmprune(["cluster", "prune"] + (try clusterJobArgs(s)) + ["--out", out, "--strategy", "layer"]),
                           mentions: ["--strategy"])
        #expect(!FileManager.default.fileExists(atPath: out))
        expectCleanFailure(try llmprune(["cluster", "memory", "--model", fixtures.appendingPathComponent("tiny.gguf").path,
                                         "--ranks", "1", "--strategy", "channel"]), mentions: ["--strategy"])
    }
}
