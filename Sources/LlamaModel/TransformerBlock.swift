// The one Llama decoder layer, forward and backward, that every pass runs: the scorer's forward (LlamaRunner),
// the gradient pass of importance (GradientPass, and its pipeline stage), and the LoRA pass. Passes differ only
// in what they attach to the four linear products, through a `ProjectionHook`: the gradient pass takes weight
// gradients there, the LoRA pass adds its adapters; and in which internals they keep.
//
// Dimensions, used in shape comments across the model code:
//   B   sequences in a batch            T   tokens per sequence          N = B·T rows of every activation
//   d   hidden size                     hd  head dimension               V   vocabulary size
//   nq  query heads of a layer          nkv key/value heads of a layer   W = (nq + 2·nkv)·hd, the fused q|k|v width
//   I   intermediate (MLP) size of a layer                               r   LoRA rank
//
// The layer, as transformers' LlamaDecoderLayer computes it:
//   h = rmsnorm₁(x);  q|k|v = h·Wqkvᵀ (+ bqkv);  rope(q, k);  a = softmax(q kᵀ/√hd, causal)·v per head;
//   xMid = x + a·Woᵀ (+ bo);  h = rmsnorm₂(xMid);  g|u = h·Wguᵀ (+ bgu);  act = silu(g)·u;  y = xMid + act·Wdownᵀ (+ bdown)
// (each bias only when the config declares it: LayerWeights holds it, or holds an empty array).
//   (rope skipped in SmolLM3's NoPE layers; the causal mask narrowed to a sliding window where the config sets one)
// Generation runs the same forward with a KVCache: new tokens at positions after the cached ones, attending to them.
import Foundation
import TensorCore

/// The four linear products of a layer (q|k|v and gate|up are fused, as LayerWeights stores them).
public enum Projection: Int, CaseIterable, Sendable {
    case qkv, o, gateUp, down

    /// The phase name of the product in a `ForwardProfile`.
    var phase: String {
        switch self {
        case .qkv: "qkv"
        case .o: "o"
        case .gateUp: "gate_up"
        case .down: "down"
        }
    }
}

/// Batch geometry of one pass: B sequences of T tokens.
public struct BlockGeometry: Sendable {
    public let batch: Int, seqLen: Int
    public init(batch: Int, seqLen: Int) {
        self.batch = batch
        self.seqLen = seqLen
    }
    public var tokens: Int { batch * seqLen }
}

/// What a pass attaches to a layer's linear products. Inputs are contiguous [N × in] (in = d for qkv and
/// gateUp, nq·hd for o, I for down); outputs and their gradients are [N × out] with leading dimension `ld`.
public protocol ProjectionHook: AnyObject {
    /// Forward: `output` already holds input·Wᵀ (plus the residual for o and down); the hook adds its share.
    func forward(_ p: Projection, layer: Int, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                 ld: Int, shape: LayerShape, geometry: BlockGeometry)
    /// Whether the hook's backward for `p` in `layer` wants to be called (so the gradient must reach that product).
    func wantsGradient(_ p: Projection, layer: Int) -> Bool
    /// Backward: `dY` is ∂loss/∂output of `p` (leading dimension `ld`). `dX`, when given, already holds the base
    /// product's share of ∂loss/∂input (dY·W) and receives the hook's share.
    func backward(_ p: Projection, layer: Int, input: UnsafePointer<Float>, dY: UnsafePointer<Float>, ld: Int,
                  dX: UnsafeMutablePointer<Float>?, shape: LayerShape, geometry: BlockGeometry)
}

/// A layer's forward internals: what its backward reads. `xMid` may be the residual stream itself (a forward
/// that keeps nothing updates the stream in place); `probs` is nil when the softmax is not kept (the forward
/// then computes attention scores in blocks of query rows, in bounded memory).
public final class LayerInternals {
    public let qkv: FloatBuffer      // [N × W] q|k|v after RoPE
    public let probs: FloatBuffer?   // [B·nq × T × T] causal softmax per (sequence, head)
    public let attn: FloatBuffer     // [N × nq·hd] attention output (input of o)
    public let xMid: FloatBuffer     // [N × d] residual after attention
    public let gu: FloatBuffer       // [N × 2I] gate|up
    public let act: FloatBuffer      // [N × I] silu(gate)·up (input of down)

