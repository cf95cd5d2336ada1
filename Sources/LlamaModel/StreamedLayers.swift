// Low-memory execution of a pipeline stage (docs/cluster.md §8). The stage's layers stay in the checkpoint,
// memory-mapped in their file dtype (bf16 / f16: half of fp32), and are widened to fp32 one layer at a time, for
// the forward sweep and again for the backward sweep, then dropped. What a stage holds in fp32 at any moment is
// one layer (plus its gradient while it is scored); the mapped pages are clean page cache the kernel may reclaim.
// Widening bf16 → fp32 is exact, so the products, and so the plan, are those of an fp32 load of the same file.
import Foundation
import Formats

public final class StreamedLayers: @unchecked Sendable {
    public let config: LlamaConfig
    /// The block of layers this stage streams.
    public let layers: Range<Int>
    let source: TensorSource

    init(config: LlamaConfig, layers: Range<Int>, source: TensorSource) {
        self.config = config
        self.layers = layers
        self.source = source
    }

    /// Layer `l` in fp32 (fused q|k|v and gate|up), read from the mapped file.
    public func widen(_ l: Int) throws -> LayerWeights {
        guard layers.contains(l) else { throw ModelError.invalidInput("streamed stage: layer \(l) is outside \(layers)") }
        return try ModelLoader.readLayer(l, config: config, source: source)
    }

    /// The token embeddings of `tokens` into `out` [tokens.count × d], reading only those rows of the file.
    public func embed(tokens: [Int32], into out: UnsafeMutablePointer<Float>) throws {
        try source.readRows("model.embed_tokens.weight", rows: tokens.map { Int($0) }, into: out)
    }

    /// The storage dtype of the block's weights ("BF16", "F16", "F32"; a GGUF type name otherwise).
    public var storageType: String? {
        source.storageType(of: "model.layers.\(layers.lowerBound).self_attn.q_proj.weight")
    }

    /// A tensor of the checkpoint in fp32 (the embedding or head when a streamed stage writes its shard).
    public func floats(_ name: String) throws -> [Float] { try source.floats(name) }

    /// A 2-D tensor of the checkpoint (the embedding, when a streamed stage writes its shard) as little-endian
    /// `dtype` bytes: the stored bytes when they already are `dtype`; from a safetensors float tensor, a block of rows
    /// widened and narrowed at a time, so the table is never held in fp32 beside its encoding; a GGUF's decoded whole.
    public func encoded(_ name: String, as dtype: TensorDType, blockElements: Int = 1 << 22) throws -> Data {
        if source.storageType(of: name) == dtype.safetensorsName, let stored = try storedBytes(name) { return stored.bytes }
        guard source is SafetensorsFile || source is ShardedSafetensors, let shape = source.shape(of: name),
              shape.count == 2 else { return FloatEncoding.encode(try source.floats(name), as: dtype) }
        let (rows, cols) = (shape[0], shape[1])
        let block = max(1, blockElements / max(1, cols))                // default ≈ 16 MB of fp32 rows
        var out = Data(capacity: dtype.byteCount * rows * cols)
        var buffer = [Float](repeating: 0, count: min(block, rows) * cols)
        for lo in stride(from: 0, to: rows, by: block) {
            let hi = min(rows, lo + block)
            try buffer.withUnsafeMutableBufferPointer { p in
                try source.readRows(name, rows: Array(lo..<hi), into: p.baseAddress!)
                out.append(FloatEncoding.encode(UnsafeBufferPointer(rebasing: p[0..<((hi - lo) * cols)]), as: dtype))
            }
        }
        return out
    }

    /// A tensor's bytes as stored, when the checkpoint is safetensors (a copy: the mapping may go away).
    public func storedBytes(_ name: String) throws -> (bytes: Data, dtype: String)? {
        guard let dtype = source.storageType(of: name) else { return nil }
        if let f = source as? SafetensorsFile { return (Data(try f.rawBytes(name)), dtype) }
        if let f = source as? ShardedSafetensors { return (Data(try f.rawBytes(name)), dtype) }
        return nil
    }
}

extension StageWeights {
    /// Runs `body` with layer `l` in fp32: as loaded, or (low-memory stage) widened from the mapped file for the
    /// duration of `body` and dropped after it. Every stage pass (gradients, LoRA) goes through here.
    public func withLayer<T>(_ l: Int, _ body: () throws -> T) throws -> T {
        guard let streamed, streamed.layers.contains(l) else { return try body() }
        let w = weights, shape = w.layers[l].shape
        w.layers[l] = try streamed.widen(l)
        defer { w.layers[l] = .placeholder(shape) }
        return try body()
    }

    /// The token embeddings of `tokens` into `out` [tokens.count × d]: from the loaded table, or (low-memory
    /// first stage) only those rows read from the mapped file.
    public func embed(tokens: [Int32], into out: UnsafeMutablePointer<Float>) throws {
        let d = config.hiddenSize
        if weights.embed.isEmpty, let streamed { return try streamed.embed(tokens: tokens, into: out) }
        guard weights.embed.count == config.vocabSize * d else {
            throw ModelError.invalidInput("stage \(layers): the token embedding is not loaded")
        }
        weights.embed.withUnsafeBufferPointer { e in
            for (t, id) in tokens.enumerated() { (out + t * d).update(from: e.baseAddress! + Int(id) * d, count: d) }
        }
    }
}
