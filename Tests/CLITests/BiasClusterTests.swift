// Biased models through the real binary: `llmprune prune` and `mpiexec -n 2 llmprune cluster prune` (layer sharding
// with and without --low-memory, sample sharding) on the tiny Qwen2 GGUF (q/k/v biases) and the tiny Llama GGUF with
// attention_bias + mlp_bias give the same plan and the same output tensors, biases included; the output's config
// declares them.
import Foundation
import Formats
import Testing

@Suite(.enabled(if: mpiexecPath() != nil, "mpiexec not installed"), .serialized) struct BiasClusterPrune {
    @Test(arguments: ["tiny_qwen2_bias", "tiny_llama_bias"])
    func clusterGivesTheSingleProcessPlanAndModel(_ name: String) throws {
        let s = Scratch()
        let calib = try s.file("calib.txt", Data(String(repeating: "the quick brown fox jumps over the lazy dog\n", count: 40).utf8))
        let args = ["--model", fixtures.appendingPathComponent(name + ".gguf").path, "--layers", "0:2", "--calib", calib,
                    "--calib-samples", "4", "--calib-len", "8", "--ratio", "0.5", "--dtype", "f32"]
        let single = s.url.appendingPathComponent("single").path
        let r0 = try llmprune(["prune"] + args + ["--out", single, "--quiet"])
        #expect(r0.status == 0, "\(r0.stderr)")
        let reference = try SafetensorsFile(path: single + "/model.safetensors")
        let config = try readJSON(single + "/config.json")
        if name == "tiny_qwen2_bias" {
            #expect(config["model_type"] as? String == "qwen2" && reference.tensorNames.filter { $0.hasSuffix(".bias") }.count == 6)
        } else {
            #expect(config["attention_bias"] as? Bool == true && config["mlp_bias"] as? Bool == true)
            #expect(reference.tensorNames.filter { $0.hasSuffix(".bias") }.count == 14)
        }
        for extra in [["--shard", "layers"], ["--shard", "layers", "--low-memory"], ["--shard", "samples"]] {
            let out = s.url.appendingPathComponent("c-\(extra.joined())").path
            let r = try clusterRun(2, ["prune"] + args + ["--out", out, "--quiet"] + extra)
            #expect(r.status == 0, "\(extra): \(r.stderr)")
            guard r.status == 0 else { continue }
            expectSamePlan(try readJSON(single + ".plan.json"), try readJSON(out + ".job/plan.json"))
            let sharded = try ShardedSafetensors(indexPath: out + "/model.safetensors.index.json")
            #expect(Set(sharded.tensorNames) == Set(reference.tensorNames))
            for t in reference.tensorNames { #expect(try sharded.floats(t) == reference.floats(t), "\(t) differs (\(extra))") }
        }
    }
}

/// A bias the config declares but the file lacks, and a bias tensor the config does not declare: one line naming the
/// file and the tensor, exit ≠ 0.
@Suite struct BiasBadInput {
    func copy(_ s: Scratch, _ name: String, edit: (inout [String: Any]) -> Void) throws -> String {
        let src = fixtures.appendingPathComponent(name), dir = s.url.appendingPathComponent(name + "-edited")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: src.appendingPathComponent("model.safetensors"),
                                         to: dir.appendingPathComponent("model.safetensors"))
        var obj = try readJSON(src.appendingPathComponent("config.json").path)
        edit(&obj)
        try JSONSerialization.data(withJSONObject: obj).write(to: dir.appendingPathComponent("config.json"))
        return dir.path
    }

    @Test func declaredBiasMissingFromTheFile() throws {
        let s = Scratch()
        let dir = try copy(s, "tiny") { $0["attention_bias"] = true }
        expectCleanFailure(try llmprune(["info", "--model", dir]), mentions: [dir, "model.layers.0.self_attn.q_proj.bias"])
    }

    @Test func biasTensorTheConfigDoesNotDeclare() throws {
        let s = Scratch()
        let dir = try copy(s, "tiny_llama_bias") { $0["mlp_bias"] = false }
        expectCleanFailure(try llmprune(["info", "--model", dir]), mentions: [dir, "mlp.down_proj.bias", "mlp_bias false"])
    }

    /// The other config errors of the model families, through the binary: an unknown rope type, an unknown
    /// model_type and a non-positive sliding window each end `info` with one line naming the file and the key.
    @Test func variantConfigErrorsThroughTheBinary() throws {
        let s = Scratch()
        let cases: [((inout [String: Any]) -> Void, [String])] = [
            ({ $0["rope_scaling"] = ["rope_type": "wavy", "factor": 2.0] }, ["rope_scaling.rope_type", "wavy"]),
            ({ $0["model_type"] = "gemma" }, ["model_type", "gemma"]),
            ({ $0["model_type"] = "mistral"; $0["sliding_window"] = 0 }, ["sliding_window"]),
        ]
        for (i, (edit, words)) in cases.enumerated() {
            let dir = try copy(s, "tiny", edit: edit)
            let moved = s.url.appendingPathComponent("case\(i)").path
            try FileManager.default.moveItem(atPath: dir, toPath: moved)
            expectCleanFailure(try llmprune(["info", "--model", moved]), mentions: [moved + "/config.json"] + words)
        }
    }
}
