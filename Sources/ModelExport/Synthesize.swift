// `llmprune synth`: random-weight Llama models of real shapes, written as a sharded Hugging Face directory without
// ever holding the model: each tensor is generated (normal, std = initializer range 0.02; norms 1), converted to the
// file dtype and written, one at a time. Deterministic: a tensor's values depend on the seed and its name only.
import Foundation
import Formats
import LlamaModel

public enum SyntheticShape: String, CaseIterable, Sendable {
    case llama2_70b = "llama2-70b", llama13b = "llama-13b", llama7b = "llama-7b", llama2_7b = "llama-2-7b",
         llama3_1_8b = "llama-3.1-8b", llama3_2_1b = "llama-3.2-1b", mistral7b = "mistral-7b", qwen2_5_0_5b = "qwen2.5-0.5b",
         qwen2_5_7b = "qwen2.5-7b", llama3b = "llama-3b",
         tinyllama = "tinyllama-1.1b", smollm2 = "smollm2-135m", tiny, tinyLlama3 = "tiny-llama3",
         tinyMistral = "tiny-mistral", tinyQwen2 = "tiny-qwen2"

    /// The published shapes with their real configs: widths, vocabulary, tying, RoPE (base and scaling), context and
    /// window — Llama-2-70B; LLaMA-13B; LLaMA-7B; Llama-2-7B; Llama-3.1-8B and Llama-3.2-1B (llama3 RoPE scaling);
    /// Mistral-7B-v0.1 (sliding window 4096); Qwen2.5-0.5B and -7B (q/k/v biases, no window); OpenLLaMA-3B; TinyLlama-1.1B; SmolLM2-135M (their config.json files on
    /// the Hugging Face hub). `tiny` is for tests, and so are `tiny-llama3` (tied, GQA, Llama-3.2's RoPE scaling: the
    /// features of Llama-3.2 at test size), `tiny-mistral` (a sliding window of 8) and `tiny-qwen2` (Qwen2.5's layout:
    /// q/k/v biases, tied, RoPE base 1e6, no window).
    public func config(vocabSize: Int? = nil) -> LlamaConfig {
        func make(_ v: Int, _ d: Int, _ heads: Int, _ kv: Int, _ inter: Int, _ layers: Int, tied: Bool, theta: Double,
                  eps: Float, context: Int = 2048, bos: Int = 1, eos: Int = 2) -> LlamaConfig {
            LlamaConfig(vocabSize: vocabSize ?? v, hiddenSize: d, headDim: d / heads,
                        layers: Array(repeating: LayerShape(numHeads: heads, numKVHeads: kv, intermediateSize: inter), count: layers),
                        rmsNormEps: eps, ropeTheta: theta, maxPositionEmbeddings: context, tieWordEmbeddings: tied,
                        bosTokenId: bos, eosTokenId: eos)
        }
        /// Llama-3.1's RoPE scaling (rope_type llama3; low 1, high 4, original context 8192).
        func llama3(_ c: LlamaConfig, factor: Double) -> LlamaConfig {
            var c = c
            c.ropeScaling = RopeScaling(kind: .llama3)
            c.ropeScaling.factor = factor
            c.ropeScaling.lowFreqFactor = 1
            c.ropeScaling.highFreqFactor = 4
            c.ropeScaling.originalMaxPositionEmbeddings = 8192
            return c
        }
        switch self {
        case .llama2_70b: return make(32000, 8192, 64, 8, 28672, 80, tied: false, theta: 10000, eps: 1e-5, context: 4096)
        case .llama13b: return make(32000, 5120, 40, 40, 13824, 40, tied: false, theta: 10000, eps: 1e-6)
        case .llama7b: return make(32000, 4096, 32, 32, 11008, 32, tied: false, theta: 10000, eps: 1e-6)
        case .llama2_7b: return make(32000, 4096, 32, 32, 11008, 32, tied: false, theta: 10000, eps: 1e-5, context: 4096)
        case .llama3_1_8b:
            return llama3(make(128256, 4096, 32, 8, 14336, 32, tied: false, theta: 500000, eps: 1e-5, context: 131072,
                               bos: 128000, eos: 128001), factor: 8)
        case .llama3_2_1b:
            return llama3(make(128256, 2048, 32, 8, 8192, 16, tied: true, theta: 500000, eps: 1e-5, context: 131072,
                               bos: 128000, eos: 128001), factor: 32)
        case .mistral7b:
            var c = make(32000, 4096, 32, 8, 14336, 32, tied: false, theta: 10000, eps: 1e-5, context: 32768)
            c.modelType = "mistral"
            c.slidingWindow = 4096
            return c
        case .qwen2_5_0_5b, .qwen2_5_7b:
            let small = self == .qwen2_5_0_5b
            var c = small ? make(151936, 896, 14, 2, 4864, 24, tied: true, theta: 1_000_000, eps: 1e-6, context: 32768,
                                 bos: 151643, eos: 151643)
                          : make(152064, 3584, 28, 4, 18944, 28, tied: false, theta: 1_000_000, eps: 1e-6, context: 32768,
                                 bos: 151643, eos: 151643)
            c.modelType = "qwen2"
            c.qkvBias = true
            return c
        case .llama3b: return make(32000, 3200, 32, 32, 8640, 26, tied: false, theta: 10000, eps: 1e-6)
        case .tinyllama: return make(32000, 2048, 32, 4, 5632, 22, tied: false, theta: 10000, eps: 1e-5)
        case .smollm2: return make(49152, 576, 9, 3, 1536, 30, tied: true, theta: 100000, eps: 1e-5, context: 8192)
        case .tiny: return make(256, 64, 4, 2, 96, 4, tied: false, theta: 10000, eps: 1e-5)
        case .tinyLlama3: return llama3(make(256, 64, 4, 2, 96, 6, tied: true, theta: 500000, eps: 1e-5, context: 131072),
                                        factor: 32)
        case .tinyMistral:
            var c = make(256, 64, 4, 2, 96, 6, tied: false, theta: 10000, eps: 1e-5, context: 32768)
            c.modelType = "mistral"
            c.slidingWindow = 8
            return c
        case .tinyQwen2:
            var c = make(256, 64, 4, 2, 96, 6, tied: true, theta: 1_000_000, eps: 1e-6, context: 32768)
            c.modelType = "qwen2"
            c.qkvBias = true
            return c
        }
    }
}

