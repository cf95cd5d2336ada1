import Foundation
import Testing
@testable import LlamaModel
import TensorCore

/// Loss of the batch computed by the forward pass alone.
func batchLoss(_ w: LlamaWeights, _ tokens: [Int32], batch: Int, seqLen: Int) throws -> Double {
    try LlamaRunner(weights: w).nextTokenNLL(tokens: tokens, batch: batch, seqLen: seqLen).reduce(0, +)
        / Double(batch * (seqLen - 1))
}

/// Central finite differences of the loss for a few elements of each weight matrix of one layer.
@Test func gradientsMatchFiniteDifferences() throws {
    var cfg = heterogeneous
    cfg.tieWordEmbeddings = true
    let w = LlamaWeights.random(config: cfg, seed: 11, scale: 0.3)
    let B = 2, T = 7
    let tokens: [Int32] = (0..<B * T).map { Int32(($0 * 13 + 5) % cfg.vocabSize) }
    let result = try GradientPass(weights: w).gradients(tokens: tokens, batch: B, seqLen: T, layers: 0..<3, fisher: false)
    #expect(abs(result.loss - (try batchLoss(w, tokens, batch: B, seqLen: T))) < 1e-5)
    let eps: Float = 1e-2
    var worst = 0.0
    var checked = 0
    for l in 0..<3 {
        let g = result.gradients[l]!
        for (name, kp, gv) in [("qkv", \LayerWeights.wqkv, g.wqkv), ("o", \LayerWeights.wo, g.wo),
                               ("gateUp", \LayerWeights.wGateUp, g.wGateUp), ("down", \LayerWeights.wDown, g.wDown)] {
            // The largest-gradient elements, where fp32 finite differences are meaningful.
            let idx = gv.indices.sorted { abs(gv[$0]) > abs(gv[$1]) }.prefix(3)
            for i in idx {
                let base = w.layers[l][keyPath: kp][i]
                w.layers[l][keyPath: kp][i] = base + eps
                let up = try batchLoss(w, tokens, batch: B, seqLen: T)
                w.layers[l][keyPath: kp][i] = base - eps
                let down = try batchLoss(w, tokens, batch: B, seqLen: T)
                w.layers[l][keyPath: kp][i] = base
                let fd = (up - down) / Double(2 * eps)
                let rel = abs(fd - Double(gv[i])) / max(abs(fd), 1e-3)
                worst = max(worst, rel)
                checked += 1
                #expect(rel < 2e-2, "layer \(l) \(name)[\(i)]: analytic \(gv[i]) vs finite difference \(fd)")
            }
        }
    }
    print("finite differences: \(checked) elements, worst relative error \(worst)")
}

/// The Fisher diagonal from split products equals the mean of squared per-sample gradients computed by
/// separate single-sample passes.
@Test func fisherEqualsMeanOfPerSampleSquaredGradients() throws {
    let w = LlamaWeights.random(config: heterogeneous, seed: 5, scale: 0.3)
    let B = 3, T = 6
    let tokens: [Int32] = (0..<B * T).map { Int32(($0 * 7 + 2) % heterogeneous.vocabSize) }
    let pass = GradientPass(weights: w)
    let all = try pass.gradients(tokens: tokens, batch: B, seqLen: T, layers: 1..<3, fisher: true)
    #expect(all.gradients.keys.sorted() == [1, 2] && all.fisher!.keys.sorted() == [1, 2])
    var expected = LayerGradients(zerosLike: w.layers[1])
    var meanGrad = LayerGradients(zerosLike: w.layers[1])
    for b in 0..<B {
        let one = try pass.gradients(tokens: Array(tokens[b * T..<(b + 1) * T]), batch: 1, seqLen: T, layers: 1..<2,
                                     fisher: false).gradients[1]!
        for (kp, v) in [(\LayerGradients.wqkv, one.wqkv), (\LayerGradients.wo, one.wo),
                        (\LayerGradients.wGateUp, one.wGateUp), (\LayerGradients.wDown, one.wDown)] {
            for i in v.indices {
                expected[keyPath: kp][i] += v[i] * v[i] / Float(B)
                meanGrad[keyPath: kp][i] += v[i] / Float(B)
            }
        }
    }
    let f = all.fisher![1]!, g = all.gradients[1]!
    for (a, b) in [(f.wqkv, expected.wqkv), (f.wo, expected.wo), (f.wGateUp, expected.wGateUp), (f.wDown, expected.wDown),
                   (g.wqkv, meanGrad.wqkv), (g.wDown, meanGrad.wDown)] {
        let scale = b.map { abs($0) }.max()!
        #expect(zip(a, b).map { abs($0 - $1) }.max()! <= 1e-5 * scale)
    }
}

