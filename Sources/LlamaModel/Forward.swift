// The Llama forward pass in fp32 over cblas_sgemm, tokens of the whole batch stacked into the M dimension
// of every projection; each layer is the one `TransformerBlock` (dimension legend there), run in place on the
// residual stream. Positions restart at 0 in every sequence; generation runs the same layers over a KVCache
// (`forward(appending:cache:)`).
import Foundation
import TensorCore

/// Reusable activation buffers for one batch geometry, sized for the widest layer. The shared internals use
/// the residual stream itself as xMid and keep no softmax: a forward that keeps nothing runs in place.
final class Workspace {
    let tokens: Int
    let x: FloatBuffer      // [N × d] residual stream
    let h: FloatBuffer      // [N × d] normed input of a block
    let internals: LayerInternals   // q|k|v [N × maxW], attn [N × max nq·hd], gate|up [N × 2·maxI], act [N × maxI]

    init(tokens n: Int, config c: LlamaConfig) {
        tokens = n
        let hd = c.headDim
        let maxQKV = c.layers.map { ($0.numHeads + 2 * $0.numKVHeads) * hd }.max()!
        let maxQ = c.layers.map { $0.numHeads * hd }.max()!
        let maxI = c.layers.map(\.intermediateSize).max()!
        x = FloatBuffer(n * c.hiddenSize)
        h = FloatBuffer(n * c.hiddenSize)
        internals = LayerInternals(qkv: FloatBuffer(n * maxQKV), probs: nil, attn: FloatBuffer(n * maxQ), xMid: x,
                                   gu: FloatBuffer(n * 2 * maxI), act: FloatBuffer(n * maxI))
    }

    /// Bytes of the workspace's own buffers.
    var bytes: Int {
        4 * (x.count + h.count + internals.qkv.count + internals.attn.count + internals.gu.count + internals.act.count)
    }
}

/// Wall time per phase of the forward pass, collected when `LlamaRunner.profile` is set. sgemm phases are
/// the projections and the LM head; `attention` is the per-head score/softmax/value work.
public struct ForwardProfile: Sendable {
    public var seconds: [String: Double] = [:]
    public var gemmFlops: Double = 0          // FLOPs of the projection and LM-head products
    public var attentionFlops: Double = 0     // FLOPs of the attention products (full T×T blocks)
    public init() {}
    public static let gemmPhases: Set<String> = ["qkv", "o", "gate_up", "down", "lm_head"]
    public var total: Double { seconds.values.reduce(0, +) }
    public var gemmSeconds: Double { seconds.filter { Self.gemmPhases.contains($0.key) }.map(\.value).reduce(0, +) }
}

/// Runs a `LlamaWeights` model forward. Not thread-safe: one runner per thread.
public final class LlamaRunner {
    public let weights: LlamaWeights
    /// The layer code, with the rotary tables and the phase profile.
    public let block: TransformerBlock
    /// Set to a fresh profile to collect phase timings.
    public var profile: ForwardProfile? {
        get { block.profile }
        set { block.profile = newValue }
    }
    public var config: LlamaConfig { weights.config }
    var ws: Workspace?

    public init(weights: LlamaWeights) {
        self.weights = weights
        block = TransformerBlock(config: weights.config)
    }

    /// A runner whose products run in `compute` (bf16: the weights packed once here, forward layouts only).
    /// Throws `ComputeUnavailable` for bf16 on a CPU without native bf16 products.
    public convenience init(weights: LlamaWeights, compute: ComputeType) throws {
        self.init(weights: weights)
        block.bf16 = try BF16Base.make(weights, compute: compute, backward: false)
    }

    /// The arithmetic of this runner's products.
    public var compute: ComputeType { block.bf16 == nil ? .fp32 : .bf16 }

    /// Final-normed hidden states [batch·seqLen × d] of `tokens` (row-major [batch × seqLen]).
    public func hiddenStates(tokens: [Int32], batch: Int, seqLen: Int) throws -> [Float] {
        try run(tokens: tokens, batch: batch, seqLen: seqLen)
        return ws!.h.array()
    }

