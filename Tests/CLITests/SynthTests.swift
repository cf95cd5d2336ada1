// `llmprune synth`: a random-weight model of a given shape, streamed to a sharded directory that loads back with the
// shape's config; deterministic in the seed; finite activations (its perplexity is finite).
import Foundation
import Formats
import Testing

struct SynthTests {
    func synth(_ s: Scratch, _ name: String, _ extra: [String]) throws -> String {
        let out = s.url.appendingPathComponent(name).path
        let r = try llmprune(["synth", "--shape", "tiny", "--out", out, "--tokenizer", "none", "--quiet"] + extra)
        #expect(r.status == 0, "\(r.stderr)")
        return out
    }

    @Test func shardedDeterministicAndLoadable() throws {
        let s = Scratch()
        let a = try synth(s, "a", ["--seed", "3", "--shard-size", "0.1"])       // 100 KB shards: several files
        let b = try synth(s, "b", ["--seed", "3", "--shard-size", "0.1"])
        let c = try synth(s, "c", ["--seed", "4", "--shard-size", "0.1"])
        let files = try FileManager.default.contentsOfDirectory(atPath: a).filter { $0.hasSuffix(".safetensors") }.sorted()
        #expect(files.count > 1, "\(files)")
        for f in files {
            #expect(try Data(contentsOf: URL(fileURLWithPath: "\(a)/\(f)")) == Data(contentsOf: URL(fileURLWithPath: "\(b)/\(f)")))
        }
        let sa = try ShardedSafetensors(indexPath: a + "/model.safetensors.index.json")
        let sc = try ShardedSafetensors(indexPath: c + "/model.safetensors.index.json")
        let q = try sa.floats("model.layers.0.self_attn.q_proj.weight")
        #expect(q != (try sc.floats("model.layers.0.self_attn.q_proj.weight")))
        #expect(sa.dtype(of: "model.layers.0.self_attn.q_proj.weight") == "BF16")
        let std = (q.map { Double($0 * $0) }.reduce(0, +) / Double(q.count)).squareRoot()
        #expect(abs(std - 0.02) < 0.002, "std \(std)")
        #expect(try sa.floats("model.norm.weight").allSatisfy { $0 == 1 })
        let info = try llmprune(["info", "--model", a, "--json"])
        #expect(info.status == 0, "\(info.stderr)")
        let j = try JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as! [String: Any]
        #expect(j["parameters"] as? Int == 4 * (64 * 64 + 2 * 32 * 64 + 64 * 64 + 3 * 96 * 64 + 2 * 64) + 2 * 256 * 64 + 64,
                "\(j)")
        expectCleanFailure(try llmprune(["synth", "--shape", "llama-70b", "--out", s.url.appendingPathComponent("x").path]),
                           mentions: ["--shape", "llama-70b"])
    }
}
