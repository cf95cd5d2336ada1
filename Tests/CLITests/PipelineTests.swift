// `mpiexec -n 2|3 llmprune plan --pipeline`: each rank holds only its block of layers, activations and their
// gradients cross the ranks, each rank scores its own layers; the plan must be the single-process plan (same
// kept units, scores within 1e-5 relative — in fact bit-identical, as every stage sees the whole batch).
import Foundation
import Testing

@Suite(.enabled(if: mpiexecPath() != nil, "mpiexec not installed")) struct PipelinePlan {
    func plan(_ s: Scratch, ranks: Int, pipeline: Bool, criterion: String, layers: String = "0:3",
              command: String = "plan") throws -> (plan: [String: Any], stderr: String) {
        let out = s.url.appendingPathComponent("plan-\(ranks)-\(pipeline)-\(criterion)-\(layers).json").path
        let calib = try s.file("calib.txt", Data(String(repeating: "the quick brown fox jumps over the lazy dog\n", count: 40).utf8))
        var args = [command, "--model", fixtures.appendingPathComponent("tiny.gguf").path, "--layers", layers,
                    "--calib", calib, "--calib-samples", "5", "--calib-len", "8", "--criterion", criterion]
        args += command == "plan" ? ["--plan", out] : ["--plan", out, "--out", out + ".model", "--quiet"]
        if pipeline { args.append("--pipeline") }
        let r = ranks == 1 ? try llmprune(args)
            : try run(mpiexecPath()!, ["-n", "\(ranks)", llmpruneBinary().path] + args)
        #expect(r.status == 0, "\(r.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out))) as! [String: Any]
        return (json, r.stderr)
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
    }

    @Test(arguments: ["element1", "element2"])
    func stagesGiveTheSingleProcessPlan(criterion: String) throws {
        let s = Scratch()
        let one = try plan(s, ranks: 1, pipeline: false, criterion: criterion).plan
        for ranks in [2, 3] {
            let (p, err) = try plan(s, ranks: ranks, pipeline: true, criterion: criterion)
            expectSamePlan(one, p)
            // One memory line per stage; stage 0 holds layers from 0, the last ends at 3.
            #expect(err.contains("stage 0 layers 0..<") && err.contains("stage \(ranks - 1) layers "), "\(err)")
        }
    }

    /// Scored range starting above stage 0's block: the lower stages run forward only.
    @Test func scoredRangeAboveTheFirstStage() throws {
        let s = Scratch()
        let one = try plan(s, ranks: 1, pipeline: false, criterion: "element2", layers: "2:3").plan
        expectSamePlan(one, try plan(s, ranks: 3, pipeline: true, criterion: "element2", layers: "2:3").plan)
    }

    /// `prune --pipeline` writes the same plan and the same model as `prune` (rank 0 cuts the whole model).
    @Test func pruneWithPipelineExportsTheSameModel() throws {
        let s = Scratch()
        let one = try plan(s, ranks: 1, pipeline: false, criterion: "element1", command: "prune").plan
        let two = try plan(s, ranks: 2, pipeline: true, criterion: "element1", command: "prune").plan
        expectSamePlan(one, two)
        let a = s.url.appendingPathComponent("plan-1-false-element1-0:3.json.model/model.safetensors")
        let b = s.url.appendingPathComponent("plan-2-true-element1-0:3.json.model/model.safetensors")
        #expect(try Data(contentsOf: a) == Data(contentsOf: b))
    }
}
