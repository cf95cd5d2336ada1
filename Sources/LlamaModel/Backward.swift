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

/// A layer's forward internals kept from the forward sweep, so its backward needs no recomputation.
final class LayerActivations {
    let probs, qkv, attn, xMid, gu, act: FloatBuffer
    init(probs: FloatBuffer, qkv: FloatBuffer, attn: FloatBuffer, xMid: FloatBuffer, gu: FloatBuffer, act: FloatBuffer) {
        self.probs = probs; self.qkv = qkv; self.attn = attn; self.xMid = xMid; self.gu = gu; self.act = act
    }
    var bytes: Int { 4 * (probs.count + qkv.count + attn.count + xMid.count + gu.count + act.count) }
}

public final class GradientPass {
    public let runner: LlamaRunner
    /// Keep every scored layer's internals from the forward sweep (no recomputation in the backward sweep) when
    /// they fit in this many bytes; otherwise keep only layer inputs and recompute.
    public var activationBudgetBytes = 2 << 30
    public var weights: LlamaWeights { runner.weights }
    // internal (not private) so the pipeline's per-stage pass (StageGradients.swift) can reuse the pieces below
    var bytes = 0
    var peakBytes = 0

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
        bytes = workspaceBytes(ws)
        peakBytes = bytes
        // Forward: below the range, nothing is kept; from the range up, each layer's input.
        for l in 0..<layers.lowerBound { forwardLayer(l, ws: ws, batch: batch, seqLen: seqLen) }
        var inputs: [FloatBuffer] = []
        var caches: [LayerActivations?] = []
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

    func workspaceBytes(_ ws: Workspace) -> Int {
        4 * (ws.x.count + ws.h.count + ws.qkv.count + ws.attn.count + ws.gu.count + ws.act.count)
    }

    func forwardLayer(_ l: Int, ws: Workspace, batch: Int, seqLen: Int,
                              probabilities: UnsafeMutablePointer<Float>? = nil) {
        runner.attentionBlock(weights.layers[l], ws: ws, batch: batch, seqLen: seqLen, probabilities: probabilities)
        runner.mlpBlock(weights.layers[l], ws: ws, tokens: batch * seqLen)
    }

    /// Bytes the internals of `layers` take at this batch geometry.
    func cacheBytes(_ layers: Range<Int>, batch: Int, seqLen: Int) -> Int {
        layers.reduce(0) { $0 + Self.internalsBytes(weights.layers[$1].shape, config: runner.config, batch: batch, seqLen: seqLen) }
    }

    /// Bytes one layer's kept internals (`LayerActivations`) take: attention probabilities, q|k|v, the attention
    /// output, the mid-layer residual, gate|up and the activation.
    public static func internalsBytes(_ s: LayerShape, config c: LlamaConfig, batch: Int, seqLen: Int) -> Int {
        let n = batch * seqLen, d = c.hiddenSize, hd = c.headDim
        return 4 * (batch * s.numHeads * seqLen * seqLen + n * (s.numHeads + 2 * s.numKVHeads) * hd
            + n * s.numHeads * hd + n * d + 3 * n * s.intermediateSize)
    }

