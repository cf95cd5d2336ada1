// The flag tables through the real binary: `prune`, `plan`, `cluster prune` and `cluster memory` accept the same
// pruning and calibration flags and make the same settings of them, defaults included (LLMPRUNE_PRINT_FLAGS=1
// makes a command print what it parsed and stop); the job flags mean the same in `cluster prune` and
// `cluster memory`; a tune job records its own flags, with absolute paths; sequences beyond the model's context
// are refused by flag before anything runs.
import Foundation
import Testing

/// Runs the binary with extra environment and, optionally, another working directory.
func llmprune(_ args: [String], env extra: [String: String], cwd: URL? = nil) throws -> RunResult {
    try run(llmpruneBinary().path, args, env: extra, cwd: cwd)
}

struct FlagTableTests {
    static let smol = packageRoot.appendingPathComponent("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf").path
    static var haveSmol: Bool { FileManager.default.fileExists(atPath: smol) }

    /// The four commands that take the pruning and calibration flags, each with what it needs besides them.
    static func commands(_ s: Scratch) -> [(String, [String])] {
        let out = s.url.appendingPathComponent("out").path
        return [("plan", ["plan", "--model", smol, "--plan", out + ".json"]),
                ("prune", ["prune", "--model", smol, "--out", out]),
                ("cluster prune", ["cluster", "prune", "--model", smol, "--out", out]),
                ("cluster memory", ["cluster", "memory", "--model", smol, "--ranks", "2"])]
    }

