// The prune-specific half of the sharded export (ModelExport's ShardedExport.swift has the rest): each rank cuts its
// block of layers by the plan and writes its shard layer by layer (`writeHeldShard` for fp32 weights,
// `writeStreamedShard` for a low-memory stage), so no rank holds its cut block beside the uncut one.
import Foundation
import LlamaModel
import Formats
import ModelExport

extension HFExport {
    /// Shard `k` of `n` for a low-memory stage: each layer of `stage.layers` is widened from the mapped file, cut by
    /// `plan`, narrowed to `dtype` and streamed to disk, one layer at a time (tensors are written in name order, and
    /// one layer's tensors are contiguous in it). The embedding (iff `embedding`) comes from the file, the final norm
    /// and untied head (iff `head`) from the stage. Nothing larger than one layer (or the embedding) is held.
    @discardableResult
    public static func writeStreamedShard(plan: PrunePlan, stage: StageWeights, embedding: Bool, head: Bool,
                                          dtype: TensorDType, index k: Int, count n: Int, into dir: URL,
                                          refits: [Int: RefitWeights] = [:], biases: Bool = false) throws -> ShardFile {
        guard let streamed = stage.streamed else { throw ExportError.invalidShards("stage \(stage.layers) is not streamed") }
        return try writeLayerByLayer(plan: plan, weights: stage.weights, layers: stage.layers, take: { try streamed.widen($0) },
                                     embedding: embedding ? { try streamed.encoded("model.embed_tokens.weight", as: dtype) } : nil,
                                     head: head, dtype: dtype, index: k, count: n, into: dir, refits: refits,
                                     biases: biases)
    }

    /// Shard `k` of `n` for a stage that holds its block in fp32 (`layers` of `stage.weights`, which may be the whole
    /// model in samples mode): each layer is cut and written in `dtype`, then dropped from `stage.weights`, so the
    /// write holds the block shrinking plus one cut layer (not the cut block beside the whole one).
    @discardableResult
    public static func writeHeldShard(plan: PrunePlan, weights w: LlamaWeights, layers: Range<Int>, embedding: Bool,
                                      head: Bool, dtype: TensorDType = .f32, index k: Int, count n: Int,
                                      into dir: URL, refits: [Int: RefitWeights] = [:], biases: Bool = false) throws -> ShardFile {
        guard embedding ? w.embed.count == w.config.vocabSize * w.config.hiddenSize : true else {
            throw ExportError.invalidShards("the token embedding is not loaded")
        }
        return try writeLayerByLayer(plan: plan, weights: w, layers: layers, take: { l in
            let layer = w.layers[l]
            guard layer.holdsWeights(config: w.config) else {
                throw ExportError.invalidShards("layer \(l) is not loaded (placeholder or wrong size for its shape)")
            }
            w.layers[l] = .placeholder(layer.shape)
            return layer
        }, embedding: embedding ? { FloatEncoding.encode(w.embed, as: dtype) } : nil,
           head: head, dtype: dtype, index: k, count: n, into: dir, refits: refits, biases: biases)
    }

    /// Writes shard `k` of `n` one layer at a time: `take(l)` hands over layer l uncut (in fp32), which is cut by the
    /// plan and encoded in `dtype` tensor by tensor; `embedding` produces the embedding's bytes; the final norm and
    /// the untied head (iff `head`) come from `weights` (whose layers give the original shapes). A layer in `refits`
    /// gets its reconstructed o_proj and down_proj after the cut; with `biases` (a bias refit) every layer carries
    /// every Llama bias, zero where not refit, as the config then declares.
    static func writeLayerByLayer(plan: PrunePlan, weights: LlamaWeights, layers: Range<Int>,
                                  take: @escaping (Int) throws -> LayerWeights, embedding: (() throws -> Data)?,
                                  head: Bool, dtype: TensorDType, index k: Int, count n: Int, into dir: URL,
                                  refits: [Int: RefitWeights], biases: Bool) throws -> ShardFile {
        guard n >= 1, n <= 99_999, k >= 0, k < n else {
            throw ExportError.invalidShards("shard index \(k) of \(n) (need 0 ≤ index < count ≤ 99999)")
        }
        let c = weights.config, d = c.hiddenSize
        var pruned = try plan.prunedConfig(c)
        if biases { pruned = pruned.withAllBiases() }
        var specs: [SafetensorsWriter.Spec] = []
        var layerOf: [Int] = []                                   // spec → layer (−1: not a layer tensor)
        if embedding != nil {
            specs.append(.init(name: "model.embed_tokens.weight", shape: [c.vocabSize, d], dtype: dtype.safetensorsName))
            layerOf.append(-1)
        }
        for l in layers {
            for (name, shape) in pruned.huggingFaceLayerTensorShapes(l) {
                specs.append(.init(name: name, shape: shape, dtype: dtype.safetensorsName)); layerOf.append(l)
            }
        }
        if head {
            specs.append(.init(name: "model.norm.weight", shape: [d], dtype: dtype.safetensorsName)); layerOf.append(-1)
            if !c.tieWordEmbeddings {
                specs.append(.init(name: "lm_head.weight", shape: [c.vocabSize, d], dtype: dtype.safetensorsName))
                layerOf.append(-1)
            }
        }
        // The current layer, cut. Its tensors are encoded straight from slices of the fused arrays (no split copies):
        // the peak is the widened layer plus its cut, then the cut plus one encoded tensor.
        var current = -1
        var parts: [String: (array: [Float], range: Range<Int>)] = [:]    // the cut layer's tensors by HF name
        func load(_ l: Int) throws {
            parts = [:]
            let view = LlamaWeights(config: c, embed: [], layers: weights.layers.map { .placeholder($0.shape) },
                                    finalNorm: [], lmHead: nil)
            view.layers[l] = try take(l)
            var cut = try Pruner.apply(plan: plan, to: view, layers: l..<(l + 1)).layers[l]
            refits[l]?.install(in: &cut, headDim: c.headDim)
            if biases { cut = cut.withAllBiases(headDim: c.headDim, hidden: d) }
            let names = pruned.huggingFaceLayerTensorShapes(l).map(\.name)
            parts = Dictionary(uniqueKeysWithValues: zip(names, cut.huggingFaceParts(hiddenSize: d, headDim: c.headDim)))
            current = l
        }
        let name = shardFileName(index: k, count: n)
        try SafetensorsWriter.stream(specs, metadata: ["format": "pt"], to: dir.appendingPathComponent(name)) { i in
            let s = specs[i], l = layerOf[i]
            if l >= 0 {
                if l != current { try load(l) }
                guard let part = parts[s.name], part.range.count == s.shape.reduce(1, *),
                      part.range.upperBound <= part.array.count else {
                    throw ExportError.invalidShards("tensor \(s.name) of the cut layer \(l) is missing or short")
                }
                return part.array.withUnsafeBufferPointer {
                    FloatEncoding.encode(UnsafeBufferPointer(rebasing: $0[part.range]), as: dtype)
                }
            }
            switch s.name {
            case "model.embed_tokens.weight": return try embedding!()
            case "model.norm.weight":
                guard weights.finalNorm.count == d else { throw ExportError.invalidShards("the final norm is not loaded") }
                return FloatEncoding.encode(weights.finalNorm, as: dtype)
            default:
                guard let h = weights.lmHead else { throw ExportError.invalidShards("the LM head is not loaded") }
                return FloatEncoding.encode(h, as: dtype)
            }
        }
        return ShardFile(fileName: name, tensorNames: specs.map(\.name), dataBytes: specs.reduce(0) { $0 + $1.byteCount })
    }
}