    public init(qkv: FloatBuffer, probs: FloatBuffer?, attn: FloatBuffer, xMid: FloatBuffer, gu: FloatBuffer,
                act: FloatBuffer) {
        self.qkv = qkv; self.probs = probs; self.attn = attn; self.xMid = xMid; self.gu = gu; self.act = act
    }

    /// Internals for a layer of shape `s`, every buffer from `allocate` (a pool, or a counting allocator).
    public convenience init(shape s: LayerShape, config c: LlamaConfig, geometry g: BlockGeometry,
                            allocate: (Int) -> FloatBuffer) {
        let e = Self.elements(s, config: c, geometry: g)
        self.init(qkv: allocate(e.qkv), probs: allocate(e.probs), attn: allocate(e.attn), xMid: allocate(e.xMid),
                  gu: allocate(e.gu), act: allocate(e.act))
    }

    /// Bytes these buffers hold.
    public var bytes: Int { 4 * (qkv.count + (probs?.count ?? 0) + attn.count + xMid.count + gu.count + act.count) }

    /// Float counts of each internal for one layer.
    static func elements(_ s: LayerShape, config c: LlamaConfig, geometry g: BlockGeometry)
        -> (qkv: Int, probs: Int, attn: Int, xMid: Int, gu: Int, act: Int)
    {
        let n = g.tokens, hd = c.headDim
        return (n * (s.numHeads + 2 * s.numKVHeads) * hd, g.batch * s.numHeads * g.seqLen * g.seqLen,
                n * s.numHeads * hd, n * c.hiddenSize, n * 2 * s.intermediateSize, n * s.intermediateSize)
    }

    /// Bytes one layer's internals take (with the softmax kept): what the memory planner, the gradient pass and
    /// the LoRA pass count.
    public static func bytes(_ s: LayerShape, config c: LlamaConfig, geometry g: BlockGeometry) -> Int {
        let e = elements(s, config: c, geometry: g)
        return 4 * (e.qkv + e.probs + e.attn + e.xMid + e.gu + e.act)
    }
}

/// Work buffers of a layer's backward, each at least as large as the layer needs.
public struct BackwardBuffers {
    public let dAct: UnsafeMutablePointer<Float>    // [N × I]
    public let dgu: UnsafeMutablePointer<Float>     // [N × 2I]
    public let dh: UnsafeMutablePointer<Float>      // [N × d]
    public let dAttn: UnsafeMutablePointer<Float>   // [N × nq·hd]
    public let dqkv: UnsafeMutablePointer<Float>    // [N × W]
    public init(dAct: UnsafeMutablePointer<Float>, dgu: UnsafeMutablePointer<Float>, dh: UnsafeMutablePointer<Float>,
                dAttn: UnsafeMutablePointer<Float>, dqkv: UnsafeMutablePointer<Float>) {
        self.dAct = dAct; self.dgu = dgu; self.dh = dh; self.dAttn = dAttn; self.dqkv = dqkv
    }
}

/// Runs layers of one model forward and backward. Holds the rotary tables and the optional phase profile; not
/// thread-safe (one per pass).
public final class TransformerBlock {
    public let config: LlamaConfig
    /// Set to a fresh profile to collect phase timings.
    public var profile: ForwardProfile?
    /// The frozen base packed for bf16 products (`--compute bf16`), or nil for fp32 sgemm. Only for passes whose
    /// layer weights are the ones it was packed from and never change (LoRA, eval, generation).
    public var bf16: BF16Base?
    private(set) var ropeCos: [Float] = []     // [positions × hd/2]
    private(set) var ropeSin: [Float] = []
    private var ropeNegSin: [Float] = []        // −sin: the backward rotates by −θ
    private var ropePositions = 0
    private var ropeDynamicLength: Int?          // L the tables were built for under dynamic RoPE past max_pos

    public init(config: LlamaConfig) {
        self.config = config
    }

    @inline(__always)
    func timed<R>(_ phase: String, flops: Double = 0, _ body: () throws -> R) rethrows -> R {
        guard profile != nil else { return try body() }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let r = try body()
        profile!.seconds[phase, default: 0] += Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
        if ForwardProfile.gemmPhases.contains(phase) { profile!.gemmFlops += flops }
        return r
    }

