// Model variants through the cluster runtime: a Llama-3.2-like (tied, GQA, llama3 RoPE scaling), a Mistral-like
// (sliding window) and a Qwen2.5-like (q/k/v biases, tied) synthetic bf16 model prune on 2 layer-sharded, low-memory
// ranks to the single-process plan, and the variant survives the output's config.json; LoRA recovery of the
// Llama-3.2-like and the Qwen2.5-like model on 2 data-parallel ranks ends with the adapter of one process.
import Foundation
import Formats
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

    @Test(arguments: [("tiny-llama3", "rope_scaling"), ("tiny-mistral", "sliding_window"), ("tiny-qwen2", "use_sliding_window")])
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
            if shape == "tiny-qwen2" {
                // layers 0 and 5 whole: heterogeneous, so the remote-code config with the family as base_model_type
                #expect(cfg["model_type"] as? String == "llmprune" && cfg["base_model_type"] as? String == "qwen2")
                let index = out + "/model.safetensors.index.json"
                let names = FileManager.default.fileExists(atPath: index) ? try ShardedSafetensors(indexPath: index).tensorNames
                    : try SafetensorsFile(path: out + "/model.safetensors").tensorNames
                #expect(names.filter { $0.hasSuffix(".bias") }.count == 3 * 6, "\(out): q/k/v biases of 6 layers")
            }
        }
    }

    @Test(arguments: ["tiny-llama3", "tiny-qwen2"])
    func dataParallelTuneGivesTheAdapterOfOneProcess(shape: String) throws {
        let s = Scratch()
        let model = try synth(shape, s)
        let args = ["tune", "--model", model, "--data", TuneCommandTests.alpaca, "--steps", "3", "--batch", "8",
                    "--micro-batch", "2", "--val-size", "4", "--cutoff", "128", "--lr", "1e-2", "--warmup", "1",
                    "--rank", "4", "--threads", "1", "--quiet"]
        let one = s.url.appendingPathComponent("one").path, two = s.url.appendingPathComponent("two").path
        let r1 = try llmprune(args + ["--out", one])
        #expect(r1.status == 0, "\(r1.stderr)")
        let r2 = try run(mpiexecPath()!, ["-n", "2", llmpruneBinary().path] + args + ["--out", two])
        #expect(r2.status == 0, "\(r2.stderr)")
        let a = try SafetensorsFile(path: one + "/adapter_model.safetensors")
        let b = try SafetensorsFile(path: two + "/adapter_model.safetensors")
        #expect(a.tensorNames.sorted() == b.tensorNames.sorted() && !a.tensorNames.isEmpty)
        var worst: Float = 0
        for t in a.tensorNames {
            for (u, v) in zip(try a.floats(t), try b.floats(t)) { worst = max(worst, abs(u - v)) }
        }
        print("\(shape): tune on 2 data-parallel ranks vs 1 process, adapter max |Δ| \(worst)")
        #expect(worst <= 1e-5)
    }
}
