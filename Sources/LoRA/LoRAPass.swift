// Forward with LoRA adapters and backward to the adapters only, over a FROZEN Llama with every product a batched
// sgemm in fp32, or the frozen base's products in bf16 (`compute`, BF16Base). Each adapted projection computes
// y = x Wᵀ + s·(dropout(x) Aᵀ) Bᵀ, s = alpha/r.
// What the backward does not do, on purpose:
// - no base weight gradient is ever formed: only activation gradients flow through the frozen matrices;
// - no backward into the embedding, and none below what the lowest layer's adapters need;
// - the LM head runs only over rows whose next label is scored (prompt tokens are −100 by default).
// Memory: every layer's internals are kept from the forward sweep when they fit `activationBudgetBytes`;
// otherwise only layer inputs are kept and each layer is re-run forward (same dropout masks) in the backward.
import Foundation
import LlamaModel
import TensorCore

/// One layer's forward state: the block's internals, and the adapters' own (per target, in config order).
final class LayerCache {
    let internals: LayerInternals
    let u: [FloatBuffer]          // per target: dropout(x) Aᵀ [N × r]
    let masks: [DropoutBits]      // per target: the dropout mask of its input (unused without dropout)
    init(geometry g: BlockGeometry, shape s: LayerShape, config c: LlamaConfig, rank: Int, targets: Int, pool: BufferPool) {
        internals = LayerInternals(shape: s, config: c, geometry: g, allocate: pool.take)
        u = (0..<targets).map { _ in pool.take(g.tokens * rank) }
        masks = (0..<targets).map { _ in DropoutBits() }
    }

    static func bytes(geometry g: BlockGeometry, shape s: LayerShape, config c: LlamaConfig, rank: Int, targets: Int) -> Int {
        LayerInternals.bytes(s, config: c, geometry: g) + 4 * targets * g.tokens * rank
    }
}

/// Σ NLL over the scored predictions of a batch, and how many there were; with a teacher also Σ T²·KL over the
/// same predictions (Distillation.swift).
public struct LossSum: Sendable, Equatable {
    public var nll: Double
    public var predictions: Int
    public var kd: Double
    public init(nll: Double, predictions: Int, kd: Double = 0) {
        self.nll = nll
        self.predictions = predictions
        self.kd = kd
    }
    public var mean: Double { predictions > 0 ? nll / Double(predictions) : .nan }
    public static func + (a: LossSum, b: LossSum) -> LossSum {
        LossSum(nll: a.nll + b.nll, predictions: a.predictions + b.predictions, kd: a.kd + b.kd)
    }
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
    /// The layer code every pass runs; the adapters attach to its products through an `AdapterHook`.
    let block: TransformerBlock

