// The weights of a Llama model in fp32, laid out for the forward pass: q/k/v rows fused into one matrix and
// gate/up rows into another, so each is a single batched sgemm. Row blocks stay contiguous, so pruning and
// export slice them without copies of the whole.
import Foundation

public struct LayerWeights: Sendable {
    public var shape: LayerShape
    public var inputNorm: [Float]   // [d]
    public var wqkv: [Float]        // [(nq + 2·nkv)·hd × d]: q rows, then k rows, then v rows (HF rotate_half layout)
    public var wo: [Float]          // [d × nq·hd]
    public var postNorm: [Float]    // [d]
    public var wGateUp: [Float]     // [2·I × d]: gate rows, then up rows
    public var wDown: [Float]       // [d × I]
    // Biases, each empty when the config declares none (LlamaConfig.qkvBias / oBias / mlpBias); added right after
    // their product (before RoPE for q|k).
    public var bqkv: [Float]        // [W]: q, then k, then v
    public var bo: [Float]          // [d]
    public var bGateUp: [Float]     // [2·I]: gate, then up
    public var bDown: [Float]       // [d]

    public init(shape: LayerShape, inputNorm: [Float], wqkv: [Float], wo: [Float], postNorm: [Float],
                wGateUp: [Float], wDown: [Float], bqkv: [Float] = [], bo: [Float] = [], bGateUp: [Float] = [],
                bDown: [Float] = []) {
        self.shape = shape
        self.inputNorm = inputNorm
        self.wqkv = wqkv
        self.wo = wo
        self.postNorm = postNorm
        self.wGateUp = wGateUp
        self.wDown = wDown
        self.bqkv = bqkv
        self.bo = bo
        self.bGateUp = bGateUp
        self.bDown = bDown
    }
}

extension LayerWeights {
    /// Where each of the layer's Hugging Face tensors lies in the fused arrays, in the order of
    /// `LlamaConfig.huggingFaceLayerTensorShapes` (norm, q, k, v, o, post norm, gate, up, down, then the biases
    /// the layer holds: q, k, v, o, gate, up, down): no copies.
    public func huggingFaceParts(hiddenSize d: Int, headDim hd: Int) -> [(array: [Float], range: Range<Int>)] {
        let q = shape.numHeads * hd * d, kv = shape.numKVHeads * hd * d, inter = shape.intermediateSize * d
        var parts: [(array: [Float], range: Range<Int>)] = [
            (inputNorm, 0..<inputNorm.count), (wqkv, 0..<q), (wqkv, q..<(q + kv)), (wqkv, (q + kv)..<(q + 2 * kv)),
            (wo, 0..<wo.count), (postNorm, 0..<postNorm.count), (wGateUp, 0..<inter),
            (wGateUp, inter..<(2 * inter)), (wDown, 0..<wDown.count)]
        let bq = shape.numHeads * hd, bkv = shape.numKVHeads * hd, bi = shape.intermediateSize
        if !bqkv.isEmpty { parts += [(bqkv, 0..<bq), (bqkv, bq..<(bq + bkv)), (bqkv, (bq + bkv)..<(bq + 2 * bkv))] }
        if !bo.isEmpty { parts.append((bo, 0..<bo.count)) }
        if !bGateUp.isEmpty { parts += [(bGateUp, 0..<bi), (bGateUp, bi..<(2 * bi))] }
        if !bDown.isEmpty { parts.append((bDown, 0..<bDown.count)) }
        return parts
    }

    /// Elements of the bias vectors the layer holds.
    public var biasCount: Int { bqkv.count + bo.count + bGateUp.count + bDown.count }

    /// A layer that keeps only its shape (the layers a pipeline stage does not hold).
    public static func placeholder(_ shape: LayerShape) -> LayerWeights {
        LayerWeights(shape: shape, inputNorm: [], wqkv: [], wo: [], postNorm: [], wGateUp: [], wDown: [])
    }
}

