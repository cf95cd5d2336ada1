// The allocation flags of `plan`/`prune` (--iterative-steps, --attention-layers, --mlp-layers, --ratio-schedule,
// --global-normalization standardized, --criterion fluctuation, --micro-batches) through the real binary on the
// tiny GGUF fixture: bad values end in one line naming the flag, no output; good ones produce the plans they claim.
import Foundation
import Testing

@Suite struct AllocationFlags {
    func planArgs(_ s: Scratch, plan: String, extra: [String]) throws -> [String] {
        ["plan", "--model", fixtures.appendingPathComponent("tiny.gguf").path, "--plan", plan, "--layers", "0:3",
         "--calib", try calibrationFile(s), "--calib-samples", "4", "--calib-len", "8", "--ratio", "0.5", "--quiet"] + extra
    }

    func planJSON(_ path: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
    }

    @Test(arguments: [
        (["--iterative-steps", "0"], "--iterative-steps"),
        (["--iterative-steps", "-2"], "--iterative-steps"),
        (["--iterative-steps", "two"], "--iterative-steps"),
        (["--attention-layers", "2:1"], "--attention-layers"),
        (["--mlp-layers", "1"], "--mlp-layers"),
        (["--mlp-layers", "0:9"], "--mlp-layers"),
        (["--ratio-schedule", "1,2"], "--ratio-schedule"),
        (["--ratio-schedule", "1,x,2"], "--ratio-schedule"),
        (["--ratio-schedule", "linear:1"], "--ratio-schedule"),
        (["--ratio-schedule", "0,0,0"], "--ratio-schedule"),
        (["--ratio-schedule", "1,2,3", "--allocation", "global"], "--ratio-schedule"),
        (["--global-normalization", "zscore"], "--global-normalization"),
        (["--micro-batches", "0"], "--micro-batches"),
    ])
    func badValueIsOneLine(extra: [String], flag: String) throws {
        let s = Scratch()
        let plan = s.url.appendingPathComponent("p.json").path
        expectCleanFailure(try llmprune(try planArgs(s, plan: plan, extra: extra)), mentions: [flag])
        #expect(!FileManager.default.fileExists(atPath: plan))
    }

    @Test func clusterRefusesIterativeAndFluctuation() throws {
        let s = Scratch()
        for (extra, flag) in [(["--iterative-steps", "2"], "--iterative-steps"), (["--criterion", "fluctuation"], "--criterion")] {
            let args = ["cluster", "prune", "--model", fixtures.appendingPathComponent("tiny.gguf").path,
                        "--out", s.url.appendingPathComponent("o").path, "--layers", "0:3", "--calib", try calibrationFile(s),
                        "--calib-samples", "2", "--calib-len", "8"] + extra
            expectCleanFailure(try llmprune(args), mentions: [flag])
        }
    }

