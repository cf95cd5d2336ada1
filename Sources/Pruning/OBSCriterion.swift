// `--criterion obs`: structured Optimal Brain Surgeon scores, the selection rule of SlimGPT (arXiv 2412.18110, its
// "Batched Greedy Pruning" of columns with the OBS error and update, after OBS: Hassibi & Stork 1993, and
// SparseGPT, arXiv 2301.00774). A unit's score is the output error its removal leaves on the calibration tokens
// once the remaining columns of its projection are optimally refit — so it ranks units by what the least-squares
// reconstruction (`--reconstruct lstsq`) cannot put back, where Taylor and FLAP's fluctuation rank them by what
// removing them costs before any refit.
//
// Per scored layer and projection (o_proj for attention units, down_proj for MLP channels) with weight W [d × n]
// and H = X Xᵀ + λ·mean(diag)·I over its calibration inputs X [n × N] (λ = `dampening`):
//   greedy, one unit at a time: for every remaining unit with columns S,
//       e(S) = tr(W_S (H⁻¹_SS)⁻¹ W_Sᵀ)                                     (the OBS error of removing S)
//   remove the unit with the smallest e, then update the survivors as OBS does:
//       W ← W − W_S (H⁻¹_SS)⁻¹ H⁻¹_S,:      H⁻¹ ← H⁻¹ − H⁻¹_:,S (H⁻¹_SS)⁻¹ H⁻¹_S,:
// A unit's score is the error at its removal, made strictly increasing along the removal order (running maximum,
// times 1 + 1e-12·step), so a local allocation removes exactly the first units of the greedy order and a global
// one compares layers by the error scale they have reached. The last unit left scores above all others.
// The inputs come from a forward sweep of the unpruned model over the calibration windows through the one
// TransformerBlock (ReconstructionSweep), one layer's Grams at a time.
import Foundation
import LlamaModel
import TensorCore

public enum OBSCriterion {
    /// λ relative to the mean diagonal of H, as SparseGPT's `percdamp`.
    public static let dampening = 0.1

    /// Scores of `layers` (ascending) of `weights` from its inputs on [batch × seqLen] `tokens`.
    static func scores(weights: LlamaWeights, layers: [Int], tokens: [Int32], batch: Int, seqLen: Int,
                       attentionUnit: AttentionUnit) throws -> [LayerScores] {
        let c = weights.config, hd = c.headDim
        guard let last = layers.max() else { return [] }
        let sweep = try ReconstructionSweep(config: c, batch: batch, seqLen: seqLen, method: .lstsq, ridge: dampening,
                                            embedded: ReconstructionSweep.embedding(tokens, table: weights.embed, config: c))
        let wanted = Set(layers)
        var out: [LayerScores] = []
        for l in 0...last {
            let w = weights.layers[l]
            guard wanted.contains(l) else { sweep.advance(layer: l, weights: w); continue }
            let (gO, gD) = sweep.inputGrams(layer: l, weights: w)
            let s = w.shape, oIn = s.numHeads * hd
            let block = attentionUnit == .kvGroup || s.numHeads == s.numKVHeads ? (s.numHeads / s.numKVHeads) * hd : hd
            let attention = try greedy(weight: w.wo, rows: c.hiddenSize, inputs: oIn, gram: gO, unit: block,
                                       what: "layer \(l) o_proj")
            let mlp = try greedy(weight: w.wDown, rows: c.hiddenSize, inputs: s.intermediateSize, gram: gD, unit: 1,
                                 what: "layer \(l) down_proj")
            out.append(LayerScores(layer: l, attention: attention, mlp: mlp))
        }
        return out
    }

    /// The greedy OBS removal scores of the n / `unit` units (consecutive column blocks of `unit`) of W [rows × n]
    /// (row-major fp32) given H's undampened Gram [n × n] (Float64).
    static func greedy(weight: [Float], rows d: Int, inputs n: Int, gram: [Double], unit: Int, what: String) throws -> [Double] {
        precondition(n % unit == 0 && weight.count == d * n && gram.count == n * n)
        let units = n / unit
        var h = gram
        let meanDiag = (0..<n).reduce(0.0) { $0 + gram[$1 * n + $1] } / Double(max(n, 1))
        let lambda = dampening * max(meanDiag, .leastNormalMagnitude)
        for i in 0..<n { h[i * n + i] += lambda }
        var identity = [Double](repeating: 0, count: n * n)
        for i in 0..<n { identity[i * n + i] = 1 }
        guard var hinv = LinearSolve.choleskySolveRight(h, n: n, identity, m: n) else {
            throw PruneError.invalidScores("\(what): the OBS system is not positive definite (non-finite activations?)")
        }
        // Wᵀ [n × d]: a column of W is a contiguous row here.
        var wt = [Double](repeating: 0, count: n * d)
        for r in 0..<d { for j in 0..<n { wt[j * d + r] = Double(weight[r * n + j]) } }
        var alive = [Bool](repeating: true, count: units)
        var scores = [Double](repeating: 0, count: units)
        var running = 0.0
        for step in 0..<units {
            var best = -1, bestError = Double.infinity, bestInverse: [Double] = []
            for u in 0..<units where alive[u] {
                let (e, m) = unit == 1 ? single(u, hinv: hinv, wt: wt, n: n, d: d) : block(u, unit, hinv: hinv, wt: wt, n: n, d: d)
                if e < bestError { best = u; bestError = e; bestInverse = m }
            }
            guard best >= 0 else {
                throw PruneError.invalidScores("\(what): non-finite OBS errors (non-finite activations?)")
            }
            running = max(running, bestError)
            scores[best] = running * (1 + 1e-12 * Double(step))
            alive[best] = false
            if step + 1 < units { remove(best, unit, inverse: bestInverse, hinv: &hinv, wt: &wt, n: n, d: d, alive: alive) }
        }
        return scores
    }