public enum Synthesize {
    /// Writes the weights of `config` into `dir` as shards of at most `maxShardBytes` (tensor granularity) plus the
    /// index; returns the shard files. dtype: "BF16", "F16" or "F32".
    @discardableResult
    public static func writeWeights(config c: LlamaConfig, dtype: String, seed: UInt64, into dir: URL,
                                    maxShardBytes: Int = 2 << 30, progress: ((Int) -> Void)? = nil) throws -> [ShardFile] {
        guard let fileType = TensorDType(safetensorsName: dtype) else {
            throw ExportError.invalidSetting(flag: "--dtype", reason: "\(dtype) is not bf16, f16 or f32")
        }
        let specs = tensorSpecs(c, dtype: dtype)
        var groups: [[Int]] = [[]], bytes = 0
        for (i, s) in specs.enumerated() {
            if bytes + s.byteCount > maxShardBytes, !groups[groups.count - 1].isEmpty { groups.append([]); bytes = 0 }
            groups[groups.count - 1].append(i)
            bytes += s.byteCount
        }
        var files: [ShardFile] = []
        for (k, g) in groups.enumerated() {
            let name = HFExport.shardFileName(index: k, count: groups.count)
            try SafetensorsWriter.stream(g.map { specs[$0] }, metadata: ["format": "pt"], to: dir.appendingPathComponent(name)) { j in
                let s = specs[g[j]]
                defer { progress?(s.byteCount) }
                return FloatEncoding.encode(values(for: s, seed: seed), as: fileType)
            }
            files.append(ShardFile(fileName: name, tensorNames: g.map { specs[$0].name },
                                   dataBytes: g.reduce(0) { $0 + specs[$1].byteCount }))
        }
        try HFExport.writeIndex(shards: files, into: dir)
        return files
    }

    /// Hugging Face names and shapes of every tensor, in model order.
    public static func tensorSpecs(_ c: LlamaConfig, dtype: String) -> [SafetensorsWriter.Spec] {
        c.huggingFaceTensorShapes.map { SafetensorsWriter.Spec(name: $0.name, shape: $0.shape, dtype: dtype) }
    }

    /// Norm weights are 1; every other tensor is N(0, 0.02²) from a generator seeded by (seed, name).
    static func values(for s: SafetensorsWriter.Spec, seed: UInt64) -> [Float] {
        let n = s.shape.reduce(1, *)
        if s.name.hasSuffix("norm.weight") { return [Float](repeating: 1, count: n) }
        var h: UInt64 = 0xcbf2_9ce4_8422_2325          // FNV-1a of the name, mixed with the seed
        for b in s.name.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        var rng = SplitMix64(seed: seed ^ h)
        return (0..<n).map { _ in 0.02 * rng.nextGaussian() }
    }
}