    /// One round is today's plan (same kept sets and scores); micro-batches change only float summation order.
    @Test func oneIterativeStepAndMicroBatchesKeepThePlan() throws {
        let s = Scratch()
        func layers(_ extra: [String], _ name: String) throws -> [[String: Any]] {
            let p = s.url.appendingPathComponent(name).path
            let r = try llmprune(try planArgs(s, plan: p, extra: extra))
            #expect(r.status == 0, "\(r.stderr)")
            return try planJSON(p)["layers"] as! [[String: Any]]
        }
        let base = try layers([], "a.json"), one = try layers(["--iterative-steps", "1"], "b.json")
        #expect(NSArray(array: base).isEqual(to: one))
        let micro = try layers(["--micro-batches", "2"], "c.json")
        for (a, b) in zip(base, micro) {
            for k in ["keptKVHeads", "keptQueryHeads", "keptMLPChannels"] { #expect((a[k] as! [Int]) == (b[k] as! [Int]), "\(k)") }
            for k in ["attentionScores", "mlpScores"] {
                for (x, y) in zip(a[k] as! [Double], b[k] as! [Double]) { #expect(abs(x - y) <= 1e-4 * abs(y) + 1e-12, "\(k)") }
            }
        }
    }

    /// K rounds land on the one-round size, and the plan (original indices) applies to the original model.
    @Test(arguments: ["local", "global"])
    func iterativePlanAppliesToTheOriginal(allocation: String) throws {
        let s = Scratch()
        let p1 = s.url.appendingPathComponent("one.json").path, p3 = s.url.appendingPathComponent("three.json").path
        #expect(try llmprune(try planArgs(s, plan: p1, extra: ["--allocation", allocation])).status == 0)
        let r = try llmprune(try planArgs(s, plan: p3, extra: ["--allocation", allocation, "--iterative-steps", "3"]))
        #expect(r.status == 0, "\(r.stderr)")
        let one = try planJSON(p1), three = try planJSON(p3)
        if allocation == "local" {
            #expect(one["parametersAfter"] as! Int == three["parametersAfter"] as! Int)
        } else {
            #expect(abs((one["parametersAfter"] as! Int) - (three["parametersAfter"] as! Int)) < 6144)   // < one KV group
        }
        #expect((three["settings"] as! [String: Any])["iterativeSteps"] as? Int == 3)
        let out = s.url.appendingPathComponent("m").path
        let a = try llmprune(["apply", "--plan", p3, "--model", fixtures.appendingPathComponent("tiny.gguf").path,
                              "--out", out, "--json"])
        #expect(a.status == 0, "\(a.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(a.stdout.utf8)) as! [String: Any]
        #expect(report["parametersAfter"] as! Int == three["parametersAfter"] as! Int)
    }

    /// Attention and MLP spans: a module outside its span keeps every unit; the scored range covers both spans.
    @Test func separateAttentionAndMLPSpans() throws {
        let s = Scratch()
        let p = s.url.appendingPathComponent("p.json").path
        let r = try llmprune(try planArgs(s, plan: p, extra: ["--attention-layers", "0:1", "--mlp-layers", "1:3"]))
        #expect(r.status == 0, "\(r.stderr)")
        let layers = try planJSON(p)["layers"] as! [[String: Any]]
        #expect(layers.map { $0["layer"] as! Int } == [0, 1, 2])
        #expect((layers[0]["keptKVHeads"] as! [Int]).count == 1 && (layers[0]["keptMLPChannels"] as! [Int]).count == 96)
        for l in layers[1...] {
            #expect((l["keptKVHeads"] as! [Int]).count == 2 && (l["keptMLPChannels"] as! [Int]).count == 48)
        }
    }

    /// A schedule spreads the cut: weights 0,1,2 leave layer 0 whole and cut layer 2 twice as deep as layer 1.
    @Test func ratioScheduleWeightsLayers() throws {
        let s = Scratch()
        let p = s.url.appendingPathComponent("p.json").path
        var args = try planArgs(s, plan: p, extra: ["--ratio-schedule", "0,1,2"])
        args[args.firstIndex(of: "--ratio")! + 1] = "0.3"
        let r = try llmprune(args)
        #expect(r.status == 0, "\(r.stderr)")
        let widths = (try planJSON(p)["layers"] as! [[String: Any]]).map { ($0["keptMLPChannels"] as! [Int]).count }
        // ratios 0, 0.3, 0.6 of 96 channels keep Int(96·(1 − r))
        #expect(widths == [96, 67, 38])
    }

    /// `--calib alpaca` draws from the shared Alpaca sample, rendered as prompts (not its raw JSON lines).
    @Test func alpacaIsANamedCalibrationSource() throws {
        let s = Scratch()
        let p = s.url.appendingPathComponent("p.json").path
        var args = try planArgs(s, plan: p, extra: [])
        args[args.firstIndex(of: "--calib")! + 1] = "alpaca"
        let r = try llmprune(args)
        #expect(r.status == 0, "\(r.stderr)")
        let calib = try planJSON(p)["calibration"] as! [String: Any]
        #expect((calib["file"] as! String).hasSuffix("alpaca/alpaca_data_1k.json"))
        #expect((calib["tokenCount"] as! Int) > 100_000)
    }
}
