// `prune --reconstruct` through the real binary on the tiny GGUF fixture: bad reconstruction flags end in one line
// naming the flag with no output; a reconstruction changes the written o/down weights and the plan records it.
import Foundation
import Testing

@Suite struct ReconstructionCLI {
    func reconArgs(_ s: Scratch, out: String, _ extra: [String]) throws -> [String] {
        try tinyPruneArgs(s, out: out, extra: ["--reconstruct", "lstsq", "--recon-samples", "4", "--recon-len", "8"] + extra)
    }

    @Test(arguments: ["0", "-1", "-0.0", "abc", "nan"])
    func ridgeMustBePositive(ridge: String) throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("o").path
        expectCleanFailure(try llmprune(try reconArgs(s, out: out, ["--ridge", ridge])), mentions: ["--ridge"])
        PruneCommand().expectNoOutput(out)
        #expect(!FileManager.default.fileExists(atPath: out + ".plan.json"))
    }

    @Test func badReconstructionFlagsNameTheFlag() throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("o").path
        expectCleanFailure(try llmprune(try reconArgs(s, out: out, ["--recon-len", "100000"])), mentions: ["--recon-len"])
        expectCleanFailure(try llmprune(try reconArgs(s, out: out, ["--recon-samples", "0"])), mentions: ["--recon-samples"])
        expectCleanFailure(try llmprune(try reconArgs(s, out: out, ["--reconstruct", "exact"])), mentions: ["--reconstruct", "exact"])
        PruneCommand().expectNoOutput(out)
    }

    /// `--bias-compensation` without a refit, a `--recon-calib` file that does not exist, an unknown `--recipe`:
    /// one line naming the flag, nothing written.
    @Test func badBiasRecipeAndWindowFlagsNameTheFlag() throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("o").path
        expectCleanFailure(try llmprune(try tinyPruneArgs(s, out: out, extra: ["--bias-compensation"])),
                           mentions: ["--bias-compensation", "--reconstruct"])
        expectCleanFailure(try llmprune(try reconArgs(s, out: out, ["--recon-calib", s.url.appendingPathComponent("none.txt").path])),
                           mentions: ["--recon-calib"])
        expectCleanFailure(try llmprune(try tinyPruneArgs(s, out: out, extra: ["--recipe", "fastest"])), mentions: ["--recipe", "fastest"])
        expectCleanFailure(try llmprune(try tinyPruneArgs(s, out: out, extra: ["--iterative-steps", "2", "--iterative-refit"])),
                           mentions: ["--iterative-refit", "--reconstruct"])
        expectCleanFailure(try llmprune(try reconArgs(s, out: out, ["--iterative-refit"])), mentions: ["--iterative-refit", "--iterative-steps"])
        PruneCommand().expectNoOutput(out)
        #expect(!FileManager.default.fileExists(atPath: out + ".plan.json"))
    }

    /// A bias refit on windows of another text: the written model is a Llama with attention_bias and mlp_bias
    /// (transformers' keys), every layer carries all seven biases (zero but for o and down of the refit layers),
    /// `eval` loads it, and the plan records the setting and the other text.
    @Test func biasRefitOnOwnWindowsIsWrittenAsLlamaBiases() throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("b").path
        let other = try s.file("other.txt", Data(String(repeating: "a lazy dog sleeps under the brown tree all day\n", count: 20).utf8))
        let r = try llmprune(try reconArgs(s, out: out, ["--bias-compensation", "--recon-calib", other]))
        #expect(r.status == 0, "\(r.stderr)")
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/config.json"))) as! [String: Any]
        #expect(config["attention_bias"] as? Bool == true && config["mlp_bias"] as? Bool == true, "\(config)")
        let plan = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/prune_plan.json"))) as! [String: Any]
        let rc = plan["reconstruction"] as! [String: Any]
        #expect((rc["settings"] as! [String: Any])["bias"] as? Bool == true)
        #expect(((rc["calibration"] as! [String: Any])["file"] as? String ?? "").hasSuffix("other.txt"), "\(rc["calibration"]!)")
        let e = try llmprune(["eval", "--model", out, "--dataset", other, "--max-windows", "2", "--quiet"])
        #expect(e.status == 0, "\(e.stderr)")
    }

    /// `--iterative-refit` runs (a refit between the rounds) and is recorded with the reconstruction settings.
    @Test func iterativeRefitIsRecorded() throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("i").path
        let r = try llmprune(try reconArgs(s, out: out, ["--iterative-steps", "2", "--iterative-refit"]))
        #expect(r.status == 0, "\(r.stderr)")
        let plan = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/prune_plan.json"))) as! [String: Any]
        let rc = plan["reconstruction"] as! [String: Any]
        #expect((rc["settings"] as! [String: Any])["eachRound"] as? Bool == true)
        #expect((plan["settings"] as! [String: Any])["iterativeSteps"] as? Int == 2)
    }

    /// `--recipe best` stands for its flags, and a flag given on the command line wins over the recipe's.
    @Test func recipeBestExpandsAndGivenFlagsWin() throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("r").path
        let r = try llmprune(try tinyPruneArgs(s, out: out, extra: ["--recipe", "best", "--recon-samples", "4", "--recon-len", "8",
                                                                     "--iterative-steps", "2", "--json"]))
        #expect(r.status == 0, "\(r.stderr)")
        let plan = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + ".plan.json"))) as! [String: Any]
        let settings = plan["settings"] as! [String: Any]
        #expect(settings["iterativeSteps"] as? Int == 2, "\(settings)")
        #expect(settings["criterion"] as? String == "obs", "\(settings)")      // from the recipe
        #expect((plan["calibration"] as? [String: Any])?["samples"] as? Int == 2)  // given: wins over the recipe's 128
        let rc = try #require(plan["reconstruction"] as? [String: Any])
        #expect((rc["settings"] as! [String: Any])["ridge"] as? Double == 0.3)
    }

    /// `--recipe best` cuts LLM-Pruner's parameter count at --ratio over layers 6:L-4 (SmolLM2: 6:26; counts
    /// 118,589,760 at r = 0.25 and 95,586,624 at r = 0.5 over LLM-Pruner's 4:28), unless a placement flag is given.
    @Test(.enabled(if: FlagTableTests.haveSmol, "needs models/smollm2 (scripts/setup.sh)"))
    func recipeBestCutsLLMPrunersCountOverInnerLayers() throws {
        func settings(_ extra: [String]) throws -> [String: Any] {
            let r = try llmprune(["prune", "--model", FlagTableTests.smol, "--out", Scratch().url.appendingPathComponent("o").path,
                                  "--recipe", "best", "--quiet"] + extra, env: ["LLMPRUNE_PRINT_FLAGS": "1"])
            #expect(r.status == 0, "\(r.stderr)")
            let o = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
            return o?["settings"] as? [String: Any] ?? [:]
        }
        let total = 134_515_008.0
        for (ratio, count) in [("0.25", 118_589_760), ("0.5", 95_586_624)] {
            let s = try settings(["--ratio", ratio])
            #expect(s["layerStart"] as? Int == 6 && s["layerEnd"] as? Int == 26, "\(s)")
            let frac = try #require(s["targetParams"] as? Double)
            #expect(Int((total * frac).rounded(.down)) == count, "target \(frac)")
        }
        let given = try settings(["--ratio", "0.25", "--layers", "4:28"])
        #expect(given["layerStart"] as? Int == 4 && given["layerEnd"] as? Int == 28 && given["targetParams"] == nil, "\(given)")
    }

    @Test func reconstructionIsWrittenAndRecorded() throws {
        let s = Scratch()
        let plain = s.url.appendingPathComponent("plain").path, refit = s.url.appendingPathComponent("refit").path
        let a = try llmprune(try tinyPruneArgs(s, out: plain))
        #expect(a.status == 0, "\(a.stderr)")
        let b = try llmprune(try reconArgs(s, out: refit, ["--ridge", "0.1", "--json"]))
        #expect(b.status == 0, "\(b.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: plain + "/model.safetensors"))
                != Data(contentsOf: URL(fileURLWithPath: refit + "/model.safetensors")))
        for planFile in [refit + "/prune_plan.json", refit + ".plan.json"] {
            let plan = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: planFile))) as! [String: Any]
            let rc = try #require(plan["reconstruction"] as? [String: Any], "\(planFile) has no reconstruction")
            let settings = rc["settings"] as! [String: Any]
            #expect(settings["method"] as? String == "lstsq" && settings["ridge"] as? Double == 0.1)
            let layers = rc["layers"] as! [[String: Any]]
            #expect(layers.map { $0["layer"] as! Int } == [0, 1, 2])
            for l in layers {
                let o = l["o"] as! [String: Double], down = l["down"] as! [String: Double]
                #expect(o["errorRefit"]! <= o["errorCut"]! && down["errorRefit"]! <= down["errorCut"]!, "\(l)")
            }
        }
        // apply cuts only, and says so
        let again = s.url.appendingPathComponent("again").path
        let c = try llmprune(["apply", "--plan", refit + ".plan.json", "--model", fixtures.appendingPathComponent("tiny.gguf").path,
                              "--out", again])
        #expect(c.status == 0 && c.stderr.contains("apply only cuts"), "\(c.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: again + "/model.safetensors"))
                == Data(contentsOf: URL(fileURLWithPath: plain + "/model.safetensors")))
    }
}