    /// What a command made of its flags.
    func parsed(_ args: [String]) throws -> [String: Any] {
        let r = try llmprune(args, env: ["LLMPRUNE_PRINT_FLAGS": "1"])
        #expect(r.status == 0, "\(args): \(r.stderr)")
        return (try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]) ?? [:]
    }

    /// The pruning and calibration part of what was parsed, as comparable JSON text.
    func pruningPart(_ p: [String: Any]) throws -> String {
        var q = p
        for k in ["shard", "activationCache", "microBatches"] { q.removeValue(forKey: k) }
        return String(decoding: try JSONSerialization.data(withJSONObject: q, options: [.sortedKeys]), as: UTF8.self)
    }

    @Test(.enabled(if: haveSmol, "needs models/smollm2 (scripts/setup.sh)"))
    func pruningAndCalibrationFlagsAgreeAcrossCommands() throws {
        let s = Scratch()
        // Defaults: every command makes the same settings of no flags at all.
        var seen: [String: String] = [:]
        for (name, args) in Self.commands(s) { seen[name] = try pruningPart(try parsed(args)) }
        #expect(Set(seen.values).count == 1, "defaults differ: \(seen)")
        let d = try parsed(Self.commands(s)[0].1)
        let settings = d["settings"] as? [String: Any] ?? [:]
        #expect(settings["ratio"] as? Double == 0.25 && settings["criterion"] as? String == "element1")
        #expect(settings["reduction"] as? String == "sum" && settings["attentionUnit"] as? String == "kv-group")
        #expect(settings["allocation"] as? String == "local" && settings["seed"] as? Int == 42)
        #expect(settings["layerStart"] as? Int == 4 && settings["layerEnd"] as? Int == 28)      // 30 layers: 4..<L−2
        #expect(d["calib"] as? String == "ptb-valid" && d["calibSamples"] as? Int == 10 && d["calibLen"] as? Int == 64)
        // Every pruning and calibration flag, at a value other than its default: all four accept it and agree.
        let every = ["--ratio", "0.4", "--criterion", "element2", "--reduction", "mean", "--attention-unit", "query-head",
                     "--allocation", "global", "--global-normalization", "layer", "--target-params", "0.8",
                     "--round-to", "64", "--layers", "2:20", "--calib", "wikitext2", "--calib-samples", "4",
                     "--calib-len", "128", "--seed", "7"]
        seen = [:]
        for (name, args) in Self.commands(s) { seen[name] = try pruningPart(try parsed(args + every)) }
        #expect(Set(seen.values).count == 1, "settings differ: \(seen)")
        let e = try parsed(Self.commands(s)[3].1 + every)
        let es = e["settings"] as? [String: Any] ?? [:]
        #expect(es["ratio"] as? Double == 0.4 && es["criterion"] as? String == "element2" && es["roundTo"] as? Int == 64)
        #expect(es["globalNormalization"] as? String == "layer" && es["targetParams"] as? Double == 0.8)
        #expect(es["layerStart"] as? Int == 2 && es["layerEnd"] as? Int == 20 && es["seed"] as? Int == 7)
        #expect(e["calib"] as? String == "wikitext2" && e["calibSamples"] as? Int == 4 && e["calibLen"] as? Int == 128)
    }

    @Test func helpPagesListTheSamePruningAndCalibrationFlags() throws {
        func sections(_ page: String) -> String {
            let lines = page.split(separator: "\n", omittingEmptySubsequences: false)
            var out: [Substring] = [], inside = false
            for l in lines {
                if !l.hasPrefix(" ") { inside = l == "pruning flags:" || l == "calibration flags:" }
                if inside { out.append(l) }
            }
            return out.joined(separator: "\n")
        }
        let pages = try ["plan", "prune", "cluster"].map { try llmprune([$0, "--help"]).stdout }
        let first = sections(pages[0])
        #expect(first.contains("--ratio 0.25") && first.contains("--calib-samples 10") && first.contains("--seed 42"))
        for p in pages { #expect(sections(p) == first) }
        #expect(pages[2].contains("--shard samples"))
    }

    /// `cluster memory` took only some of the flags its help listed ("unknown flag --calib").
    @Test func clusterMemoryTakesTheCalibrationFlags() throws {
        let r = try llmprune(["cluster", "memory", "--shape", "smollm2-135m", "--ranks", "2", "--calib", "ptb-valid",
                              "--calib-samples", "4", "--seed", "3"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("calibration 4 × 64"), "\(r.stdout)")
    }

    /// `--shard` defaulted to samples in `cluster prune` and to layers in `cluster memory`.
    @Test(.enabled(if: haveSmol, "needs models/smollm2 (scripts/setup.sh)"))
    func clusterPruneAndClusterMemoryShardAlike() throws {
        let s = Scratch()
        let prune = try parsed(Self.commands(s)[2].1), memory = try parsed(Self.commands(s)[3].1)
        #expect(prune["shard"] as? String == "samples" && memory["shard"] as? String == "samples")
        #expect(prune["activationCache"] == nil && memory["activationCache"] == nil)
        #expect(prune["microBatches"] as? Int == 1 && memory["microBatches"] as? Int == 1)
        let r = try llmprune(["cluster", "memory", "--shape", "smollm2-135m", "--ranks", "2"])
        #expect(r.status == 0 && r.stdout.contains("--shard samples"), "\(r.stdout)\(r.stderr)")
    }

    /// A tune job recorded its arguments with another command's flag table: `--train-on-inputs` swallowed the next
    /// argument and a relative `--data` stayed relative, so `--resume` from another directory failed.
    @Test func tuneRecordsItsOwnFlagsWithAbsolutePaths() throws {
        let s = Scratch()
        let work = s.url.appendingPathComponent("work"), elsewhere = s.url.appendingPathComponent("elsewhere")
        for d in [work, elsewhere] { try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true) }
        try FileManager.default.copyItem(atPath: TuneCommandTests.alpaca, toPath: work.appendingPathComponent("data.json").path)
        let common = ["--steps", "2", "--batch", "4", "--micro-batch", "2", "--val-size", "4", "--cutoff", "64",
                      "--warmup", "0", "--rank", "2", "--targets", "q,v", "--threads", "1", "--checkpoint-every", "1",
                      "--quiet"]
        // Started in `work` with a relative --data, parked before its second step (after the checkpoint of the
        // first) and killed there.
        let p = Process()
        p.executableURL = llmpruneBinary()
        p.arguments = ["tune", "--model", TuneCommandTests.tiny, "--data", "data.json", "--out", "adapter",
                       "--train-on-inputs"] + common
        p.currentDirectoryURL = work
        var env = ProcessInfo.processInfo.environment
        env["LLMPRUNE_FAULT"] = "stall@0:step1"
        p.environment = env
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let job = work.appendingPathComponent("adapter.job")
        #expect(waitForFile(job.appendingPathComponent("attempt-0/rank-0.stalled").path, timeout: 120))
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        let spec = try JSONSerialization.jsonObject(with: Data(contentsOf: job.appendingPathComponent("job.json"))) as? [String: Any]
        let recorded = spec?["arguments"] as? [String] ?? []
        let data = recorded.firstIndex(of: "--data").map { recorded[$0 + 1] }
        #expect(data == work.appendingPathComponent("data.json").standardizedFileURL.path, "\(recorded)")
        #expect(recorded.contains("--train-on-inputs"))
        let steps = recorded.firstIndex(of: "--steps").map { recorded[$0 + 1] }
        #expect(steps == "2", "\(recorded)")
        #expect(!recorded.contains("--threads") && !recorded.contains("--quiet"), "runtime flags recorded: \(recorded)")
        // Resumed from another directory: the data is found and the job finishes.
        let again = try llmprune(["tune", "--resume", job.path, "--json"], env: [:], cwd: elsewhere)
        #expect(again.status == 0, "\(again.stderr)")
        let report = try? JSONSerialization.jsonObject(with: Data(again.stdout.utf8)) as? [String: Any]
        #expect(report?["steps"] as? Int == 2 && report?["resumedAtStep"] as? Int == 1, "\(again.stdout)")
    }

    /// Sequences beyond the model's context (SmolLM2: 8192) are refused by flag, before anything is allocated.
    @Test(.enabled(if: haveSmol, "needs models/smollm2 (scripts/setup.sh)"))
    func sequencesBeyondTheContextAreRefusedByFlag() throws {
        let s = Scratch()
        let cases: [([String], String)] = [
            (["eval", "--model", Self.smol, "--dataset", "ptb", "--seq-len", "100000"], "--seq-len"),
            (["bench", "--model", Self.smol, "--seq-len", "50000"], "--seq-len"),
            (["prune", "--model", Self.smol, "--out", s.url.appendingPathComponent("p").path, "--calib-len", "9000"], "--calib-len"),
            (["plan", "--model", Self.smol, "--plan", s.url.appendingPathComponent("p.json").path, "--calib-len", "9000"], "--calib-len"),
            (["cluster", "memory", "--model", Self.smol, "--calib-len", "9000"], "--calib-len"),
            (["tune", "--model", Self.smol, "--data", TuneCommandTests.alpaca, "--out", s.url.appendingPathComponent("t").path,
              "--cutoff", "10000"], "--cutoff"),
        ]
        for (args, flag) in cases {
            let t0 = Date()
            expectCleanFailure(try llmprune(args), mentions: [flag, "context of 8192"])
            #expect(Date().timeIntervalSince(t0) < 20, "\(args[0]) ran before refusing")
        }
        #expect(!FileManager.default.fileExists(atPath: s.url.appendingPathComponent("p.json").path))
        #expect(!FileManager.default.fileExists(atPath: s.url.appendingPathComponent("t.job").path))
        // The context itself is accepted (checked without running: the flags are printed and the command stops).
        let ok = try parsed(["plan", "--model", Self.smol, "--plan", s.url.appendingPathComponent("q.json").path,
                             "--calib-len", "8192"])
        #expect(ok["calibLen"] as? Int == 8192)
    }

    /// The context is max_position_embeddings, except under dynamic RoPE scaling, which exists to run past it.
    @Test func dynamicRopeRunsPastMaxPositions() throws {
        let s = Scratch()
        let plain = fixtures.appendingPathComponent("tiny").path, dynamic = fixtures.appendingPathComponent("rope/dynamic").path
        expectCleanFailure(try llmprune(["plan", "--model", plain, "--plan", s.url.appendingPathComponent("a.json").path,
                                         "--layers", "0:2", "--calib-len", "300"]), mentions: ["--calib-len", "context of 256"])
        let ok = try parsed(["plan", "--model", dynamic, "--plan", s.url.appendingPathComponent("b.json").path,
                             "--layers", "0:2", "--calib-len", "64"])     // max_position_embeddings 16
        #expect(ok["calibLen"] as? Int == 64)
    }

    /// A window as long as the context runs, in bounded memory (attention scores in blocks of query rows, the LM
    /// head over ≈512 rows at a time), and reports its peak memory. The whole T × T softmax of one head alone
    /// would be 256 MiB per head here, 2.3 GiB for SmolLM2's 9 heads; the logits of the window 1.6 GB.
    @Test(.enabled(if: haveSmol, "needs models/smollm2 (scripts/setup.sh)"))
    func evalAtTheFullContextRunsInBoundedMemory() throws {
        // Two threads: the per-thread buffers (OpenBLAS', the attention score blocks) then weigh the same on any
        // machine (≈34 MB per thread here: 905 MB on 1 core, 940 on 2). The peak is the binary's own VmHWM: as
        // getrusage's ru_maxrss it had included this test process's peak (CI: 1578 MB, here 2163 MB in the suite).
        let r = try llmprune(["eval", "--model", Self.smol, "--dataset", "wikitext2", "--seq-len", "8192", "--batch", "1",
                              "--max-windows", "1", "--threads", "2", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let o = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        let result = o?["result"] as? [String: Any]
        #expect(result?["scored"] as? Int == 8191)
        let ppl = result?["perplexity"] as? Double ?? .nan
        #expect(ppl.isFinite && ppl > 1 && ppl < 100, "perplexity \(ppl)")
        let peak = o?["peakRSSMB"] as? Double ?? .infinity
        #expect(peak > 100 && peak < 1500, "peak RSS \(peak) MB")
    }

    /// Library errors name the setting; the command line names its flag.
    @Test(.enabled(if: haveSmol, "needs models/smollm2 (scripts/setup.sh)"))
    func settingErrorsNameTheFlag() throws {
        let s = Scratch()
        let plan = ["plan", "--model", Self.smol, "--plan", s.url.appendingPathComponent("p.json").path]
        expectCleanFailure(try llmprune(plan + ["--ratio", "1.5"]), mentions: ["--ratio: 1.5 is outside [0, 1)"])
        expectCleanFailure(try llmprune(plan + ["--layers", "20:10"]), mentions: ["--layers: 20:10"])
        expectCleanFailure(try llmprune(plan + ["--round-to", "16"]), mentions: ["--round-to: 16"])
        expectCleanFailure(try llmprune(plan + ["--target-params", "2"]), mentions: ["--target-params: 2.0"])
        expectCleanFailure(try llmprune(plan + ["--criterion", "taylor"]), mentions: ["--criterion", "taylor", "element1"])
        expectCleanFailure(try llmprune(plan + ["--calib-samples", "0"]), mentions: ["--calib-samples"])
        expectCleanFailure(try llmprune(["cluster", "prune", "--model", Self.smol, "--out", s.url.path + "/o",
                                         "--heartbeat-interval", "abc"]), mentions: ["--heartbeat-interval", "abc"])
        expectCleanFailure(try llmprune(["tune", "--model", TuneCommandTests.tiny, "--data", TuneCommandTests.alpaca,
                                         "--out", s.url.path + "/t", "--lr", "fast"]), mentions: ["--lr", "fast"])
    }
}