    /// e = ‖W[:,j]‖² / H⁻¹_jj for a single column j, and 1 / H⁻¹_jj.
    @inline(__always)
    static func single(_ j: Int, hinv: [Double], wt: [Double], n: Int, d: Int) -> (Double, [Double]) {
        let q = hinv[j * n + j]
        var norm = 0.0
        wt.withUnsafeBufferPointer { w in for r in 0..<d { norm += w[j * d + r] * w[j * d + r] } }
        return (norm / q, [1 / q])
    }

    /// e = tr(W_S M W_Sᵀ) with M = (H⁻¹_SS)⁻¹ for the columns S of unit u, and M [s × s].
    static func block(_ u: Int, _ s: Int, hinv: [Double], wt: [Double], n: Int, d: Int) -> (Double, [Double]) {
        let c0 = u * s
        var sub = [Double](repeating: 0, count: s * s), id = sub
        for i in 0..<s { id[i * s + i] = 1; for j in 0..<s { sub[i * s + j] = hinv[(c0 + i) * n + c0 + j] } }
        guard let m = LinearSolve.choleskySolveRight(sub, n: s, id, m: s) else { return (.infinity, []) }
        // W_Sᵀ [s × d] are rows c0..<c0+s of wt: e = Σ_r w_rᵀ M w_r = tr(M · (W_Sᵀ W_S)) with W_Sᵀ W_S [s × s].
        var e = 0.0
        wt.withUnsafeBufferPointer { w in
            for i in 0..<s {
                for j in 0..<s {
                    var dot = 0.0
                    for r in 0..<d { dot += w[(c0 + i) * d + r] * w[(c0 + j) * d + r] }
                    e += m[i * s + j] * dot
                }
            }
        }
        return (e, m)
    }

    /// The OBS update after removing unit u (columns S, M = (H⁻¹_SS)⁻¹): the surviving columns of W absorb what S
    /// did, W ← W − W_S M H⁻¹_S,: ; and H⁻¹ ← H⁻¹ − H⁻¹_:,S M H⁻¹_S,: (the inverse Hessian of the survivors).
    static func remove(_ u: Int, _ s: Int, inverse m: [Double], hinv: inout [Double], wt: inout [Double], n: Int, d: Int,
                       alive: [Bool]) {
        let c0 = u * s
        // K = M · H⁻¹_S,: [s × n]
        var k = [Double](repeating: 0, count: s * n)
        for i in 0..<s {
            for t in 0..<s {
                let f = m[i * s + t]
                if f == 0 { continue }
                let src = (c0 + t) * n
                for j in 0..<n { k[i * n + j] += f * hinv[src + j] }
            }
        }
        // Wᵀ[j] −= Σ_i K[i, j] · Wᵀ[c0 + i]; H⁻¹[a, b] −= Σ_i H⁻¹[a, c0+i] · K[i, b], over the surviving rows
        // (whole rows: contiguous, vectorised; entries of removed units are never read again). S's own rows of Wᵀ
        // and columns of H⁻¹ are copied first.
        let sRows = (0..<s).map { i in Array(wt[((c0 + i) * d)..<((c0 + i + 1) * d)]) }
        var sCols = [Double](repeating: 0, count: n * s)
        for a in 0..<n { for i in 0..<s { sCols[a * s + i] = hinv[a * n + c0 + i] } }
        wt.withUnsafeMutableBufferPointer { w in
            k.withUnsafeBufferPointer { kp in
                for j in 0..<n where alive[j / s] {
                    let dst = w.baseAddress! + j * d
                    for i in 0..<s {
                        let f = kp[i * n + j]
                        if f == 0 { continue }
                        sRows[i].withUnsafeBufferPointer { src in for r in 0..<d { dst[r] -= f * src[r] } }
                    }
                }
            }
        }
        hinv.withUnsafeMutableBufferPointer { h in
            k.withUnsafeBufferPointer { kp in
                for a in 0..<n where alive[a / s] {
                    let row = h.baseAddress! + a * n
                    for i in 0..<s {
                        let f = sCols[a * s + i]
                        if f == 0 { continue }
                        let kr = kp.baseAddress! + i * n
                        for b in 0..<n { row[b] -= f * kr[b] }
                    }
                }
            }
        }
    }
}