    /// Makes the rotary tables cover positions 0..<positions, for a batch of sequences `positions` long: dynamic
    /// RoPE past max_position_embeddings depends on that length, and its tables are rebuilt when it changes.
    public func ensureRope(_ positions: Int) {
        let dynamic = config.ropeScaling.dynamicLength(seqLen: positions, maxPositionEmbeddings: config.maxPositionEmbeddings)
        guard positions > ropePositions || dynamic != ropeDynamicLength else { return }
        (ropeCos, ropeSin) = Self.ropeTables(config: config, positions: positions)
        ropeNegSin = ropeSin.map { -$0 }
        ropePositions = positions
        ropeDynamicLength = dynamic
    }

    /// cos and sin [positions × hd/2] of the rotary angles for sequences `positions` long. inv_freq as transformers
    /// computes it for the config's RoPE type (RopeScaling.swift; plain RoPE: theta^(-2j/hd) in double), angles in
    /// fp32 like its matmul, cos and sin times the type's attention factor (yarn).
    public static func ropeTables(config: LlamaConfig, positions: Int) -> (cos: [Float], sin: [Float]) {
        let half = config.headDim / 2
        var cs = [Float](repeating: 0, count: positions * half), sn = cs
        let (inv, attention) = config.ropeScaling.inverseFrequencies(
            theta: config.ropeTheta, headDim: config.headDim, maxPositionEmbeddings: config.maxPositionEmbeddings,
            seqLen: positions)
        for p in 0..<positions {
            for j in 0..<half {
                let a = Float(p) * inv[j]
                cs[p * half + j] = Foundation.cos(a)
                sn[p * half + j] = Foundation.sin(a)
            }
        }
        if attention != 1 {
            for i in cs.indices { cs[i] *= attention; sn[i] *= attention }
        }
        return (cs, sn)
    }

    /// Rotates the q and k heads of a [N × W] buffer (q and k heads are adjacent columns from 0); `inverse`
    /// rotates by −θ (the transpose, for gradients). Token t of a sequence is at position `offset` + t (offset: the
    /// positions a KV cache already holds).
    func rope(_ qkv: UnsafeMutablePointer<Float>, shape s: LayerShape, geometry g: BlockGeometry, inverse: Bool,
              offset: Int = 0) {
        let hd = config.headDim, width = (s.numHeads + 2 * s.numKVHeads) * hd, seqLen = g.seqLen
        ropeCos.withUnsafeBufferPointer { cs in
            (inverse ? ropeNegSin : ropeSin).withUnsafeBufferPointer { sn in
                Kernels.rope(qkv, tokens: g.tokens, rowStride: width, colOffset: 0, heads: s.numHeads + s.numKVHeads,
                             headDim: hd, positions: { offset + $0 % seqLen }, cos: cs.baseAddress!, sin: sn.baseAddress!)
            }
        }
    }

    /// out[N × rows] = rmsnorm(x[N × d]) · weight.
    func norm(_ weight: [Float], _ x: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, rows: Int) {
        timed("norm") {
            weight.withUnsafeBufferPointer { w in
                Kernels.rmsNorm(x, weight: w.baseAddress!, out: out, rows: rows, dim: config.hiddenSize,
                                eps: config.rmsNormEps)
            }
        }
    }

    /// out[N × outWidth] (+)= input[N × k] · Wᵀ for a weight W stored [outWidth × k] of `layer`: in bf16 when
    /// the block has a packed base, else sgemm. One token (a generation step) goes through Kernels.matvec in fp32:
    /// one pass over W, at about twice the bandwidth of OpenBLAS' sgemv here.
    func project(_ p: Projection, layer l: Int, _ input: UnsafePointer<Float>, tokens n: Int, k: Int, weight: [Float],
                 outWidth: Int, out: UnsafeMutablePointer<Float>, accumulate: Bool) {
        timed(p.phase, flops: 2.0 * Double(n * k * outWidth)) {
            if let packed = bf16?.product(p, layer: l).forward, packed.run(input, rows: n, into: out, accumulate: accumulate) {
                return
            }
            weight.withUnsafeBufferPointer { w in
                if n == 1 {
                    Kernels.matvec(w.baseAddress!, input, out, rows: outWidth, cols: k, accumulate: accumulate,
                                   threads: BLAS.threads)
                } else {
                    BLAS.gemm(m: n, n: outWidth, k: k, a: input, b: w.baseAddress!, bTransposed: true, c: out,
                              beta: accumulate ? 1 : 0)
                }
            }
        }
    }