/// Gradients and the Fisher diagonal against PyTorch (scripts/reference/make_importance_fixtures.py): the tiny
/// tied GQA model, a 4 × 12 calibration batch, every linear weight of every layer.
@Test func gradientsMatchPyTorch() throws {
    let dir = resources.deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("PruningTests/Resources/importance")
    let index = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("index.json"))) as! [String: Any]
    let ids = (index["ids"] as! [[Int]])
    let model = try ModelLoader.load(path: resources.appendingPathComponent("tiny").path, tokenizer: false)
    let r = try GradientPass(weights: model.weights).gradients(
        tokens: ids.flatMap { $0.map(Int32.init) }, batch: ids.count, seqLen: ids[0].count, layers: 0..<3, fisher: true)
    let refLoss = (index["loss"] as! NSNumber).doubleValue
    #expect(abs(r.loss - refLoss) < 1e-5, "loss \(r.loss) vs \(refLoss)")
    func load(_ file: String) throws -> [Float] {
        try Data(contentsOf: dir.appendingPathComponent(file)).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }
    /// Our fused matrices cut back into HF tensors.
    func hf(_ g: LayerGradients, _ s: LayerShape, _ name: String) -> [Float] {
        let d = model.config.hiddenSize, hd = model.config.headDim
        let nq = s.numHeads * hd * d, nkv = s.numKVHeads * hd * d, i = s.intermediateSize * d
        switch name {
        case "q_proj": return Array(g.wqkv[0..<nq])
        case "k_proj": return Array(g.wqkv[nq..<nq + nkv])
        case "v_proj": return Array(g.wqkv[(nq + nkv)...])
        case "o_proj": return g.wo
        case "gate_proj": return Array(g.wGateUp[0..<i])
        case "up_proj": return Array(g.wGateUp[i...])
        default: return g.wDown
        }
    }
    var worst = (grad: 0.0, fisher: 0.0)
    for (kind, table, ours) in [("grad", index["grads"] as! [String: [String: Any]], r.gradients),
                                ("fisher", index["fisher"] as! [String: [String: Any]], r.fisher!)] {
        for (key, entry) in table {
            let parts = key.split(separator: ".")
            let layer = Int(parts[0].dropFirst(5))!, name = String(parts[1])
            let got = hf(ours[layer]!, model.config.layers[layer], name)
            guard let file = entry["file"] as? String else {
                // Only summary statistics stored: compare the sum.
                let refSum = (entry["sum"] as! NSNumber).doubleValue
                let sum = got.reduce(0.0) { $0 + Double($1) }
                #expect(abs(sum - refSum) / abs(refSum) <= 1e-4, "\(kind) \(key): sum \(sum) vs \(refSum)")
                continue
            }
            let ref = try load(file)
            #expect(got.count == ref.count)
            let scale = Double(ref.map { abs($0) }.max()!)
            let err = zip(got, ref).map { Double(abs($0 - $1)) }.max()! / scale
            #expect(err <= 1e-4, "\(kind) \(key): max error \(err) relative to max |ref|")
            if kind == "grad" { worst.grad = max(worst.grad, err) } else { worst.fisher = max(worst.fisher, err) }
        }
    }
    print("gradients vs PyTorch: worst max-abs error / max |g| = \(worst.grad); Fisher: \(worst.fisher)")
}

/// Keeping the internals from the forward sweep and recomputing them give the same gradients and Fisher (at
/// one OpenBLAS thread: its rounding depends on the process-wide thread count, which a test running alongside can
/// change between the two passes).
@Test func cachedAndRecomputedActivationsGiveTheSameGradients() throws {
    try BLAS.singleThreaded { try cachedAndRecomputed() }
}

private func cachedAndRecomputed() throws {
    let w = LlamaWeights.random(config: heterogeneous, seed: 9, scale: 0.3)
    let B = 3, T = 5
    let tokens: [Int32] = (0..<B * T).map { Int32(($0 * 17 + 3) % heterogeneous.vocabSize) }
    let cached = GradientPass(weights: w), recomputed = GradientPass(weights: w)
    recomputed.activationBudgetBytes = 0
    let a = try cached.gradients(tokens: tokens, batch: B, seqLen: T, layers: 1..<3, fisher: true)
    let b = try recomputed.gradients(tokens: tokens, batch: B, seqLen: T, layers: 1..<3, fisher: true)
    #expect(a.loss == b.loss)
    for l in 1..<3 {
        for (x, y) in [(a.gradients[l]!, b.gradients[l]!), (a.fisher![l]!, b.fisher![l]!)] {
            #expect(x.wqkv == y.wqkv && x.wo == y.wo && x.wGateUp == y.wGateUp && x.wDown == y.wDown)
        }
    }
    #expect(a.peakActivationBytes > b.peakActivationBytes)
}