    /// Logits [batch·seqLen × vocab].
    public func logits(tokens: [Int32], batch: Int, seqLen: Int) throws -> [Float] {
        try run(tokens: tokens, batch: batch, seqLen: seqLen)
        let n = batch * seqLen, v = config.vocabSize, d = config.hiddenSize
        var out = [Float](repeating: 0, count: n * v)
        out.withUnsafeMutableBufferPointer { o in block.lmHead(weights, ws!.h.p, rows: n, logits: o.baseAddress!) }
        return out
    }

    /// Next-token negative log-likelihoods: for each sequence, positions 0..<seqLen-1 predict 1..<seqLen.
    /// Returns per-sequence NLL sums. The LM head runs over ≈512 rows at a time, so the product stays efficient
    /// while logits stay small: a few whole sequences per chunk, or pieces of one sequence longer than 512; the
    /// last row of a sequence has no target and is skipped where it ends a chunk, computed and ignored inside one.
    public func nextTokenNLL(tokens: [Int32], batch: Int, seqLen: Int) throws -> [Double] {
        try run(tokens: tokens, batch: batch, seqLen: seqLen)
        let v = config.vocabSize, d = config.hiddenSize
        guard seqLen > 1 else { return Array(repeating: 0, count: batch) }
        let chunkRows = 512
        // Chunks as [row0, row0 + rows) of the stacked batch, none crossing a sequence's last row at its end.
        var chunks: [(row0: Int, rows: Int)] = []
        if seqLen <= chunkRows {
            let perChunk = max(1, min(batch, chunkRows / seqLen))
            for first in stride(from: 0, to: batch, by: perChunk) {
                chunks.append((first * seqLen, min(perChunk, batch - first) * seqLen - 1))
            }
        } else {
            for b in 0..<batch {
                for j in stride(from: 0, to: seqLen - 1, by: chunkRows) {
                    chunks.append((b * seqLen + j, min(chunkRows, seqLen - 1 - j)))
                }
            }
        }
        let logits = FloatBuffer(chunks.map(\.rows).max()! * v)
        var nll = [Double](repeating: 0, count: batch * seqLen)     // by row; last row of each sequence unused
        let h = ws!.h.p
        for (row0, rows) in chunks {
            block.timed("lm_head", flops: 2.0 * Double(rows * v * d)) {
                block.lmHead(weights, h + row0 * d, rows: rows, logits: logits.p)
            }
            block.timed("nll") {
                nll.withUnsafeMutableBufferPointer { out in
                    tokens.withUnsafeBufferPointer { tk in
                        let o = out.baseAddress! + row0, next = tk.baseAddress! + row0 + 1, base = logits.p
                        Kernels.parallelRows(rows, minRowsPerChunk: 8) { range in
                            for r in range where (row0 + r) % seqLen != seqLen - 1 {
                                o[r] = Kernels.nll(base + r * v, count: v, target: Int(next[r]))
                            }
                        }
                    }
                }
            }
        }
        return (0..<batch).map { b in nll[(b * seqLen)..<(b * seqLen + seqLen - 1)].reduce(0, +) }
    }

    // MARK: - generation: the same layers over a KV cache

    /// Logits of `tokens`, one sequence continuing at position `cache.length`: their k and v join the cache, and
    /// they attend to every cached position. [rows × V]: each new token's logits with `allLogits`, else the last
    /// token's only (what a generation step needs; the LM head then runs on one row).
    public func forward(appending tokens: [Int32], cache: KVCache, allLogits: Bool = false) throws -> [Float] {
        let n = tokens.count, d = config.hiddenSize, v = config.vocabSize
        try validate(tokens: tokens, batch: 1, seqLen: n)
        guard cache.length + n <= cache.capacity else {
            throw ModelError.invalidInput("forward: \(cache.length + n) positions exceed the KV cache's \(cache.capacity)")
        }
        let ws = prepare(tokens: tokens, batch: 1, seqLen: n, ropePositions: ropePositions(end: cache.length + n, cache: cache))
        let g = BlockGeometry(batch: 1, seqLen: n)
        for (l, layer) in weights.layers.enumerated() {
            block.forward(layer, layer: l, x: ws.x.p, out: ws.x.p, internals: ws.internals, h: ws.h.p, geometry: g,
                          cache: cache)
        }
        cache.advance(n)
        let rows = allLogits ? n : 1, first = n - rows
        block.norm(weights.finalNorm, ws.x.p + first * d, out: ws.h.p, rows: rows)
        var out = [Float](repeating: 0, count: rows * v)
        block.timed("lm_head", flops: 2.0 * Double(rows * v * d)) {
            out.withUnsafeMutableBufferPointer { o in block.lmHead(weights, ws.h.p, rows: rows, logits: o.baseAddress!) }
        }
        return out
    }

