// Gradients of the batch-mean next-token cross-entropy with respect to the linear weights of a range of
// layers, in fp32 over BLAS. What it deliberately does not do is where the time and memory go elsewhere:
// - layers below the range run forward only (no activations kept, no backward through them);
// - no weight gradients outside the range, none for the (tied) LM head, embeddings or norms;
// - activations are bounded by recomputation: only each scored layer's input [N × d] is kept; during the
//   backward sweep a layer's internals are recomputed from it, used, and dropped;
// - the Fisher diagonal needs no extra passes: sample j's gradient is B·(dYⱼᵀ Xⱼ) restricted to its rows
//   (samples do not interact and the batch loss is the mean of the per-sample means), so each weight
//   gradient product is split by sample and the squares are accumulated on the way.
import Foundation
import TensorCore

public final class GradientPass {
    public let runner: LlamaRunner
    /// Keep every scored layer's internals from the forward sweep (no recomputation in the backward sweep) when
    /// they fit in this many bytes; otherwise keep only layer inputs and recompute.
    public var activationBudgetBytes = 2 << 30
    public var weights: LlamaWeights { runner.weights }
    // internal (not private) so the pipeline's per-stage pass (StageGradients.swift) can reuse the pieces below
    var bytes = 0
    var peakBytes = 0
    var block: TransformerBlock { runner.block }
    private lazy var hook = WeightGradientHook(pass: self)

    public init(weights: LlamaWeights) {
        runner = LlamaRunner(weights: weights)
    }

    func buffer(_ count: Int) -> FloatBuffer {
        bytes += count * 4
        peakBytes = max(peakBytes, bytes)
        return FloatBuffer(count)
    }

    func release(_ b: FloatBuffer) { bytes -= b.count * 4 }

    /// Runs forward over [batch × seqLen] tokens and backward down to `layers.lowerBound`, returning the loss and
    /// ∂loss/∂W of q|k|v, o, gate|up and down for every layer in `layers` (and the Fisher diagonal if asked).
    public func gradients(tokens: [Int32], batch: Int, seqLen: Int, layers: Range<Int>, fisher: Bool) throws
        -> GradientResult
    {
        let c = runner.config, d = c.hiddenSize, n = batch * seqLen
        try runner.validate(tokens: tokens, batch: batch, seqLen: seqLen)
        guard seqLen >= 2 else { throw ModelError.invalidInput("gradients: sequences need at least 2 tokens") }
        guard !layers.isEmpty, layers.lowerBound >= 0, layers.upperBound <= c.numLayers else {
            throw ModelError.invalidInput("gradients: layer range \(layers) outside 0..<\(c.numLayers)")
        }
        bytes = 0
        peakBytes = 0
        let ws = runner.prepare(tokens: tokens, batch: batch, seqLen: seqLen)
        bytes = ws.bytes
        peakBytes = bytes
        // Forward: below the range, nothing is kept; from the range up, each layer's input.
        for l in 0..<layers.lowerBound { forwardLayer(l, ws: ws, batch: batch, seqLen: seqLen) }
        var inputs: [FloatBuffer] = []
        var caches: [LayerInternals?] = []
        let cacheAll = cacheBytes(layers.lowerBound..<c.numLayers, batch: batch, seqLen: seqLen) <= activationBudgetBytes
        for l in layers.lowerBound..<c.numLayers {
            let saved = buffer(n * d)
            saved.p.update(from: ws.x.p, count: n * d)
            inputs.append(saved)
            caches.append(cacheAll ? forwardKeeping(l, ws: ws, batch: batch, seqLen: seqLen) : nil)
            if !cacheAll { forwardLayer(l, ws: ws, batch: batch, seqLen: seqLen) }
        }
        let xFinal = buffer(n * d)
        xFinal.p.update(from: ws.x.p, count: n * d)
        runner.norm(weights.finalNorm, ws: ws, rows: n)

        // Loss and its gradient at the final hidden state.
        let dx = buffer(n * d)
        let loss = lossBackward(hidden: ws.h.p, tokens: tokens, batch: batch, seqLen: seqLen, dHidden: dx.p)
        let dNormed = buffer(n * d)
        dNormed.p.update(from: dx.p, count: n * d)
        weights.finalNorm.withUnsafeBufferPointer { w in
            Kernels.rmsNormBackward(x: xFinal.p, weight: w.baseAddress!, dy: dNormed.p, dx: dx.p, rows: n, dim: d,
                                    eps: c.rmsNormEps, accumulate: false)
        }
        release(dNormed); release(xFinal)

        var grads: [Int: LayerGradients] = [:]
        var fishers: [Int: LayerGradients]? = fisher ? [:] : nil
        for l in stride(from: c.numLayers - 1, through: layers.lowerBound, by: -1) {
            let wantWeights = layers.contains(l)
            var g = wantWeights ? LayerGradients(zerosLike: weights.layers[l]) : nil
            var f = wantWeights && fisher ? LayerGradients(zerosLike: weights.layers[l]) : nil
            let cache = caches[l - layers.lowerBound]
            caches[l - layers.lowerBound] = nil
            if let cache { bytes -= cache.bytes }
            backwardLayer(l, input: inputs[l - layers.lowerBound], ws: ws, batch: batch, seqLen: seqLen, dx: dx, cache: cache,
                          grads: &g, fisher: &f, needInputGradient: l > layers.lowerBound)
            if let g { grads[l] = g }
            if let f { fishers?[l] = f }
        }
        return GradientResult(loss: loss, gradients: grads, fisher: fishers, peakActivationBytes: peakBytes)
    }

