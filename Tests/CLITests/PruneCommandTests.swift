// `llmprune plan | apply | prune` through the real binary on the tiny GGUF fixture: the happy path, and every
// bad input of the pruning issue ending in one line, a non-zero exit and no partial output directory.
import Foundation
import Testing

/// A calibration text long enough for 2 × 8 byte-level tokens several times over.
func calibrationFile(_ s: Scratch) throws -> String {
    try s.file("calib.txt", Data(String(repeating: "the quick brown fox jumps over the lazy dog\n", count: 20).utf8))
}

func tinyPruneArgs(_ s: Scratch, out: String, extra: [String] = []) throws -> [String] {
    ["prune", "--model", fixtures.appendingPathComponent("tiny.gguf").path, "--out", out, "--layers", "0:3",
     "--calib", try calibrationFile(s), "--calib-samples", "2", "--calib-len", "8", "--ratio", "0.5", "--quiet"] + extra
}

@Suite struct PruneCommand {
    @Test func pruneWritesPlanAndLoadableModel() throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("pruned").path
        let r = try llmprune(try tinyPruneArgs(s, out: out, extra: ["--json"]))
        #expect(r.status == 0, "\(r.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        #expect((report["parametersAfter"] as! Int) < (report["parametersBefore"] as! Int))
        for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "prune_plan.json"] {
            #expect(FileManager.default.fileExists(atPath: out + "/" + f), "missing \(f)")
        }
        #expect(FileManager.default.fileExists(atPath: out + ".plan.json"))
        let info = try llmprune(["info", "--model", out, "--json"])
        #expect(info.status == 0, "\(info.stderr)")
        let shape = try JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as! [String: Any]
        #expect((shape["parameters"] as! Int) == (report["parametersAfter"] as! Int))
        // apply with the written plan reproduces the same model
        let again = s.url.appendingPathComponent("again").path
        let a = try llmprune(["apply", "--plan", out + ".plan.json", "--model", fixtures.appendingPathComponent("tiny.gguf").path,
                              "--out", again, "--json"])
        #expect(a.status == 0, "\(a.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: again + "/model.safetensors"))
                == Data(contentsOf: URL(fileURLWithPath: out + "/model.safetensors")))
    }

    func expectNoOutput(_ out: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(!FileManager.default.fileExists(atPath: out), "partial output left at \(out)", sourceLocation: sourceLocation)
        let parent = URL(fileURLWithPath: out).deletingLastPathComponent().path
        let leftovers = ((try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? []).filter { $0.contains(".tmp-") || $0.contains(".partial-") }
        #expect(leftovers.isEmpty, "temporary files left: \(leftovers)", sourceLocation: sourceLocation)
    }

    @Test(arguments: ["1.0", "-0.1", "1.5"])
    func ratioOutsideRange(ratio: String) throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("o").path
        var args = try tinyPruneArgs(s, out: out)
        args[args.firstIndex(of: "--ratio")! + 1] = ratio
        expectCleanFailure(try llmprune(args), mentions: ["--ratio"])
        expectNoOutput(out)
    }

    @Test(arguments: ["2:2", "3:1", "0:9"])
    func emptyOrInvertedLayerRange(layers: String) throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("o").path
        var args = try tinyPruneArgs(s, out: out)
        args[args.firstIndex(of: "--layers")! + 1] = layers
        expectCleanFailure(try llmprune(args), mentions: ["--layers"])
        expectNoOutput(out)
    }

    @Test func calibrationFileShorterThanOneSample() throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("o").path
        var args = try tinyPruneArgs(s, out: out)
        let short = try s.file("short.txt", Data("tiny\n".utf8))
        args[args.firstIndex(of: "--calib")! + 1] = short
        expectCleanFailure(try llmprune(args), mentions: ["short.txt"])
        expectNoOutput(out)
    }

    @Test func unknownCriterion() throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("o").path
        expectCleanFailure(try llmprune(try tinyPruneArgs(s, out: out, extra: ["--criterion", "taylor3"])),
                           mentions: ["taylor3", "element1"])
        expectNoOutput(out)
    }

    @Test func planForAnotherModelIsRefused() throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("o").path
        let plan = s.url.appendingPathComponent("p.json").path
        var args = try tinyPruneArgs(s, out: out)
        args[0] = "plan"
        args[args.firstIndex(of: "--out")!...args.firstIndex(of: "--out")! + 1] = ["--plan", plan]
        let r = try llmprune(args)
        #expect(r.status == 0, "\(r.stderr)")
        let other = fixtures.appendingPathComponent("tiny_untied").path
        expectCleanFailure(try llmprune(["apply", "--plan", plan, "--model", other, "--out", out]), mentions: ["p.json"])
        expectNoOutput(out)
    }

    @Test func existingOutputNeedsForce() throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("o").path
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try Data("keep".utf8).write(to: URL(fileURLWithPath: out + "/mine.txt"))
        expectCleanFailure(try llmprune(try tinyPruneArgs(s, out: out)), mentions: [out, "--force"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: out) == ["mine.txt"])
        let forced = try llmprune(try tinyPruneArgs(s, out: out, extra: ["--force"]))
        #expect(forced.status == 0, "\(forced.stderr)")
        #expect(FileManager.default.fileExists(atPath: out + "/model.safetensors"))
    }
}
