// Model variants through the cluster runtime: a Llama-3.2-like (tied, GQA, llama3 RoPE scaling) and a Mistral-like
// (sliding window) synthetic bf16 model prune on 2 layer-sharded, low-memory ranks to the single-process plan, and
// the variant survives the output's config.json.
import Foundation
import Testing

@Suite(.enabled(if: FileManager.default.fileExists(atPath: defaultModelPath) && mpiexecPath() != nil,
                "needs the default model's tokenizer (scripts/setup.sh) and mpiexec"),
       .serialized)
struct VariantCluster {
    func synth(_ shape: String, _ s: Scratch) throws -> String {
        let dir = s.url.appendingPathComponent(shape).path
        let r = try llmprune(["synth", "--shape", shape, "--dtype", "bf16", "--seed", "5", "--out", dir,
                              "--tokenizer", defaultModelPath, "--quiet", "--force"])
        #expect(r.status == 0, "\(r.stderr)")
        return dir
    }

    func args(_ model: String, out: String) -> [String] {
        ["--model", model, "--out", out, "--layers", "1:5", "--ratio", "0.25", "--calib", "ptb-valid",
         "--calib-samples", "4", "--calib-len", "32", "--quiet", "--force"]
    }

    @Test(arguments: [("tiny-llama3", "rope_scaling"), ("tiny-mistral", "sliding_window")])
    func streamedRanksGiveTheSingleProcessPlan(shape: String, key: String) throws {
        let s = Scratch()
        let model = try synth(shape, s)
        let one = s.url.appendingPathComponent("one").path, two = s.url.appendingPathComponent("two").path
        let r1 = try llmprune(["prune"] + args(model, out: one))
        #expect(r1.status == 0, "\(r1.stderr)")
        let r2 = try run(mpiexecPath()!, ["-n", "2", llmpruneBinary().path, "cluster", "prune"] + args(model, out: two)
                         + ["--shard", "layers", "--low-memory"])
        #expect(r2.status == 0, "\(r2.stderr)")
        expectSamePlan(try readJSON(one + ".plan.json"), try readJSON(two + ".job/plan.json"))
        // The pruned model is still the same family: its config keeps the variant's key.
        for out in [one, two] {
            let cfg = try readJSON(out + "/config.json")
            #expect(cfg[key] != nil && !(cfg[key] is NSNull), "\(out): \(key) missing")
        }
    }
}