    func forwardLayer(_ l: Int, ws: Workspace, batch: Int, seqLen: Int) {
        runner.forwardLayer(weights.layers[l], l, ws: ws, batch: batch, seqLen: seqLen)
    }

    /// Bytes the internals of `layers` take at this batch geometry.
    func cacheBytes(_ layers: Range<Int>, batch: Int, seqLen: Int) -> Int {
        let g = BlockGeometry(batch: batch, seqLen: seqLen)
        return layers.reduce(0) { $0 + LayerInternals.bytes(weights.layers[$1].shape, config: runner.config, geometry: g) }
    }

    /// Runs layer l forward on ws.x (in place) and keeps what its backward needs.
    func forwardKeeping(_ l: Int, ws: Workspace, batch: Int, seqLen: Int) -> LayerInternals {
        let g = BlockGeometry(batch: batch, seqLen: seqLen), lw = weights.layers[l]
        let kept = LayerInternals(shape: lw.shape, config: runner.config, geometry: g, allocate: buffer)
        block.forward(lw, layer: l, x: ws.x.p, out: ws.x.p, internals: kept, h: ws.h.p, geometry: g)
        return kept
    }

    // MARK: - loss

    /// Batch-mean next-token cross-entropy over batch·(seqLen − 1) predictions; writes ∂loss/∂hidden into
    /// dHidden [N × d] (zero on each sequence's last row). The LM head runs in chunks of ≈512 rows.
    func lossBackward(hidden: UnsafePointer<Float>, tokens: [Int32], batch: Int, seqLen: Int,
                              dHidden: UnsafeMutablePointer<Float>) -> Double {
        let c = runner.config, v = c.vocabSize, d = c.hiddenSize
        let count = Float(batch * (seqLen - 1))
        let perChunk = max(1, min(batch, 512 / seqLen))
        let logits = buffer(perChunk * seqLen * v)
        defer { release(logits) }
        var nll = [Double](repeating: 0, count: batch * seqLen)
        let head = weights.lmHead ?? weights.embed
        var first = 0
        while first < batch {
            let seqs = min(perChunk, batch - first), rows = seqs * seqLen, row0 = first * seqLen
            head.withUnsafeBufferPointer { w in
                BLAS.gemm(m: rows, n: v, k: d, a: hidden + row0 * d, b: w.baseAddress!, bTransposed: true, c: logits.p)
            }
            nll.withUnsafeMutableBufferPointer { out in
                let o = out.baseAddress! + row0, base = logits.p
                Kernels.parallelRows(rows, minRowsPerChunk: 8) { range in
                    for r in range {
                        let row = base + r * v
                        if r % seqLen == seqLen - 1 { row.update(repeating: 0, count: v); continue }
                        let target = Int(tokens[row0 + r + 1])
                        let mx = VectorMath.max(row, v), targetLogit = row[target]
                        let sum = VectorMath.expInPlace(row, v, shift: mx)
                        o[r] = Double(Foundation.log(sum)) + Double(mx) - Double(targetLogit)
                        // softmax − onehot, over the number of predictions
                        VectorMath.scale(row, 1 / (sum * count), row, v)
                        row[target] -= 1 / count
                    }
                }
            }
            // d hidden = d logits · head  ([rows × V] · [V × d])
            head.withUnsafeBufferPointer { w in
                BLAS.gemm(m: rows, n: d, k: v, a: logits.p, b: w.baseAddress!, bTransposed: false,
                          c: dHidden + row0 * d)
            }
            first += seqs
        }
        return nll.reduce(0, +) / Double(count)
    }

    // MARK: - one layer

    /// gW [out × in] += dYᵀ X over all rows; with `fisher`, also F += B · Σⱼ (dYⱼᵀ Xⱼ)² per sample j.
    func weightGradient(dY: UnsafePointer<Float>, ldY: Int, x: UnsafePointer<Float>, ldX: Int, out: Int, in: Int,
                                batch: Int, seqLen: Int, grad: inout [Float], fisher: inout [Float]?) {
        let n = batch * seqLen
        grad.withUnsafeMutableBufferPointer { g in
            if fisher == nil {
                BLAS.gemm(m: out, n: `in`, k: n, a: dY, lda: ldY, b: x, ldb: ldX, bTransposed: false, c: g.baseAddress!,
                          beta: 1, aTransposed: true)
                return
            }
            let tmp = buffer(out * `in`)
            defer { release(tmp) }
            fisher!.withUnsafeMutableBufferPointer { f in
                for b in 0..<batch {
                    BLAS.gemm(m: out, n: `in`, k: seqLen, a: dY + b * seqLen * ldY, lda: ldY, b: x + b * seqLen * ldX,
                              ldb: ldX, bTransposed: false, c: tmp.p, aTransposed: true)
                    let gp = g.baseAddress!, fp = f.baseAddress!, tp = tmp.p, scale = Float(batch)
                    Kernels.parallelRows(out, minRowsPerChunk: 16) { range in
                        for i in range.lowerBound * `in`..<range.upperBound * `in` {
                            gp[i] += tp[i]
                            fp[i] += scale * tp[i] * tp[i]
                        }
                    }
                }
            }
        }
    }


