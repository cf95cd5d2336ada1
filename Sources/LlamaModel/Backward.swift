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
    /// ∂loss/∂W of q|k|v, o, gate|up and down for every layer in `layers` (and the Fisher diagonal if asked): the
    /// whole model as one pipeline stage.
    public func gradients(tokens: [Int32], batch: Int, seqLen: Int, layers: Range<Int>, fisher: Bool) throws
        -> GradientResult
    {
        let c = runner.config
        guard !layers.isEmpty, layers.lowerBound >= 0, layers.upperBound <= c.numLayers else {
            throw ModelError.invalidInput("gradients: layer range \(layers) outside 0..<\(c.numLayers)")
        }
        let stage = StageGradientPass(stage: .whole(weights), scored: layers, pass: self)
        let cacheAll = cacheBytes(layers.lowerBound..<c.numLayers, batch: batch, seqLen: seqLen) <= activationBudgetBytes
        stage.cachedLayers = cacheAll ? c.numLayers : 0
        _ = try stage.forward(tokens: tokens, batch: batch, seqLen: seqLen, input: nil)
        try stage.lossBackward()
        _ = try stage.backward(outputGradient: nil, fisher: fisher)
        return stage.result()
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

        let biasPath: WritableKeyPath<LayerGradients, [Float]>
        switch p {
        case .qkv: biasPath = \.bqkv
        case .o: biasPath = \.bo
        case .gateUp: biasPath = \.bGateUp
        case .down: biasPath = \.bDown
        }
        guard !grads![keyPath: biasPath].isEmpty else { return }
        var fb = fisher?[keyPath: biasPath]
        if fisher != nil { fisher![keyPath: biasPath] = [] }
        Self.biasGradient(dY: dY, ld: ld, batch: g.batch, seqLen: g.seqLen, grad: &grads![keyPath: biasPath], fisher: &fb)
        if let fb { fisher![keyPath: biasPath] = fb }
    }

    /// gb[j] += Σ over all rows of dY[·, j] (the bias gradient); with `fisher`, F[j] += B · Σ_samples (Σ_rows of the
    /// sample dY[·, j])², as `GradientPass.weightGradient` does for weights. Sums in Double.
    static func biasGradient(dY: UnsafePointer<Float>, ld: Int, batch: Int, seqLen: Int, grad: inout [Float],
                             fisher: inout [Float]?) {
        let width = grad.count
        var sample = [Double](repeating: 0, count: width), total = [Double](repeating: 0, count: width)
        var squares: [Double]? = fisher == nil ? nil : [Double](repeating: 0, count: width)
        for b in 0..<batch {
            for j in 0..<width { sample[j] = 0 }
            for t in 0..<seqLen {
                let row = dY + (b * seqLen + t) * ld
                for j in 0..<width { sample[j] += Double(row[j]) }
            }
            for j in 0..<width { total[j] += sample[j] }
            if squares != nil { for j in 0..<width { squares![j] += Double(batch) * sample[j] * sample[j] } }
        }
        for j in 0..<width { grad[j] += Float(total[j]) }
        if let squares { for j in 0..<width { fisher![j] += Float(squares[j]) } }
    }
}
