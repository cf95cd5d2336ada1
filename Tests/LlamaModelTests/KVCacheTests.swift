// The cached (incremental) forward against the full-sequence forward, on every variant fixture: logits of a
// prompt run in one batched call, then of tokens appended one at a time and in a chunk, equal LlamaRunner.logits of
// the whole sequence at every position, to rounding. Dynamic RoPE past max_position_embeddings is the exception
// by design (transformers' generate rotates each new token with the frequencies of its own length while cached keys
// keep theirs): there the cached path is checked against transformers' generate (GenerationTests) and here only
// shown to differ from the full forward.
import Foundation
import Testing
@testable import LlamaModel

struct KVCacheTests {
    /// Fixture path (under Resources) and sequence length (within max_position_embeddings).
    static let variants: [(String, Int)] = [
        ("tiny", 23), ("tiny_untied", 23), ("tiny.gguf", 23), ("tiny_q8.gguf", 23),
        ("rope/linear", 23), ("rope/linear_v4", 23), ("rope/linear.gguf", 23), ("rope/llama3", 23), ("rope/llama3.gguf", 23),
        ("rope/yarn", 23), ("rope/yarn.gguf", 23), ("rope/yarn_mscale", 23), ("rope/dynamic", 16),
        ("tiny_qwen2_bias", 23), ("tiny_qwen2_bias.gguf", 23), ("tiny_llama_bias", 23), ("tiny_llama_bias.gguf", 23),
        ("tiny_mistral_swa", 23), ("tiny_smollm3", 23),
    ]

    static func tokens(_ n: Int, vocab: Int) -> [Int32] { (0..<n).map { Int32(($0 * 37 + 11) % vocab) } }

    /// max |cached − full| over every position: prefill `prompt` tokens, then single tokens, then (when `chunk`)
    /// the rest as one call.
    static func maxDiff(_ w: LlamaWeights, length T: Int, prompt: Int, chunk: Int = 0) throws -> Float {
        let v = w.config.vocabSize
        let ids = tokens(T, vocab: v)
        let full = try LlamaRunner(weights: w).logits(tokens: ids, batch: 1, seqLen: T)
        let runner = LlamaRunner(weights: w)
        let cache = KVCache(config: w.config, capacity: T)
        var cached = try runner.forward(appending: Array(ids[0..<prompt]), cache: cache, allLogits: true)
        var at = prompt
        while at < T {
            let n = chunk > 0 && at >= T - chunk ? T - at : 1
            let rows = try runner.forward(appending: Array(ids[at..<(at + n)]), cache: cache, allLogits: true)
            // The default (last row only) agrees with the last row of all rows.
            #expect(rows.count == n * v)
            cached += rows
            at += n
        }
        #expect(cache.length == T)
        #expect(cached.count == full.count)
        return zip(cached, full).map { abs($0 - $1) }.max()!
    }

    @Test(arguments: variants)
    func cachedForwardEqualsFullForward(_ name: String, _ T: Int) throws {
        let m = try ModelLoader.load(path: resources.appendingPathComponent(name).path, tokenizer: false)
        let d1 = try Self.maxDiff(m.weights, length: T, prompt: 7)
        let d2 = try Self.maxDiff(m.weights, length: T, prompt: 1, chunk: 4)
        print("KV cache \(name): max |cached − full logits| \(max(d1, d2)) (prefill 7 then 1 by 1: \(d1); prefill 1, chunk 4: \(d2))")
        #expect(max(d1, d2) <= 1e-4)
    }

    /// A heterogeneous (pruned-like) model: every layer its own head, KV-head and MLP counts.
    @Test func cachedForwardOnHeterogeneousLayers() throws {
        var cfg = heterogeneous
        cfg.maxPositionEmbeddings = 64
        let w = LlamaWeights.random(config: cfg, seed: 5, scale: 0.2)
        let d = try Self.maxDiff(w, length: 20, prompt: 6, chunk: 3)
        print("KV cache heterogeneous: max |cached − full logits| \(d)")
        #expect(d <= 1e-4)
    }

    @Test func lastRowOnlyIsTheLastOfAllRows() throws {
        let m = try ModelLoader.load(path: resources.appendingPathComponent("tiny").path, tokenizer: false)
        let ids = Self.tokens(9, vocab: m.config.vocabSize)
        let a = try LlamaRunner(weights: m.weights).forward(appending: ids, cache: KVCache(config: m.config, capacity: 9),
                                                           allLogits: true)
        let b = try LlamaRunner(weights: m.weights).forward(appending: ids, cache: KVCache(config: m.config, capacity: 9))
        let v = m.config.vocabSize
        #expect(b.count == v)
        #expect(zip(a[(8 * v)...], b).allSatisfy { abs($0 - $1) <= 1e-5 })
    }

    @Test func aFullCacheIsAnErrorNotATrap() throws {
        let m = try ModelLoader.load(path: resources.appendingPathComponent("tiny").path, tokenizer: false)
        let runner = LlamaRunner(weights: m.weights), cache = KVCache(config: m.config, capacity: 4)
        _ = try runner.forward(appending: [1, 2, 3], cache: cache)
        #expect(throws: ModelError.self) { try runner.forward(appending: [4, 5], cache: cache) }
        #expect(cache.length == 3)
    }

    /// Dynamic RoPE past max_position_embeddings (16): each cached step uses the frequencies of its own length, the
    /// full forward those of the whole sequence; the prefix within max_pos is the same in both.
    @Test func dynamicRopePastTheContextIsNotTheFullForward() throws {
        let m = try ModelLoader.load(path: resources.appendingPathComponent("rope/dynamic").path, tokenizer: false)
        let v = m.config.vocabSize, T = 22
        let ids = Self.tokens(T, vocab: v)
        let full = try LlamaRunner(weights: m.weights).logits(tokens: ids, batch: 1, seqLen: T)
        let runner = LlamaRunner(weights: m.weights), cache = KVCache(config: m.config, capacity: T)
        var cached = try runner.forward(appending: Array(ids[0..<10]), cache: cache, allLogits: true)
        for i in 10..<T { cached += try runner.forward(appending: [ids[i]], cache: cache) }
        // The first 10 positions: the full forward of 22 tokens already uses L = 22, so even these differ; a full
        // forward of the first 10 tokens alone is what the prefill equals.
        let short = try LlamaRunner(weights: m.weights).logits(tokens: Array(ids[0..<10]), batch: 1, seqLen: 10)
        #expect(zip(cached[0..<(10 * v)], short).map { abs($0 - $1) }.max()! <= 1e-4)
        let past = zip(cached[(17 * v)...], full[(17 * v)...]).map { abs($0 - $1) }.max()!
        #expect(past > 1e-3, "past max_position_embeddings the cached path should differ from the full forward")
    }
}