public final class LlamaWeights: @unchecked Sendable {
    public var config: LlamaConfig
    public var embed: [Float]        // [V × d]
    public var layers: [LayerWeights]
    public var finalNorm: [Float]    // [d]
    public var lmHead: [Float]?      // [V × d]; nil when tied to `embed`

    public init(config: LlamaConfig, embed: [Float], layers: [LayerWeights], finalNorm: [Float], lmHead: [Float]?) {
        self.config = config
        self.embed = embed
        self.layers = layers
        self.finalNorm = finalNorm
        self.lmHead = lmHead
    }

    /// The weights under their Hugging Face names and shapes ([out, in]), as `transformers` stores them.
    public func huggingFaceTensors() -> [(name: String, shape: [Int], values: [Float])] {
        huggingFaceTensors(layers: 0..<layers.count, embedding: true, head: true)
    }

    /// A subset of `huggingFaceTensors()` in the same order, for a pipeline stage's shard: the layers in
    /// `layers`, the token embedding iff `embedding`, the final norm and (untied) `lm_head` iff `head`.
    public func huggingFaceTensors(layers range: Range<Int>, embedding: Bool, head: Bool)
        -> [(name: String, shape: [Int], values: [Float])]
    {
        let d = config.hiddenSize
        var out: [(name: String, shape: [Int], values: [Float])] = []
        if embedding { out.append(("model.embed_tokens.weight", [config.vocabSize, d], embed)) }
        for i in range { out += huggingFaceTensors(layer: i) }
        if head {
            out.append(("model.norm.weight", [d], finalNorm))
            if let h = lmHead { out.append(("lm_head.weight", [config.vocabSize, d], h)) }
        }
        return out
    }

    /// Layer `i`'s tensors: the fused q/k/v and gate/up matrices split back into the HF projections.
    func huggingFaceTensors(layer i: Int) -> [(name: String, shape: [Int], values: [Float])] {
        zip(config.huggingFaceLayerTensorShapes(i), layers[i].huggingFaceParts(hiddenSize: config.hiddenSize,
                                                                                headDim: config.headDim))
            .map { t, part in (t.name, t.shape, Array(part.array[part.range])) }
    }

    /// A model with random weights (normal, std `scale`), for tests and benchmarks.
    public static func random(config: LlamaConfig, seed: UInt64, scale: Float = 0.05) -> LlamaWeights {
        var rng = SplitMix64(seed: seed)
        func randn(_ n: Int, _ s: Float) -> [Float] { (0..<n).map { _ in rng.nextGaussian() * s } }
        func norm(_ n: Int) -> [Float] { (0..<n).map { _ in 1 + rng.nextGaussian() * 0.1 } }
        let d = config.hiddenSize, hd = config.headDim
        let layers = config.layers.map { s in
            var l = LayerWeights(shape: s, inputNorm: norm(d), wqkv: randn((s.numHeads + 2 * s.numKVHeads) * hd * d, scale),
                                 wo: randn(d * s.numHeads * hd, scale), postNorm: norm(d),
                                 wGateUp: randn(2 * s.intermediateSize * d, scale), wDown: randn(d * s.intermediateSize, scale))
            // Drawn after the weights, so a model without biases is the same as before they existed.
            if config.qkvBias { l.bqkv = randn((s.numHeads + 2 * s.numKVHeads) * hd, scale) }
            if config.oBias { l.bo = randn(d, scale) }
            if config.mlpBias { l.bGateUp = randn(2 * s.intermediateSize, scale); l.bDown = randn(d, scale) }
            return l
        }
        return LlamaWeights(config: config, embed: randn(config.vocabSize * d, scale * 4), layers: layers,
                            finalNorm: norm(d), lmHead: config.tieWordEmbeddings ? nil : randn(config.vocabSize * d, scale))
    }
}

/// Small deterministic generator (SplitMix64) with Box–Muller normals; reproducible across platforms.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    public mutating func nextUniform() -> Double { Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0) }
    public mutating func nextGaussian() -> Float {
        let u1 = max(nextUniform(), 1e-300), u2 = nextUniform()
        return Float((-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2))
    }
}