    /// out[r, 0..<bias.count] += bias for each of the N rows (leading dimension `ld`); nothing for an empty bias.
    func addBias(_ p: Projection, _ bias: [Float], out: UnsafeMutablePointer<Float>, tokens n: Int, ld: Int) {
        guard !bias.isEmpty else { return }
        timed(p.phase) {
            bias.withUnsafeBufferPointer { b in
                let bp = b.baseAddress!, w = b.count
                Kernels.parallelRows(n, minRowsPerChunk: 64) { range in
                    for r in range {
                        let row = out + r * ld
                        for j in 0..<w { row[j] += bp[j] }
                    }
                }
            }
        }
    }

    /// dX[N × k] = dY[N × outWidth] · W for a weight W stored [outWidth × k] of `layer` (bf16 when the block has a
    /// base packed for the backward).
    func projectBack(_ p: Projection, layer l: Int, _ dY: UnsafePointer<Float>, tokens n: Int, k: Int, weight: [Float],
                     outWidth: Int, dX: UnsafeMutablePointer<Float>) {
        if let packed = bf16?.product(p, layer: l).backward, packed.run(dY, rows: n, into: dX, accumulate: false) {
            return
        }
        weight.withUnsafeBufferPointer { w in
            BLAS.gemm(m: n, n: k, k: outWidth, a: dY, b: w.baseAddress!, bTransposed: false, c: dX)
        }
    }

    /// logits[rows × V] = h[rows × d] · headᵀ, the LM head of `w` (lm_head, or the tied embedding); bf16 when the
    /// block has a packed base. One row (a generation step) in fp32 goes through Kernels.matvec.
    public func lmHead(_ w: LlamaWeights, _ h: UnsafePointer<Float>, rows: Int, logits: UnsafeMutablePointer<Float>) {
        let v = config.vocabSize, d = config.hiddenSize
        if let packed = bf16?.head.forward, packed.run(h, rows: rows, into: logits, accumulate: false) { return }
        (w.lmHead ?? w.embed).withUnsafeBufferPointer { p in
            if rows == 1 {
                Kernels.matvec(p.baseAddress!, h, logits, rows: v, cols: d, accumulate: false, threads: BLAS.threads)
            } else {
                BLAS.gemm(m: rows, n: v, k: d, a: h, b: p.baseAddress!, bTransposed: true, c: logits)
            }
        }
    }

    /// dH[rows × d] = dLogits[rows × V] · head: the LM head's input gradient (bf16 when packed for the backward).
    public func lmHeadBack(_ w: LlamaWeights, _ dLogits: UnsafePointer<Float>, rows: Int, dH: UnsafeMutablePointer<Float>) {
        let v = config.vocabSize, d = config.hiddenSize
        if let packed = bf16?.head.backward, packed.run(dLogits, rows: rows, into: dH, accumulate: false) { return }
        (w.lmHead ?? w.embed).withUnsafeBufferPointer { p in
            BLAS.gemm(m: rows, n: d, k: v, a: dLogits, b: p.baseAddress!, bTransposed: false, c: dH)
        }
    }

    // MARK: - forward