    /// Runs layer l forward and keeps what its backward needs.
    func forwardKeeping(_ l: Int, ws: Workspace, batch: Int, seqLen: Int) -> LayerActivations {
        let s = weights.layers[l].shape, hd = runner.config.headDim, n = batch * seqLen, d = runner.config.hiddenSize
        let a = LayerActivations(probs: buffer(batch * s.numHeads * seqLen * seqLen),
                                 qkv: buffer(n * (s.numHeads + 2 * s.numKVHeads) * hd), attn: buffer(n * s.numHeads * hd),
                                 xMid: buffer(n * d), gu: buffer(n * 2 * s.intermediateSize), act: buffer(n * s.intermediateSize))
        runner.attentionBlock(weights.layers[l], ws: ws, batch: batch, seqLen: seqLen, probabilities: a.probs.p)
        a.qkv.p.update(from: ws.qkv.p, count: a.qkv.count)
        a.attn.p.update(from: ws.attn.p, count: a.attn.count)
        a.xMid.p.update(from: ws.x.p, count: a.xMid.count)
        runner.mlpBlock(weights.layers[l], ws: ws, tokens: n)
        a.gu.p.update(from: ws.gu.p, count: a.gu.count)
        a.act.p.update(from: ws.act.p, count: a.act.count)
        return a
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
    private func weightGradient(dY: UnsafePointer<Float>, ldY: Int, x: UnsafePointer<Float>, ldX: Int, out: Int, in: Int,
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
    /// (unless `needInputGradient` is false, the lowest scored layer).
    func backwardLayer(_ l: Int, input: FloatBuffer, ws: Workspace, batch: Int, seqLen: Int, dx: FloatBuffer,
                               cache: LayerActivations? = nil, grads: inout LayerGradients?, fisher: inout LayerGradients?, needInputGradient: Bool) {
        let c = runner.config, lw = weights.layers[l]
        let d = c.hiddenSize, hd = c.headDim, n = batch * seqLen, eps = c.rmsNormEps
        let nq = lw.shape.numHeads, nkv = lw.shape.numKVHeads, inter = lw.shape.intermediateSize
        let width = (nq + 2 * nkv) * hd, qWidth = nq * hd

        // The layer's internals: kept from the forward sweep, or recomputed from its input.
        let probs: FloatBuffer, xMid: FloatBuffer
        if let cache {
            probs = cache.probs
            xMid = cache.xMid
            ws.qkv.p.update(from: cache.qkv.p, count: cache.qkv.count)
            ws.attn.p.update(from: cache.attn.p, count: cache.attn.count)
            ws.gu.p.update(from: cache.gu.p, count: cache.gu.count)
            ws.act.p.update(from: cache.act.p, count: cache.act.count)
            lw.postNorm.withUnsafeBufferPointer { w in
                Kernels.rmsNorm(xMid.p, weight: w.baseAddress!, out: ws.h.p, rows: n, dim: d, eps: eps)
            }
        } else {
            probs = buffer(batch * nq * seqLen * seqLen)
            xMid = buffer(n * d)
            ws.x.p.update(from: input.p, count: n * d)
            runner.attentionBlock(lw, ws: ws, batch: batch, seqLen: seqLen, probabilities: probs.p)
            xMid.p.update(from: ws.x.p, count: n * d)
            runner.mlpBlock(lw, ws: ws, tokens: n)      // ws.gu = gate|up, ws.act = silu(g)·u, ws.h = norm2(xMid)
        }
        defer { if cache == nil { release(probs); release(xMid) } }

        // MLP: y = xMid + act · Wdownᵀ.
        let dAct = buffer(n * inter), dgu = buffer(n * 2 * inter), dh = buffer(n * d)
        defer { release(dAct); release(dgu); release(dh) }
        if grads != nil {
            var fd = fisher?.wDown
            weightGradient(dY: dx.p, ldY: d, x: ws.act.p, ldX: inter, out: d, in: inter, batch: batch, seqLen: seqLen,
                           grad: &grads!.wDown, fisher: &fd)
            if let fd { fisher!.wDown = fd }
        }
        lw.wDown.withUnsafeBufferPointer { w in
            BLAS.gemm(m: n, n: inter, k: d, a: dx.p, b: w.baseAddress!, bTransposed: false, c: dAct.p)
        }
        Kernels.swigluBackward(ws.gu.p, dAct: dAct.p, dgu: dgu.p, rows: n, inner: inter)
        if grads != nil {
            var fg = fisher?.wGateUp
            weightGradient(dY: dgu.p, ldY: 2 * inter, x: ws.h.p, ldX: d, out: 2 * inter, in: d, batch: batch,
                           seqLen: seqLen, grad: &grads!.wGateUp, fisher: &fg)
            if let fg { fisher!.wGateUp = fg }
        }
        lw.wGateUp.withUnsafeBufferPointer { w in
            BLAS.gemm(m: n, n: d, k: 2 * inter, a: dgu.p, b: w.baseAddress!, bTransposed: false, c: dh.p)
        }
        lw.postNorm.withUnsafeBufferPointer { w in        // dx (= ∂/∂y) becomes ∂/∂xMid
            Kernels.rmsNormBackward(x: xMid.p, weight: w.baseAddress!, dy: dh.p, dx: dx.p, rows: n, dim: d, eps: eps,
                                    accumulate: true)
        }

        // Attention: xMid = x + A · Woᵀ, A from softmax(QKᵀ/√hd)·V per head.
        let dA = buffer(n * qWidth), dqkv = buffer(n * width)
        defer { release(dA); release(dqkv) }
        if grads != nil {
            var fo = fisher?.wo
            weightGradient(dY: dx.p, ldY: d, x: ws.attn.p, ldX: qWidth, out: d, in: qWidth, batch: batch,
                           seqLen: seqLen, grad: &grads!.wo, fisher: &fo)
            if let fo { fisher!.wo = fo }
        }
        lw.wo.withUnsafeBufferPointer { w in
            BLAS.gemm(m: n, n: qWidth, k: d, a: dx.p, b: w.baseAddress!, bTransposed: false, c: dA.p)
        }
        AttentionCore.backward(qkv: ws.qkv.p, probs: probs.p, dAttn: dA.p, dqkv: dqkv.p, batch: batch, seqLen: seqLen,
                               nq: nq, nkv: nkv, hd: hd)
        // Undo RoPE on dq and dk: the transpose of a rotation is the rotation by −θ.
        let negSin = runner.ropeSin.map { -$0 }
        runner.ropeCos.withUnsafeBufferPointer { cs in
            negSin.withUnsafeBufferPointer { sn in
                Kernels.rope(dqkv.p, tokens: n, rowStride: width, colOffset: 0, heads: nq + nkv, headDim: hd,
                             positions: { $0 % seqLen }, cos: cs.baseAddress!, sin: sn.baseAddress!)
            }
        }
        // h1 = norm1(x), recomputed.
        lw.inputNorm.withUnsafeBufferPointer { w in
            Kernels.rmsNorm(input.p, weight: w.baseAddress!, out: ws.h.p, rows: n, dim: d, eps: eps)
        }
        if grads != nil {
            var fq = fisher?.wqkv
            weightGradient(dY: dqkv.p, ldY: width, x: ws.h.p, ldX: d, out: width, in: d, batch: batch, seqLen: seqLen,
                           grad: &grads!.wqkv, fisher: &fq)
            if let fq { fisher!.wqkv = fq }
        }
        guard needInputGradient else { return }
        lw.wqkv.withUnsafeBufferPointer { w in
            BLAS.gemm(m: n, n: d, k: width, a: dqkv.p, b: w.baseAddress!, bTransposed: false, c: dh.p)
        }
        lw.inputNorm.withUnsafeBufferPointer { w in     // dx (= ∂/∂xMid) becomes ∂/∂x
            Kernels.rmsNormBackward(x: input.p, weight: w.baseAddress!, dy: dh.p, dx: dx.p, rows: n, dim: d, eps: eps,
                                    accumulate: true)
        }
    }
}
