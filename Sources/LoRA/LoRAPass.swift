// Forward with LoRA adapters and backward to the adapters only, over a FROZEN Llama in fp32 with every product
// a batched sgemm. Each adapted projection computes y = x Wᵀ + s·(dropout(x) Aᵀ) Bᵀ, s = alpha/r.
// What the backward does not do, on purpose:
// - no base weight gradient is ever formed: only activation gradients flow through the frozen matrices;
// - no backward into the embedding, and none below what the lowest layer's adapters need;
// - the LM head runs only over rows whose next label is scored (prompt tokens are −100 by default).
// Memory: every layer's internals are kept from the forward sweep when they fit `activationBudgetBytes`;
// otherwise only layer inputs are kept and each layer is re-run forward (same dropout masks) in the backward.
import Foundation
import LlamaModel
import TensorCore

/// The internals of one layer's forward that its backward reads.
final class LayerCache {
    let qkv, probs, attn, xMid, gu, act: Buf
    let u: [Buf]                  // per target (config order): dropout(x) Aᵀ [N × r]
    let masks: [DropoutBits]      // per target: the dropout mask of its input (unused without dropout)
    init(tokens n: Int, batch: Int, seqLen: Int, shape s: LayerShape, config c: LlamaConfig, rank: Int, targets: Int,
         pool: BufferPool) {
        let hd = c.headDim
        qkv = pool.take(n * (s.numHeads + 2 * s.numKVHeads) * hd)
        probs = pool.take(batch * s.numHeads * seqLen * seqLen)
        attn = pool.take(n * s.numHeads * hd)
        xMid = pool.take(n * c.hiddenSize)
        gu = pool.take(n * 2 * s.intermediateSize)
        act = pool.take(n * s.intermediateSize)
        u = (0..<targets).map { _ in pool.take(n * rank) }
        masks = (0..<targets).map { _ in DropoutBits() }
    }

    static func bytes(tokens n: Int, batch: Int, seqLen: Int, shape s: LayerShape, config c: LlamaConfig, rank: Int,
                      targets: Int) -> Int {
        let hd = c.headDim
        return 4 * (n * (s.numHeads + 2 * s.numKVHeads) * hd + batch * s.numHeads * seqLen * seqLen + n * s.numHeads * hd
            + n * c.hiddenSize + 3 * n * s.intermediateSize + targets * n * rank)
    }
}

/// Σ NLL over the scored predictions of a batch, and how many there were.
public struct LossSum: Sendable, Equatable {
    public var nll: Double
    public var predictions: Int
    public init(nll: Double, predictions: Int) {
        self.nll = nll
        self.predictions = predictions
    }
    public var mean: Double { predictions > 0 ? nll / Double(predictions) : .nan }
    public static func + (a: LossSum, b: LossSum) -> LossSum { LossSum(nll: a.nll + b.nll, predictions: a.predictions + b.predictions) }
}

public final class LoRAPass {
    public let base: LlamaWeights
    public let adapters: LoRAAdapters
    /// Keep every layer's internals from the forward sweep when they fit in this many bytes; else recompute.
    public var activationBudgetBytes = 2 << 30
    /// Bytes of activation buffers the last pass used (weights, adapters and gradients excluded).
    public private(set) var lastActivationBytes = 0
    let pool = BufferPool()

    let targets: [LoRATarget]
    let grads: UnsafeMutablePointer<Float>     // flat, the layout of adapters.parameters
    let gradCount: Int
    private var ropeCos: [Float] = [], ropeSin: [Float] = [], ropePositions = 0

    public init(base: LlamaWeights, adapters: LoRAAdapters) throws {
        try adapters.checkFits(base.config)
        self.base = base
        self.adapters = adapters
        targets = adapters.config.orderedTargets
        gradCount = adapters.parameterCount
        grads = .allocate(capacity: max(gradCount, 1))
        grads.initialize(repeating: 0, count: max(gradCount, 1))
    }

    deinit { grads.deallocate() }

    var config: LlamaConfig { base.config }

    // MARK: - gradients, flat

    public func zeroGradients() { grads.update(repeating: 0, count: gradCount) }