    /// out[N × d] = layer(x[N × d]); the internals land in `t`. `out` may be `x`, and `t.xMid` may be `x` too
    /// (then the residual stream is updated in place). `h` [N × d] is scratch (it ends as rmsnorm₂(xMid)).
    /// With a `cache` (one sequence: batch 1), the N tokens are the positions after the `cache.length` it holds:
    /// they are rotated at those positions, their k and v are appended to the layer's cache, and they attend to
    /// every cached position too (the caller advances the cache once every layer has run).
    public func forward(_ lw: LayerWeights, layer l: Int, x: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
                        internals t: LayerInternals, h: UnsafeMutablePointer<Float>, geometry g: BlockGeometry,
                        hook: ProjectionHook? = nil, cache: KVCache? = nil) {
        let c = config, d = c.hiddenSize, hd = c.headDim, n = g.tokens, s = lw.shape
        let nq = s.numHeads, nkv = s.numKVHeads, inter = s.intermediateSize
        let width = (nq + 2 * nkv) * hd, qWidth = nq * hd

        // Attention: xMid = x + attention(rope(q|k|v(rmsnorm₁(x)))) · Woᵀ
        norm(lw.inputNorm, x, out: h, rows: n)
        project(.qkv, layer: l, h, tokens: n, k: d, weight: lw.wqkv, outWidth: width, out: t.qkv.p, accumulate: false)
        addBias(.qkv, lw.bqkv, out: t.qkv.p, tokens: n, ld: width)
        hook?.forward(.qkv, layer: l, input: h, output: t.qkv.p, ld: width, shape: s, geometry: g)
        let past = cache?.length ?? 0
        precondition(cache == nil || (g.batch == 1 && t.probs == nil), "a KV cache holds one sequence, forward only")
        if c.usesRope(layer: l) { timed("rope") { rope(t.qkv.p, shape: s, geometry: g, inverse: false, offset: past) } }
        if profile != nil { profile!.attentionFlops += 4.0 * Double(g.batch * nq * g.seqLen * (past + g.seqLen) * hd) }
        timed("attention") {
            if let cache {
                cache.store(layer: l, qkv: t.qkv.p, stride: width, kColumn: qWidth, rows: n)
                AttentionCore.attend(q: t.qkv.p, qStride: width, keys: cache.keys[l].p, values: cache.values[l].p,
                                     kvStride: nkv * hd, probs: nil, attn: t.attn.p, batch: 1, queries: n,
                                     keyCount: past + n, nq: nq, nkv: nkv, hd: hd, window: c.attentionWindow(layer: l))
            } else {
                AttentionCore.forward(qkv: t.qkv.p, probs: t.probs?.p, attn: t.attn.p, batch: g.batch, seqLen: g.seqLen,
                                      nq: nq, nkv: nkv, hd: hd, window: c.attentionWindow(layer: l))
            }
        }
        if t.xMid.p != UnsafeMutablePointer(mutating: x) { t.xMid.p.update(from: x, count: n * d) }
        project(.o, layer: l, t.attn.p, tokens: n, k: qWidth, weight: lw.wo, outWidth: d, out: t.xMid.p, accumulate: true)
        addBias(.o, lw.bo, out: t.xMid.p, tokens: n, ld: d)
        hook?.forward(.o, layer: l, input: t.attn.p, output: t.xMid.p, ld: d, shape: s, geometry: g)

        // MLP: out = xMid + (silu(gate)·up)(rmsnorm₂(xMid)) · Wdownᵀ
        norm(lw.postNorm, t.xMid.p, out: h, rows: n)
        project(.gateUp, layer: l, h, tokens: n, k: d, weight: lw.wGateUp, outWidth: 2 * inter, out: t.gu.p, accumulate: false)
        addBias(.gateUp, lw.bGateUp, out: t.gu.p, tokens: n, ld: 2 * inter)
        hook?.forward(.gateUp, layer: l, input: h, output: t.gu.p, ld: 2 * inter, shape: s, geometry: g)
        timed("swiglu") { Kernels.swiglu(t.gu.p, out: t.act.p, rows: n, inner: inter) }
        if out != t.xMid.p { out.update(from: t.xMid.p, count: n * d) }
        project(.down, layer: l, t.act.p, tokens: n, k: inter, weight: lw.wDown, outWidth: d, out: out, accumulate: true)
        addBias(.down, lw.bDown, out: out, tokens: n, ld: d)
        hook?.forward(.down, layer: l, input: t.act.p, output: out, ld: d, shape: s, geometry: g)
    }

    // MARK: - backward