    /// Backward through layer l. On entry dx holds ∂loss/∂(layer output); on exit ∂loss/∂(layer input)
    /// (unless `needInputGradient` is false, the lowest scored layer). The internals are the ones kept by the
    /// forward sweep, or recomputed from the layer's input. With `grads`, the weight gradients (and Fisher
    /// diagonal) of the layer are added into them.
    func backwardLayer(_ l: Int, input: FloatBuffer, ws: Workspace, batch: Int, seqLen: Int, dx: FloatBuffer,
                       cache: LayerInternals? = nil, grads: inout LayerGradients?, fisher: inout LayerGradients?,
                       needInputGradient: Bool) {
        let c = runner.config, lw = weights.layers[l], s = lw.shape, g = BlockGeometry(batch: batch, seqLen: seqLen)
        let n = g.tokens, d = c.hiddenSize, hd = c.headDim
        let internals: LayerInternals
        if let cache {
            internals = cache
        } else {
            let e = LayerInternals.elements(s, config: c, geometry: g), w = ws.internals
            internals = LayerInternals(qkv: w.qkv, probs: buffer(e.probs), attn: w.attn, xMid: buffer(e.xMid), gu: w.gu,
                                       act: w.act)
            block.forward(lw, layer: l, x: input.p, out: ws.x.p, internals: internals, h: ws.h.p, geometry: g)
        }
        defer { if cache == nil { release(internals.probs!); release(internals.xMid) } }
        let dAct = buffer(n * s.intermediateSize), dgu = buffer(n * 2 * s.intermediateSize), dh = buffer(n * d)
        let dA = buffer(n * s.numHeads * hd), dqkv = buffer(n * (s.numHeads + 2 * s.numKVHeads) * hd)
        defer { release(dAct); release(dgu); release(dh); release(dA); release(dqkv) }
        // The hook owns the gradients while the block runs (moved, not copied: the arrays stay unique).
        hook.grads = grads; grads = nil
        hook.fisher = fisher; fisher = nil
        block.backward(lw, layer: l, x: input.p, internals: internals, dx: dx.p, h: ws.h.p,
                       buffers: BackwardBuffers(dAct: dAct.p, dgu: dgu.p, dh: dh.p, dAttn: dA.p, dqkv: dqkv.p),
                       geometry: g, hook: hook, needInputGradient: needInputGradient)
        grads = hook.grads; hook.grads = nil
        fisher = hook.fisher; hook.fisher = nil
    }
}

/// The gradient pass's share of a layer's backward: ∂loss/∂W of each product (and the Fisher diagonal) into the
/// layer's gradients, when the layer is scored.
final class WeightGradientHook: ProjectionHook {
    unowned let pass: GradientPass
    var grads: LayerGradients?
    var fisher: LayerGradients?

    init(pass: GradientPass) { self.pass = pass }

    func forward(_ p: Projection, layer: Int, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, ld: Int,
                 shape: LayerShape, geometry: BlockGeometry) {}

    func wantsGradient(_ p: Projection, layer: Int) -> Bool { grads != nil }

    func backward(_ p: Projection, layer: Int, input: UnsafePointer<Float>, dY: UnsafePointer<Float>, ld: Int,
                  dX: UnsafeMutablePointer<Float>?, shape s: LayerShape, geometry g: BlockGeometry) {
        let hd = pass.runner.config.headDim, d = pass.runner.config.hiddenSize
        let inFeatures: Int
        switch p {
        case .qkv, .gateUp: inFeatures = d
        case .o: inFeatures = s.numHeads * hd
        case .down: inFeatures = s.intermediateSize
        }
        let keyPath: WritableKeyPath<LayerGradients, [Float]>
        switch p {
        case .qkv: keyPath = \.wqkv
        case .o: keyPath = \.wo
        case .gateUp: keyPath = \.wGateUp
        case .down: keyPath = \.wDown
        }
        var f = fisher?[keyPath: keyPath]
        if fisher != nil { fisher![keyPath: keyPath] = [] }      // unique while it is written
        pass.weightGradient(dY: dY, ldY: ld, x: input, ldX: inFeatures, out: ld, in: inFeatures, batch: g.batch,
                            seqLen: g.seqLen, grad: &grads![keyPath: keyPath], fisher: &f)
        if let f { fisher![keyPath: keyPath] = f }
    }
}