    /// The accumulated adapter gradients in the flat layout of `adapters.parameters`.
    public var flatGradients: [Float] {
        get { Array(UnsafeBufferPointer(start: grads, count: gradCount)) }
        set {
            precondition(newValue.count == gradCount, "flatGradients: \(newValue.count) values for \(gradCount)")
            newValue.withUnsafeBufferPointer { grads.update(from: $0.baseAddress!, count: gradCount) }
        }
    }

    /// In-place access to the flat gradients (e.g. for MPI_Allreduce without a copy).
    public func withFlatGradients<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeMutableBufferPointer(start: grads, count: gradCount))
    }

    // MARK: - public passes

    /// Forward and backward over one micro-batch: adds ∂(Σ NLL / lossDivisor)/∂θ into the flat gradients and
    /// returns the batch's NLL sum. `dropoutSeed` keys this pass's masks (ignored when dropout is 0).
    @discardableResult
    public func accumulateGradients(_ batch: TokenBatch, lossDivisor: Double, dropoutSeed: UInt64) throws -> LossSum {
        guard lossDivisor > 0 else { throw LoRAError.invalidInput("loss divisor must be positive") }
        return try run(batch, lossDivisor: lossDivisor, dropoutSeed: adapters.config.dropout > 0 ? dropoutSeed : nil,
                       backward: true)
    }

    /// Forward only: the batch's NLL sum over scored predictions. No dropout unless a seed is given (then the
    /// masks `accumulateGradients` draws for that seed).
    public func evaluate(_ batch: TokenBatch, dropoutSeed: UInt64? = nil) throws -> LossSum {
        try run(batch, lossDivisor: 1, dropoutSeed: adapters.config.dropout > 0 ? dropoutSeed : nil, backward: false)
    }

    /// Logits [batch·seqLen × vocab] of the model with adapters (no dropout).
    public func logits(tokens: [Int32], batch: Int, seqLen: Int) throws -> [Float] {
        let tb = try TokenBatch(tokens: tokens, labels: [Int32](repeating: TokenBatch.ignoreIndex, count: tokens.count),
                                batch: batch, seqLen: seqLen)
        try validate(tb)
        let n = batch * seqLen, d = config.hiddenSize, v = config.vocabSize
        ensureRope(seqLen)
        var out = [Float](repeating: 0, count: n * v)
        defer { pool.recycle() }
        adapters.parameters.withUnsafeBufferPointer { P in
            let geo = Geometry(batch: batch, seqLen: seqLen)
            let x = embed(tb.tokens, n: n)
            let next = pool.take(n * d), h = pool.take(n * d)
            let cache = maxCache(geo)
            let scratch = pool.take(n * maxInFeatures)
            var cur = x
            var nxt = next
            for l in 0..<config.numLayers {
                forwardLayer(l, x: cur, out: nxt, cache: cache, h: h, scratch: scratch, P: P.baseAddress!, geo: geo, seed: nil)
                swap(&cur, &nxt)
            }
            base.finalNorm.withUnsafeBufferPointer { w in
                Kernels.rmsNorm(cur.p, weight: w.baseAddress!, out: h.p, rows: n, dim: d, eps: config.rmsNormEps)
            }
            (base.lmHead ?? base.embed).withUnsafeBufferPointer { w in
                out.withUnsafeMutableBufferPointer { o in
                    BLAS.gemm(m: n, n: v, k: d, a: h.p, b: w.baseAddress!, bTransposed: true, c: o.baseAddress!)
                }
            }
        }
        return out
    }

    // MARK: - the pass

    struct Geometry {
        let batch: Int, seqLen: Int
        var tokens: Int { batch * seqLen }
    }

    func validate(_ b: TokenBatch) throws {
        let v = Int32(config.vocabSize)
        if let bad = b.tokens.first(where: { $0 < 0 || $0 >= v }) {
            throw LoRAError.invalidInput("token id \(bad) outside the vocabulary (\(v))")
        }
        if let bad = b.labels.first(where: { $0 != TokenBatch.ignoreIndex && ($0 < 0 || $0 >= v) }) {
            throw LoRAError.invalidInput("label \(bad) is neither −100 nor inside the vocabulary (\(v))")
        }
    }

    var maxInFeatures: Int { adapters.slots.map(\.inFeatures).max() ?? 1 }

    /// One cache sized for the widest layer (used when recomputing).
    func maxCache(_ g: Geometry) -> LayerCache {
        let ls = config.layers
        let s = LayerShape(numHeads: ls.map(\.numHeads).max()!, numKVHeads: ls.map(\.numKVHeads).max()!,
                           intermediateSize: ls.map(\.intermediateSize).max()!)
        return LayerCache(tokens: g.tokens, batch: g.batch, seqLen: g.seqLen, shape: s, config: config,
                          rank: adapters.config.rank, targets: targets.count, pool: pool)
    }

    func embed(_ tokens: [Int32], n: Int) -> Buf {
        let d = config.hiddenSize
        let x = pool.take(n * d)
        base.embed.withUnsafeBufferPointer { e in
            for t in 0..<n { (x.p + t * d).update(from: e.baseAddress! + Int(tokens[t]) * d, count: d) }
        }
        return x
    }

    private func run(_ tb: TokenBatch, lossDivisor: Double, dropoutSeed: UInt64?, backward: Bool) throws -> LossSum {
        try validate(tb)
        let c = config, d = c.hiddenSize, L = c.numLayers
        let geo = Geometry(batch: tb.batch, seqLen: tb.seqLen), n = geo.tokens
        ensureRope(tb.seqLen)
        defer { pool.recycle() }
        return adapters.parameters.withUnsafeBufferPointer { Pbuf -> LossSum in
            let P = Pbuf.baseAddress!
            // inputs[l] = input of layer l; inputs[L] = the last layer's output (before the final norm).
            var inputs = [embed(tb.tokens, n: n)]
            let h = pool.take(n * d), scratch = pool.take(n * maxInFeatures)
            let rank = adapters.config.rank
            let perLayer = c.layers.map {
                LayerCache.bytes(tokens: n, batch: geo.batch, seqLen: geo.seqLen, shape: $0, config: c, rank: rank,
                                 targets: targets.count)
            }
            let keepAll = backward && perLayer.reduce(0, +) <= activationBudgetBytes
            var caches: [LayerCache?] = Array(repeating: nil, count: L)
            let shared = keepAll ? nil : maxCache(geo)
            var spare: Buf?     // forward only: the residual stream alternates between two buffers
            for l in 0..<L {
                let out = backward ? pool.take(n * d) : (spare ?? pool.take(n * d))
                let cache = keepAll
                    ? LayerCache(tokens: n, batch: geo.batch, seqLen: geo.seqLen, shape: c.layers[l], config: c, rank: rank,
                                 targets: targets.count, pool: pool)
                    : shared!
                forwardLayer(l, x: inputs.last!, out: out, cache: cache, h: h, scratch: scratch, P: P, geo: geo, seed: dropoutSeed)
                if keepAll { caches[l] = cache }
                if backward { inputs.append(out) } else { spare = inputs[0]; inputs = [out] }
            }
            let xFinal = inputs.last!
            base.finalNorm.withUnsafeBufferPointer { w in
                Kernels.rmsNorm(xFinal.p, weight: w.baseAddress!, out: h.p, rows: n, dim: d, eps: c.rmsNormEps)
            }
            let dx = backward ? pool.take(n * d) : nil
            let loss = lossAndGradient(hidden: h.p, batch: tb, divisor: lossDivisor, dHidden: dx?.p)
            defer { lastActivationBytes = pool.bytesTaken }
            guard let dx else { return loss }

            // Final norm backward: dx ← ∂/∂x_L.
            let dNormed = pool.take(n * d)
            dNormed.p.update(from: dx.p, count: n * d)
            base.finalNorm.withUnsafeBufferPointer { w in
                Kernels.rmsNormBackward(x: xFinal.p, weight: w.baseAddress!, dy: dNormed.p, dx: dx.p, rows: n, dim: d,
                                        eps: c.rmsNormEps, accumulate: false)
            }
            let bw = BackwardScratch(tokens: n, config: c, rank: rank, pool: pool)
            for l in stride(from: L - 1, through: 0, by: -1) {
                let cache: LayerCache
                if let kept = caches[l] {
                    cache = kept
                    caches[l] = nil
                } else {
                    cache = shared!
                    forwardLayer(l, x: inputs[l], out: bw.discard, cache: cache, h: h, scratch: scratch, P: P, geo: geo,
                                 seed: dropoutSeed)
                }
                backwardLayer(l, x: inputs[l], cache: cache, dx: dx, h: h, scratch: scratch, bw: bw, P: P, geo: geo,
                              seed: dropoutSeed, needInputGradient: l > 0)
            }
            return loss
        }
    }

    func ensureRope(_ positions: Int) {
        guard positions > ropePositions else { return }
        (ropeCos, ropeSin) = LlamaRunner.ropeTables(config: config, positions: positions)
        ropePositions = positions
    }

    func rope(_ buf: UnsafeMutablePointer<Float>, tokens n: Int, width: Int, heads: Int, seqLen: Int, inverse: Bool) {
        let sin = inverse ? ropeSin.map { -$0 } : ropeSin
        ropeCos.withUnsafeBufferPointer { cs in
            sin.withUnsafeBufferPointer { sn in
                Kernels.rope(buf, tokens: n, rowStride: width, colOffset: 0, heads: heads, headDim: config.headDim,
                             positions: { $0 % seqLen }, cos: cs.baseAddress!, sin: sn.baseAddress!)
            }
        }
    }

    // MARK: - adapters

    func slotIndex(_ l: Int, _ t: LoRATarget) -> (slot: AdapterSlot, index: Int)? {
        guard let s = adapters.slot(layer: l, target: t) else { return nil }
        return (s, targets.firstIndex(of: t)!)
    }

    /// The forward's dropout mask of target ti in layer l, drawn into the cache (nil without dropout).
    func drawMask(_ seed: UInt64?, _ cache: LayerCache, _ l: Int, _ ti: Int, rows: Int, cols: Int) -> DropoutBits? {
        guard let seed else { return nil }
        cache.masks[ti].fill(DropoutMask(p: adapters.config.dropout, seed: seed, layer: l, target: ti), rows: rows, cols: cols)
        return cache.masks[ti]
    }

    /// The mask the forward drew (nil without dropout).
    func keptMask(_ seed: UInt64?, _ cache: LayerCache, _ ti: Int) -> DropoutBits? { seed == nil ? nil : cache.masks[ti] }

    /// u = dropout(x) Aᵀ [N × r]; out[:, 0..<outF] (ld ldOut) += s · u Bᵀ.
    func adapterForward(_ s: AdapterSlot, x: UnsafePointer<Float>, n: Int, u: UnsafeMutablePointer<Float>,
                        out: UnsafeMutablePointer<Float>, ldOut: Int, mask: DropoutBits?, scratch: Buf, P: UnsafePointer<Float>) {
        let r = adapters.config.rank
        var input = x
        if let mask {
            mask.apply(x, to: scratch.p)
            input = UnsafePointer(scratch.p)
        }
        BLAS.gemm(m: n, n: r, k: s.inFeatures, a: input, b: P + s.aOffset, bTransposed: true, c: u)
        BLAS.gemm(m: n, n: s.outFeatures, k: r, a: u, b: P + s.bOffset, bTransposed: true, c: out, ldc: ldOut,
                  alpha: adapters.config.scale, beta: 1)
    }

    /// Given dY [N × out] (ld ldY): gB += s · dYᵀ u, du = s · dY B, gA += duᵀ dropout(x), and when dX is given
    /// dX += dropoutᵀ(du A).
    func adapterBackward(_ s: AdapterSlot, x: UnsafePointer<Float>, n: Int, u: UnsafePointer<Float>,
                         dY: UnsafePointer<Float>, ldY: Int, dX: UnsafeMutablePointer<Float>?, mask: DropoutBits?,
                         scratch: Buf, bw: BackwardScratch, P: UnsafePointer<Float>) {
        let r = adapters.config.rank, scale = adapters.config.scale
        BLAS.gemm(m: s.outFeatures, n: r, k: n, a: dY, lda: ldY, b: u, bTransposed: false, c: grads + s.bOffset,
                  alpha: scale, beta: 1, aTransposed: true)
        BLAS.gemm(m: n, n: r, k: s.outFeatures, a: dY, lda: ldY, b: P + s.bOffset, bTransposed: false, c: bw.du.p,
                  alpha: scale)
        var input = x
        if let mask {
            mask.apply(x, to: scratch.p)
            input = UnsafePointer(scratch.p)
        }
        BLAS.gemm(m: r, n: s.inFeatures, k: n, a: bw.du.p, b: input, bTransposed: false, c: grads + s.aOffset, beta: 1,
                  aTransposed: true)
        guard let dX else { return }
        if let mask {
            BLAS.gemm(m: n, n: s.inFeatures, k: r, a: bw.du.p, b: P + s.aOffset, bTransposed: false, c: scratch.p)
            mask.accumulate(scratch.p, into: dX)
        } else {
            BLAS.gemm(m: n, n: s.inFeatures, k: r, a: bw.du.p, b: P + s.aOffset, bTransposed: false, c: dX, beta: 1)
        }
    }

    // MARK: - one layer

    /// out = layer l applied to x; internals into cache (h and scratch are work buffers).
    func forwardLayer(_ l: Int, x: Buf, out: Buf, cache: LayerCache, h: Buf, scratch: Buf, P: UnsafePointer<Float>,
                      geo: Geometry, seed: UInt64?) {
        let c = config, lw = base.layers[l], d = c.hiddenSize, hd = c.headDim, n = geo.tokens, eps = c.rmsNormEps
        let nq = lw.shape.numHeads, nkv = lw.shape.numKVHeads, inter = lw.shape.intermediateSize
        let width = (nq + 2 * nkv) * hd, qWidth = nq * hd

        // attention: xMid = x + o(attn(rope(qkv(norm1(x)))))
        lw.inputNorm.withUnsafeBufferPointer { w in Kernels.rmsNorm(x.p, weight: w.baseAddress!, out: h.p, rows: n, dim: d, eps: eps) }
        lw.wqkv.withUnsafeBufferPointer { w in
            BLAS.gemm(m: n, n: width, k: d, a: h.p, b: w.baseAddress!, bTransposed: true, c: cache.qkv.p)
        }
        for (t, col) in [(LoRATarget.q, 0), (.k, nq * hd), (.v, (nq + nkv) * hd)] {
            guard let (s, ti) = slotIndex(l, t) else { continue }
            adapterForward(s, x: h.p, n: n, u: cache.u[ti].p, out: cache.qkv.p + col, ldOut: width,
                           mask: drawMask(seed, cache, l, ti, rows: n, cols: s.inFeatures), scratch: scratch, P: P)
        }
        rope(cache.qkv.p, tokens: n, width: width, heads: nq + nkv, seqLen: geo.seqLen, inverse: false)
        AttentionCore.forward(qkv: cache.qkv.p, probs: cache.probs.p, attn: cache.attn.p, batch: geo.batch,
                              seqLen: geo.seqLen, nq: nq, nkv: nkv, hd: hd)
        cache.xMid.p.update(from: x.p, count: n * d)
        lw.wo.withUnsafeBufferPointer { w in
            BLAS.gemm(m: n, n: d, k: qWidth, a: cache.attn.p, b: w.baseAddress!, bTransposed: true, c: cache.xMid.p, beta: 1)
        }
        if let (s, ti) = slotIndex(l, .o) {
            adapterForward(s, x: cache.attn.p, n: n, u: cache.u[ti].p, out: cache.xMid.p, ldOut: d,
                           mask: drawMask(seed, cache, l, ti, rows: n, cols: s.inFeatures), scratch: scratch, P: P)
        }

        // MLP: out = xMid + down(silu(gate) · up)(norm2(xMid))
        lw.postNorm.withUnsafeBufferPointer { w in
            Kernels.rmsNorm(cache.xMid.p, weight: w.baseAddress!, out: h.p, rows: n, dim: d, eps: eps)
        }
        lw.wGateUp.withUnsafeBufferPointer { w in
            BLAS.gemm(m: n, n: 2 * inter, k: d, a: h.p, b: w.baseAddress!, bTransposed: true, c: cache.gu.p)
        }
        for (t, col) in [(LoRATarget.gate, 0), (.up, inter)] {
            guard let (s, ti) = slotIndex(l, t) else { continue }
            adapterForward(s, x: h.p, n: n, u: cache.u[ti].p, out: cache.gu.p + col, ldOut: 2 * inter,
                           mask: drawMask(seed, cache, l, ti, rows: n, cols: s.inFeatures), scratch: scratch, P: P)
        }
        Kernels.swiglu(cache.gu.p, out: cache.act.p, rows: n, inner: inter)
        out.p.update(from: cache.xMid.p, count: n * d)
        lw.wDown.withUnsafeBufferPointer { w in
            BLAS.gemm(m: n, n: d, k: inter, a: cache.act.p, b: w.baseAddress!, bTransposed: true, c: out.p, beta: 1)
        }
        if let (s, ti) = slotIndex(l, .down) {
            adapterForward(s, x: cache.act.p, n: n, u: cache.u[ti].p, out: out.p, ldOut: d,
                           mask: drawMask(seed, cache, l, ti, rows: n, cols: s.inFeatures), scratch: scratch, P: P)
        }
    }

    /// On entry dx = ∂loss/∂(output of layer l); adds the layer's adapter gradients and, when
    /// `needInputGradient`, leaves ∂loss/∂(input of layer l) in dx.
    func backwardLayer(_ l: Int, x: Buf, cache: LayerCache, dx: Buf, h: Buf, scratch: Buf, bw: BackwardScratch,
                       P: UnsafePointer<Float>, geo: Geometry, seed: UInt64?, needInputGradient: Bool) {
        let c = config, lw = base.layers[l], d = c.hiddenSize, hd = c.headDim, n = geo.tokens, eps = c.rmsNormEps
        let nq = lw.shape.numHeads, nkv = lw.shape.numKVHeads, inter = lw.shape.intermediateSize
        let width = (nq + 2 * nkv) * hd, qWidth = nq * hd
        let has = Set(targets)
        // Does anything at or below a point of this layer need a gradient?
        let needQKV = needInputGradient || !has.isDisjoint(with: [.q, .k, .v])
        let needAttention = needQKV || has.contains(.o)
        let needMLPInput = needAttention || !has.isDisjoint(with: [.gate, .up])

        // MLP: out = xMid + act Wdownᵀ + adapter(act).
        if let (s, ti) = slotIndex(l, .down) {
            adapterBackward(s, x: cache.act.p, n: n, u: cache.u[ti].p, dY: dx.p, ldY: d, dX: nil, mask: keptMask(seed, cache, ti),
                            scratch: scratch, bw: bw, P: P)
        }
        guard needMLPInput else { return }
        let dAct = bw.dAct.p, dgu = bw.dgu.p, dh = bw.dh.p
        lw.wDown.withUnsafeBufferPointer { w in
            BLAS.gemm(m: n, n: inter, k: d, a: dx.p, b: w.baseAddress!, bTransposed: false, c: dAct)
        }
        if let (s, ti) = slotIndex(l, .down) {   // the adapter's share of ∂/∂act
            adapterInputGradient(s, n: n, dY: dx.p, ldY: d, dX: dAct, mask: keptMask(seed, cache, ti), scratch: scratch, bw: bw, P: P)
        }
        Kernels.swigluBackward(cache.gu.p, dAct: dAct, dgu: dgu, rows: n, inner: inter)
        lw.postNorm.withUnsafeBufferPointer { w in        // h = norm2(xMid), the gate/up input
            Kernels.rmsNorm(cache.xMid.p, weight: w.baseAddress!, out: h.p, rows: n, dim: d, eps: eps)
        }
        lw.wGateUp.withUnsafeBufferPointer { w in
            BLAS.gemm(m: n, n: d, k: 2 * inter, a: dgu, b: w.baseAddress!, bTransposed: false, c: dh)
        }
        for (t, col) in [(LoRATarget.gate, 0), (.up, inter)] {
            guard let (s, ti) = slotIndex(l, t) else { continue }
            adapterBackward(s, x: h.p, n: n, u: cache.u[ti].p, dY: dgu + col, ldY: 2 * inter, dX: dh, mask: keptMask(seed, cache, ti),
                            scratch: scratch, bw: bw, P: P)
        }
        guard needAttention else { return }
        lw.postNorm.withUnsafeBufferPointer { w in        // dx becomes ∂/∂xMid
            Kernels.rmsNormBackward(x: cache.xMid.p, weight: w.baseAddress!, dy: dh, dx: dx.p, rows: n, dim: d, eps: eps,
                                    accumulate: true)
        }

        // Attention: xMid = x + attn Woᵀ + adapter(attn).
        if let (s, ti) = slotIndex(l, .o) {
            adapterBackward(s, x: cache.attn.p, n: n, u: cache.u[ti].p, dY: dx.p, ldY: d, dX: nil, mask: keptMask(seed, cache, ti),
                            scratch: scratch, bw: bw, P: P)
        }
        guard needQKV else { return }
        let dA = bw.dAttn.p, dqkv = bw.dqkv.p
        lw.wo.withUnsafeBufferPointer { w in
            BLAS.gemm(m: n, n: qWidth, k: d, a: dx.p, b: w.baseAddress!, bTransposed: false, c: dA)
        }
        if let (s, ti) = slotIndex(l, .o) {
            adapterInputGradient(s, n: n, dY: dx.p, ldY: d, dX: dA, mask: keptMask(seed, cache, ti), scratch: scratch, bw: bw, P: P)
        }
        AttentionCore.backward(qkv: cache.qkv.p, probs: cache.probs.p, dAttn: dA, dqkv: dqkv, batch: geo.batch,
                               seqLen: geo.seqLen, nq: nq, nkv: nkv, hd: hd)
        rope(dqkv, tokens: n, width: width, heads: nq + nkv, seqLen: geo.seqLen, inverse: true)
        lw.inputNorm.withUnsafeBufferPointer { w in       // h = norm1(x), the q/k/v input
            Kernels.rmsNorm(x.p, weight: w.baseAddress!, out: h.p, rows: n, dim: d, eps: eps)
        }
        if needInputGradient {
            lw.wqkv.withUnsafeBufferPointer { w in
                BLAS.gemm(m: n, n: d, k: width, a: dqkv, b: w.baseAddress!, bTransposed: false, c: dh)
            }
        }
        for (t, col) in [(LoRATarget.q, 0), (.k, nq * hd), (.v, (nq + nkv) * hd)] {
            guard let (s, ti) = slotIndex(l, t) else { continue }
            adapterBackward(s, x: h.p, n: n, u: cache.u[ti].p, dY: dqkv + col, ldY: width,
                            dX: needInputGradient ? dh : nil, mask: keptMask(seed, cache, ti), scratch: scratch, bw: bw, P: P)
        }
        guard needInputGradient else { return }
        lw.inputNorm.withUnsafeBufferPointer { w in       // dx becomes ∂/∂x
            Kernels.rmsNormBackward(x: x.p, weight: w.baseAddress!, dy: dh, dx: dx.p, rows: n, dim: d, eps: eps,
                                    accumulate: true)
        }
    }

    /// dX += dropoutᵀ(s · dY B A): the adapter's share of its input gradient, when its A/B gradients were taken
    /// before dX existed (o and down, whose dY is the residual gradient).
    func adapterInputGradient(_ s: AdapterSlot, n: Int, dY: UnsafePointer<Float>, ldY: Int, dX: UnsafeMutablePointer<Float>,
                              mask: DropoutBits?, scratch: Buf, bw: BackwardScratch, P: UnsafePointer<Float>) {
        let r = adapters.config.rank
        BLAS.gemm(m: n, n: r, k: s.outFeatures, a: dY, lda: ldY, b: P + s.bOffset, bTransposed: false, c: bw.du.p,
                  alpha: adapters.config.scale)
        if let mask {
            BLAS.gemm(m: n, n: s.inFeatures, k: r, a: bw.du.p, b: P + s.aOffset, bTransposed: false, c: scratch.p)
            mask.accumulate(scratch.p, into: dX)
        } else {
            BLAS.gemm(m: n, n: s.inFeatures, k: r, a: bw.du.p, b: P + s.aOffset, bTransposed: false, c: dX, beta: 1)
        }
    }

    // MARK: - loss

    /// Σ NLL of the scored predictions. With dHidden, also writes ∂(Σ NLL / divisor)/∂hidden [N × d] (zero on
    /// unscored rows). Only scored rows go through the LM head, gathered ≈512 at a time.
    func lossAndGradient(hidden: UnsafePointer<Float>, batch tb: TokenBatch, divisor: Double,
                         dHidden: UnsafeMutablePointer<Float>?) -> LossSum {
        let c = config, v = c.vocabSize, d = c.hiddenSize
        let scored = tb.scoredRows
        if let dHidden { dHidden.update(repeating: 0, count: tb.batch * tb.seqLen * d) }
        guard !scored.isEmpty else { return LossSum(nll: 0, predictions: 0) }
        let chunk = min(512, scored.count)
        let rows = pool.take(chunk * d), logits = pool.take(chunk * v), dRows = pool.take(chunk * d)
        var nll = [Double](repeating: 0, count: scored.count)
        let inv = Float(1 / divisor)
        let head = base.lmHead ?? base.embed
        var first = 0
        while first < scored.count {
            let m = min(chunk, scored.count - first)
            for i in 0..<m { (rows.p + i * d).update(from: hidden + scored[first + i].row * d, count: d) }
            head.withUnsafeBufferPointer { w in
                BLAS.gemm(m: m, n: v, k: d, a: rows.p, b: w.baseAddress!, bTransposed: true, c: logits.p)
            }
            let wantGrad = dHidden != nil
            nll.withUnsafeMutableBufferPointer { out in
                let o = out.baseAddress! + first, f = first
                Kernels.parallelRows(m, minRowsPerChunk: 8) { range in
                    for i in range {
                        let row = logits.p + i * v
                        let target = Int(scored[f + i].target)
                        let mx = VectorMath.max(row, v), targetLogit = row[target]
                        if !wantGrad {
                            o[i] = Double(Foundation.log(VectorMath.sumExp(row, v, shift: mx))) + Double(mx) - Double(targetLogit)
                            continue
                        }
                        let sum = VectorMath.expInPlace(row, v, shift: mx)
                        o[i] = Double(Foundation.log(sum)) + Double(mx) - Double(targetLogit)
                        VectorMath.scale(row, inv / sum, row, v)      // (softmax − onehot) / divisor
                        row[target] -= inv
                    }
                }
            }
            if let dHidden {
                head.withUnsafeBufferPointer { w in
                    BLAS.gemm(m: m, n: d, k: v, a: logits.p, b: w.baseAddress!, bTransposed: false, c: dRows.p)
                }
                for i in 0..<m { (dHidden + scored[first + i].row * d).update(from: dRows.p + i * d, count: d) }
            }
            first += m
        }
        return LossSum(nll: nll.reduce(0, +), predictions: scored.count)
    }
}

/// Work buffers of the backward sweep, sized for the widest layer.
final class BackwardScratch {
    let dAct, dgu, dh, dAttn, dqkv, du, discard: Buf
    init(tokens n: Int, config c: LlamaConfig, rank: Int, pool: BufferPool) {
        let hd = c.headDim
        let maxI = c.layers.map(\.intermediateSize).max()!
        dAct = pool.take(n * maxI)
        dgu = pool.take(n * 2 * maxI)
        dh = pool.take(n * c.hiddenSize)
        dAttn = pool.take(n * c.layers.map { $0.numHeads * hd }.max()!)
        dqkv = pool.take(n * c.layers.map { ($0.numHeads + 2 * $0.numKVHeads) * hd }.max()!)
        du = pool.take(n * rank)
        discard = pool.take(n * c.hiddenSize)
    }
}