    /// `compute`: the arithmetic of the frozen base's products (bf16: packed once here, forward and input-gradient
    /// layouts; throws `ComputeUnavailable` on a CPU without native bf16). Adapters, their gradients and the
    /// optimizer stay fp32 either way.
    public init(base: LlamaWeights, adapters: LoRAAdapters, compute: ComputeType = .fp32) throws {
        try adapters.checkFits(base.config)
        self.base = base
        self.adapters = adapters
        block = TransformerBlock(config: base.config)
        block.bf16 = try BF16Base.make(base, compute: compute, backward: true)
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
    /// returns the batch's NLL sum. `dropoutSeed` keys this pass's masks (ignored when dropout is 0). With a
    /// `teacher` the summed loss is the KD mix of Distillation.swift and the KD sum is returned too.
    @discardableResult
    public func accumulateGradients(_ batch: TokenBatch, lossDivisor: Double, dropoutSeed: UInt64,
                                    teacher: Teacher? = nil) throws -> LossSum {
        guard lossDivisor > 0 else { throw LoRAError.invalidInput("loss divisor must be positive") }
        return try run(batch, lossDivisor: lossDivisor, dropoutSeed: adapters.config.dropout > 0 ? dropoutSeed : nil,
                       backward: true, teacher: teacher)
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
        block.ensureRope(seqLen)
        var out = [Float](repeating: 0, count: n * v)
        defer { pool.recycle() }
        adapters.parameters.withUnsafeBufferPointer { P in
            let geo = BlockGeometry(batch: batch, seqLen: seqLen)
            let x = embed(tb.tokens, n: n)
            let next = pool.take(n * d), h = pool.take(n * d)
            let cache = maxCache(geo)
            let hook = AdapterHook(pass: self, P: P.baseAddress!, seed: nil, scratch: pool.take(n * maxInFeatures), du: nil)
            var cur = x
            var nxt = next
            for l in 0..<config.numLayers {
                forwardLayer(l, x: cur, out: nxt, cache: cache, h: h, hook: hook, geo: geo)
                swap(&cur, &nxt)
            }
            base.finalNorm.withUnsafeBufferPointer { w in
                Kernels.rmsNorm(cur.p, weight: w.baseAddress!, out: h.p, rows: n, dim: d, eps: config.rmsNormEps)
            }
            out.withUnsafeMutableBufferPointer { o in block.lmHead(base, h.p, rows: n, logits: o.baseAddress!) }
        }
        return out
    }

    // MARK: - the pass

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
    func maxCache(_ g: BlockGeometry) -> LayerCache {
        let ls = config.layers
        let s = LayerShape(numHeads: ls.map(\.numHeads).max()!, numKVHeads: ls.map(\.numKVHeads).max()!,
                           intermediateSize: ls.map(\.intermediateSize).max()!)
        return LayerCache(geometry: g, shape: s, config: config, rank: adapters.config.rank, targets: targets.count,
                          pool: pool)
    }

    func embed(_ tokens: [Int32], n: Int) -> FloatBuffer {
        let d = config.hiddenSize
        let x = pool.take(n * d)
        base.embed.withUnsafeBufferPointer { e in
            for t in 0..<n { (x.p + t * d).update(from: e.baseAddress! + Int(tokens[t]) * d, count: d) }
        }
        return x
    }

    private func run(_ tb: TokenBatch, lossDivisor: Double, dropoutSeed: UInt64?, backward: Bool,
                     teacher: Teacher? = nil) throws -> LossSum {
        try validate(tb)
        let taught = try teacher.map { ($0, try $0.hiddenStates(tb)) }     // no gradient: a plain forward
        let c = config, d = c.hiddenSize, L = c.numLayers
        let geo = BlockGeometry(batch: tb.batch, seqLen: tb.seqLen), n = geo.tokens
        block.ensureRope(tb.seqLen)
        defer { pool.recycle() }
        return adapters.parameters.withUnsafeBufferPointer { Pbuf -> LossSum in
            let P = Pbuf.baseAddress!
            // inputs[l] = input of layer l; inputs[L] = the last layer's output (before the final norm).
            var inputs = [embed(tb.tokens, n: n)]
            let h = pool.take(n * d)
            let rank = adapters.config.rank
            let hook = AdapterHook(pass: self, P: P, seed: dropoutSeed, scratch: pool.take(n * maxInFeatures),
                                   du: backward ? pool.take(n * rank) : nil)
            let perLayer = c.layers.map {
                LayerCache.bytes(geometry: geo, shape: $0, config: c, rank: rank, targets: targets.count)
            }
            let keepAll = backward && perLayer.reduce(0, +) <= activationBudgetBytes
            var caches: [LayerCache?] = Array(repeating: nil, count: L)
            let shared = keepAll ? nil : maxCache(geo)
            var spare: FloatBuffer?     // forward only: the residual stream alternates between two buffers
            for l in 0..<L {
                let out = backward ? pool.take(n * d) : (spare ?? pool.take(n * d))
                let cache = keepAll
                    ? LayerCache(geometry: geo, shape: c.layers[l], config: c, rank: rank, targets: targets.count, pool: pool)
                    : shared!
                forwardLayer(l, x: inputs.last!, out: out, cache: cache, h: h, hook: hook, geo: geo)
                if keepAll { caches[l] = cache }
                if backward { inputs.append(out) } else { spare = inputs[0]; inputs = [out] }
            }
            let xFinal = inputs.last!
            base.finalNorm.withUnsafeBufferPointer { w in
                Kernels.rmsNorm(xFinal.p, weight: w.baseAddress!, out: h.p, rows: n, dim: d, eps: c.rmsNormEps)
            }
            let dx = backward ? pool.take(n * d) : nil
            let loss = lossAndGradient(hidden: h.p, batch: tb, divisor: lossDivisor, dHidden: dx?.p, teacher: taught)
            defer { lastActivationBytes = pool.bytesTaken }
            guard let dx else { return loss }

            finalNormBackward(xFinal: xFinal, dx: dx, rows: n)
            let bw = BackwardScratch(tokens: n, config: c, pool: pool)
            for l in stride(from: L - 1, through: 0, by: -1) {
                let cache: LayerCache
                if let kept = caches[l] {
                    cache = kept
                    caches[l] = nil
                } else {
                    cache = shared!
                    forwardLayer(l, x: inputs[l], out: bw.discard, cache: cache, h: h, hook: hook, geo: geo)
                }
                hook.cache = cache
                block.backward(base.layers[l], layer: l, x: inputs[l].p, internals: cache.internals, dx: dx.p, h: h.p,
                               buffers: bw.buffers, geometry: geo, hook: hook, needInputGradient: l > 0)
            }
            return loss
        }
    }

    /// Final norm backward: on entry dx holds ∂/∂(normed hidden), on exit ∂/∂x_L (x_L = `xFinal`).
    func finalNormBackward(xFinal: FloatBuffer, dx: FloatBuffer, rows n: Int) {
        let c = config, d = c.hiddenSize
        let dNormed = pool.take(n * d)
        dNormed.p.update(from: dx.p, count: n * d)
        base.finalNorm.withUnsafeBufferPointer { w in
            Kernels.rmsNormBackward(x: xFinal.p, weight: w.baseAddress!, dy: dNormed.p, dx: dx.p, rows: n, dim: d,
                                    eps: c.rmsNormEps, accumulate: false)
        }
    }

    /// out = layer l applied to x, the internals and the adapters' state into `cache`.
    func forwardLayer(_ l: Int, x: FloatBuffer, out: FloatBuffer, cache: LayerCache, h: FloatBuffer, hook: AdapterHook,
                      geo: BlockGeometry) {
        hook.cache = cache
        block.forward(base.layers[l], layer: l, x: x.p, out: out.p, internals: cache.internals, h: h.p, geometry: geo,
                      hook: hook)
    }

    // MARK: - adapters

    func slotIndex(_ l: Int, _ t: LoRATarget) -> (slot: AdapterSlot, index: Int)? {
        guard let s = adapters.slot(layer: l, target: t) else { return nil }
        return (s, targets.firstIndex(of: t)!)
    }

    /// u = dropout(x) Aᵀ [N × r]; out[:, 0..<outF] (ld ldOut) += s · u Bᵀ.
    func adapterForward(_ s: AdapterSlot, x: UnsafePointer<Float>, n: Int, u: UnsafeMutablePointer<Float>,
                        out: UnsafeMutablePointer<Float>, ldOut: Int, mask: DropoutBits?, scratch: FloatBuffer, P: UnsafePointer<Float>) {
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
                         scratch: FloatBuffer, du: FloatBuffer, P: UnsafePointer<Float>) {
        let r = adapters.config.rank, scale = adapters.config.scale
        BLAS.gemm(m: s.outFeatures, n: r, k: n, a: dY, lda: ldY, b: u, bTransposed: false, c: grads + s.bOffset,
                  alpha: scale, beta: 1, aTransposed: true)
        BLAS.gemm(m: n, n: r, k: s.outFeatures, a: dY, lda: ldY, b: P + s.bOffset, bTransposed: false, c: du.p,
                  alpha: scale)
        var input = x
        if let mask {
            mask.apply(x, to: scratch.p)
            input = UnsafePointer(scratch.p)
        }
        BLAS.gemm(m: r, n: s.inFeatures, k: n, a: du.p, b: input, bTransposed: false, c: grads + s.aOffset, beta: 1,
                  aTransposed: true)
        guard let dX else { return }
        if let mask {
            BLAS.gemm(m: n, n: s.inFeatures, k: r, a: du.p, b: P + s.aOffset, bTransposed: false, c: scratch.p)
            mask.accumulate(scratch.p, into: dX)
        } else {
            BLAS.gemm(m: n, n: s.inFeatures, k: r, a: du.p, b: P + s.aOffset, bTransposed: false, c: dX, beta: 1)
        }
    }

    // MARK: - loss

    /// Σ NLL of the scored predictions. With dHidden, also writes ∂(Σ NLL / divisor)/∂hidden [N × d] (zero on
    /// unscored rows). Only scored rows go through the LM head, gathered ≈512 at a time. With a teacher (and its
    /// hidden states [N × d_teacher]) the loss is the KD mix: its logits for the same rows come chunk by chunk.
    func lossAndGradient(hidden: UnsafePointer<Float>, batch tb: TokenBatch, divisor: Double,
                         dHidden: UnsafeMutablePointer<Float>?, teacher: (Teacher, [Float])? = nil) -> LossSum {
        let c = config, v = c.vocabSize, d = c.hiddenSize
        let scored = tb.scoredRows
        if let dHidden { dHidden.update(repeating: 0, count: tb.batch * tb.seqLen * d) }
        guard !scored.isEmpty else { return LossSum(nll: 0, predictions: 0) }
        let chunk = min(512, scored.count)
        let rows = pool.take(chunk * d), logits = pool.take(chunk * v), dRows = pool.take(chunk * d)
        var nll = [Double](repeating: 0, count: scored.count), kd = nll
        let tLogits = teacher.map { _ in pool.take(chunk * v) }
        let tRows = teacher.map { pool.take(chunk * $0.0.runner.config.hiddenSize) }
        let inv = Float(1 / divisor)
        var first = 0
        while first < scored.count {
            let m = min(chunk, scored.count - first)
            for i in 0..<m { (rows.p + i * d).update(from: hidden + scored[first + i].row * d, count: d) }
            block.lmHead(base, rows.p, rows: m, logits: logits.p)
            let wantGrad = dHidden != nil
            if let (t, th) = teacher, let tLogits, let tRows {
                th.withUnsafeBufferPointer { thp in
                    t.logits(hidden: thp.baseAddress!, rows: scored[first..<first + m].map(\.row)[...], gather: tRows.p,
                             into: tLogits.p)
                }
                nll.withUnsafeMutableBufferPointer { ceOut in kd.withUnsafeMutableBufferPointer { kdOut in
                    let o = ceOut.baseAddress! + first, ko = kdOut.baseAddress! + first, f = first
                    Kernels.parallelRows(m, minRowsPerChunk: 8) { range in
                        for i in range {
                            (o[i], ko[i]) = DistillationLoss.row(
                                student: logits.p + i * v, teacher: tLogits.p + i * v, count: v,
                                target: Int(scored[f + i].target), settings: t.settings, gradientScale: wantGrad ? inv : nil)
                        }
                    }
                } }
            } else { nll.withUnsafeMutableBufferPointer { out in
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
            } }
            if let dHidden {
                block.lmHeadBack(base, logits.p, rows: m, dH: dRows.p)
                for i in 0..<m { (dHidden + scored[first + i].row * d).update(from: dRows.p + i * d, count: d) }
            }
            first += m
        }
        return LossSum(nll: nll.reduce(0, +), predictions: scored.count, kd: kd.reduce(0, +))
    }
}

/// Work buffers of the backward sweep, sized for the widest layer.
final class BackwardScratch {
    let dAct, dgu, dh, dAttn, dqkv, discard: FloatBuffer
    init(tokens n: Int, config c: LlamaConfig, pool: BufferPool) {
        let hd = c.headDim
        let maxI = c.layers.map(\.intermediateSize).max()!
        dAct = pool.take(n * maxI)
        dgu = pool.take(n * 2 * maxI)
        dh = pool.take(n * c.hiddenSize)
        dAttn = pool.take(n * c.layers.map { $0.numHeads * hd }.max()!)
        dqkv = pool.take(n * c.layers.map { ($0.numHeads + 2 * $0.numKVHeads) * hd }.max()!)
        discard = pool.take(n * c.hiddenSize)
    }
    var buffers: BackwardBuffers { BackwardBuffers(dAct: dAct.p, dgu: dgu.p, dh: dh.p, dAttn: dAttn.p, dqkv: dqkv.p) }
}

/// The adapters' share of a layer: y += s·(dropout(x) Aᵀ) Bᵀ on each adapted product in the forward, and in the
/// backward the adapter gradients (gB, gA) and the adapters' share of the input gradient. q, k, v sit at their
/// columns of the fused q|k|v product, gate and up at theirs of gate|up.
final class AdapterHook: ProjectionHook {
    unowned let pass: LoRAPass
    let P: UnsafePointer<Float>      // the flat adapter parameters
    let seed: UInt64?                // dropout masks' key (nil: no dropout)
    let scratch: FloatBuffer         // [N × max in]: a masked input, or a masked input gradient
    let du: FloatBuffer?             // [N × r] (backward only)
    /// The layer being run: where u and the masks are kept.
    var cache: LayerCache!