    /// The positions the rotary tables must cover for a cached forward ending at position `end` (exclusive).
    /// Static RoPE: the cache's capacity, built once. Dynamic RoPE as transformers' generate computes it
    /// (dynamic_rope_update, modeling_rope_utils.py): each forward call rotates its new tokens with the frequencies
    /// of L = its last position + 1 once L passes max_position_embeddings, while the keys already cached keep the
    /// rotation they were stored with; so past max_position_embeddings a cached generation is not the
    /// full-sequence forward of the same tokens (which rotates every position with one L). Up to
    /// max_position_embeddings the frequencies are the initial ones.
    func ropePositions(end: Int, cache: KVCache) -> Int {
        let maxPos = config.maxPositionEmbeddings
        guard config.ropeScaling.kind == .dynamic else { return cache.capacity }
        return end > maxPos ? end : min(cache.capacity, maxPos)
    }

    // MARK: - the pass

    /// Sizes the workspace and rotary tables for [batch × seqLen] (tables for `ropePositions`, default seqLen) and
    /// writes the token embeddings into ws.x.
    func prepare(tokens: [Int32], batch: Int, seqLen: Int, ropePositions: Int? = nil) -> Workspace {
        let n = batch * seqLen, d = config.hiddenSize
        if ws?.tokens != n { ws = Workspace(tokens: n, config: config) }
        let ws = ws!
        block.ensureRope(ropePositions ?? seqLen)
        block.timed("embed") {
            weights.embed.withUnsafeBufferPointer { e in
                for t in 0..<n { (ws.x.p + t * d).update(from: e.baseAddress! + Int(tokens[t]) * d, count: d) }
            }
        }
        return ws
    }

    func validate(tokens: [Int32], batch: Int, seqLen: Int) throws {
        guard batch > 0, seqLen > 0, tokens.count == batch * seqLen else {
            throw ModelError.invalidInput("forward: \(tokens.count) tokens do not fill \(batch) × \(seqLen)")
        }
        if let bad = tokens.first(where: { $0 < 0 || Int($0) >= config.vocabSize }) {
            throw ModelError.invalidInput("forward: token id \(bad) outside the vocabulary (\(config.vocabSize))")
        }
    }

    private func run(tokens: [Int32], batch: Int, seqLen: Int) throws {
        let n = batch * seqLen
        try validate(tokens: tokens, batch: batch, seqLen: seqLen)
        let ws = prepare(tokens: tokens, batch: batch, seqLen: seqLen)
        for (l, layer) in weights.layers.enumerated() { forwardLayer(layer, l, ws: ws, batch: batch, seqLen: seqLen) }
        norm(weights.finalNorm, ws: ws, rows: n)
    }

    /// ws.x ← layer(ws.x), in place, keeping nothing.
    func forwardLayer(_ lw: LayerWeights, _ l: Int, ws: Workspace, batch: Int, seqLen: Int) {
        block.forward(lw, layer: l, x: ws.x.p, out: ws.x.p, internals: ws.internals, h: ws.h.p,
                      geometry: BlockGeometry(batch: batch, seqLen: seqLen))
    }

    /// ws.h = rmsnorm(ws.x) · weight.
    func norm(_ weight: [Float], ws: Workspace, rows: Int) { block.norm(weight, ws.x.p, out: ws.h.p, rows: rows) }
}