    /// Backward through a layer whose forward from `x` left `t` (with the softmax kept). On entry dx [N × d] holds
    /// ∂loss/∂(layer output); on exit ∂loss/∂x when `needInputGradient`. The hook's backward is called for each
    /// product it wants; products below everything wanted are skipped. `h` [N × d] is scratch.
    public func backward(_ lw: LayerWeights, layer l: Int, x: UnsafePointer<Float>, internals t: LayerInternals,
                         dx: UnsafeMutablePointer<Float>, h: UnsafeMutablePointer<Float>, buffers b: BackwardBuffers,
                         geometry g: BlockGeometry, hook: ProjectionHook?, needInputGradient: Bool) {
        let c = config, d = c.hiddenSize, hd = c.headDim, n = g.tokens, eps = c.rmsNormEps, s = lw.shape
        let nq = s.numHeads, nkv = s.numKVHeads, inter = s.intermediateSize
        let width = (nq + 2 * nkv) * hd, qWidth = nq * hd
        guard let probs = t.probs else { preconditionFailure("TransformerBlock.backward needs the kept softmax") }
        func wants(_ p: Projection) -> Bool { hook?.wantsGradient(p, layer: l) ?? false }
        // Does anything at or below a point of this layer need a gradient?
        let needQKV = needInputGradient || wants(.qkv)
        let needAttention = needQKV || wants(.o)
        let needMLPInput = needAttention || wants(.gateUp)

        // MLP: y = xMid + act · Wdownᵀ.
        if needMLPInput { projectBack(.down, layer: l, dx, tokens: n, k: inter, weight: lw.wDown, outWidth: d, dX: b.dAct) }
        if wants(.down) {
            hook!.backward(.down, layer: l, input: t.act.p, dY: dx, ld: d, dX: needMLPInput ? b.dAct : nil, shape: s,
                           geometry: g)
        }
        guard needMLPInput else { return }
        Kernels.swigluBackward(t.gu.p, dAct: b.dAct, dgu: b.dgu, rows: n, inner: inter)
        lw.postNorm.withUnsafeBufferPointer { w in       // h = rmsnorm₂(xMid), the gate|up input
            Kernels.rmsNorm(t.xMid.p, weight: w.baseAddress!, out: h, rows: n, dim: d, eps: eps)
        }
        projectBack(.gateUp, layer: l, b.dgu, tokens: n, k: d, weight: lw.wGateUp, outWidth: 2 * inter, dX: b.dh)
        if wants(.gateUp) {
            hook!.backward(.gateUp, layer: l, input: h, dY: b.dgu, ld: 2 * inter, dX: b.dh, shape: s, geometry: g)
        }
        guard needAttention else { return }
        lw.postNorm.withUnsafeBufferPointer { w in       // dx (= ∂/∂y) becomes ∂/∂xMid
            Kernels.rmsNormBackward(x: t.xMid.p, weight: w.baseAddress!, dy: b.dh, dx: dx, rows: n, dim: d, eps: eps,
                                    accumulate: true)
        }

        // Attention: xMid = x + attn · Woᵀ.
        if needQKV { projectBack(.o, layer: l, dx, tokens: n, k: qWidth, weight: lw.wo, outWidth: d, dX: b.dAttn) }
        if wants(.o) {
            hook!.backward(.o, layer: l, input: t.attn.p, dY: dx, ld: d, dX: needQKV ? b.dAttn : nil, shape: s,
                           geometry: g)
        }
        guard needQKV else { return }
        AttentionCore.backward(qkv: t.qkv.p, probs: probs.p, dAttn: b.dAttn, dqkv: b.dqkv, batch: g.batch,
                               seqLen: g.seqLen, nq: nq, nkv: nkv, hd: hd)
        if c.usesRope(layer: l) { rope(b.dqkv, shape: s, geometry: g, inverse: true) }
        lw.inputNorm.withUnsafeBufferPointer { w in      // h = rmsnorm₁(x), the q|k|v input
            Kernels.rmsNorm(x, weight: w.baseAddress!, out: h, rows: n, dim: d, eps: eps)
        }
        if needInputGradient { projectBack(.qkv, layer: l, b.dqkv, tokens: n, k: d, weight: lw.wqkv, outWidth: width, dX: b.dh) }
        if wants(.qkv) {
            hook!.backward(.qkv, layer: l, input: h, dY: b.dqkv, ld: width, dX: needInputGradient ? b.dh : nil,
                           shape: s, geometry: g)
        }
        guard needInputGradient else { return }
        lw.inputNorm.withUnsafeBufferPointer { w in      // dx (= ∂/∂xMid) becomes ∂/∂x
            Kernels.rmsNormBackward(x: x, weight: w.baseAddress!, dy: b.dh, dx: dx, rows: n, dim: d, eps: eps,
                                    accumulate: true)
        }
    }
}