    init(pass: LoRAPass, P: UnsafePointer<Float>, seed: UInt64?, scratch: FloatBuffer, du: FloatBuffer?) {
        self.pass = pass; self.P = P; self.seed = seed; self.scratch = scratch; self.du = du
    }

    /// The targets of a product with their first output column.
    func parts(_ p: Projection, _ s: LayerShape) -> [(LoRATarget, Int)] {
        let hd = pass.config.headDim
        switch p {
        case .qkv: return [(.q, 0), (.k, s.numHeads * hd), (.v, (s.numHeads + s.numKVHeads) * hd)]
        case .o: return [(.o, 0)]
        case .gateUp: return [(.gate, 0), (.up, s.intermediateSize)]
        case .down: return [(.down, 0)]
        }
    }

    func forward(_ p: Projection, layer l: Int, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, ld: Int,
                 shape: LayerShape, geometry g: BlockGeometry) {
        for (t, col) in parts(p, shape) {
            guard let (s, ti) = pass.slotIndex(l, t) else { continue }
            var mask: DropoutBits?
            if let seed {      // this forward's mask, drawn into the cache for the backward
                cache.masks[ti].fill(DropoutMask(p: pass.adapters.config.dropout, seed: seed, layer: l, target: ti),
                                     rows: g.tokens, cols: s.inFeatures)
                mask = cache.masks[ti]
            }
            pass.adapterForward(s, x: input, n: g.tokens, u: cache.u[ti].p, out: output + col, ldOut: ld, mask: mask,
                                scratch: scratch, P: P)
        }
    }

    func wantsGradient(_ p: Projection, layer l: Int) -> Bool {
        parts(p, pass.config.layers[l]).contains { pass.slotIndex(l, $0.0) != nil }
    }

    func backward(_ p: Projection, layer l: Int, input: UnsafePointer<Float>, dY: UnsafePointer<Float>, ld: Int,
                  dX: UnsafeMutablePointer<Float>?, shape: LayerShape, geometry g: BlockGeometry) {
        for (t, col) in parts(p, shape) {
            guard let (s, ti) = pass.slotIndex(l, t) else { continue }
            pass.adapterBackward(s, x: input, n: g.tokens, u: cache.u[ti].p, dY: dY + col, ldY: ld, dX: dX,
                                 mask: seed == nil ? nil : cache.masks[ti], scratch: scratch, du: du!, P: P)
        }
    }
}
