import Foundation
import Testing
@testable import LlamaModel

/// A deliberately plain forward (loops, Double accumulation, one token at a time) as an independent check of
/// the batched BLAS forward, including heterogeneous per-layer widths that transformers cannot load.
func naiveLogits(_ w: LlamaWeights, tokens: [Int32]) -> [[Double]] {
    let c = w.config, d = c.hiddenSize, hd = c.headDim, T = tokens.count
    func matvec(_ m: [Float], rows: Int, cols: Int, _ x: [Double], rowOffset: Int = 0) -> [Double] {
        (0..<rows).map { r in (0..<cols).reduce(0.0) { $0 + Double(m[(rowOffset + r) * cols + $1]) * x[$1] } }
    }
    func norm(_ x: [Double], _ g: [Float]) -> [Double] {
        let inv = 1 / (x.map { $0 * $0 }.reduce(0, +) / Double(x.count) + Double(c.rmsNormEps)).squareRoot()
        return x.indices.map { x[$0] * inv * Double(g[$0]) }
    }
    func rope(_ v: [Double], pos: Int) -> [Double] {
        var o = v
        let half = hd / 2
        for j in 0..<half {
            let f = Double(Float(pos) * Float(1.0 / pow(c.ropeTheta, Double(2 * j) / Double(hd))))
            o[j] = v[j] * cos(f) - v[j + half] * sin(f)
            o[j + half] = v[j + half] * cos(f) + v[j] * sin(f)
        }
        return o
    }
    var xs: [[Double]] = tokens.map { t in (0..<d).map { Double(w.embed[Int(t) * d + $0]) } }
    for l in w.layers {
        let nq = l.shape.numHeads, nkv = l.shape.numKVHeads, inter = l.shape.intermediateSize
        let hs = xs.map { norm($0, l.inputNorm) }
        let q = hs.enumerated().map { (t, h) in (0..<nq).map { rope(matvec(l.wqkv, rows: hd, cols: d, h, rowOffset: $0 * hd), pos: t) } }
        let k = hs.enumerated().map { (t, h) in (0..<nkv).map { rope(matvec(l.wqkv, rows: hd, cols: d, h, rowOffset: nq * hd + $0 * hd), pos: t) } }
        let v = hs.map { h in (0..<nkv).map { matvec(l.wqkv, rows: hd, cols: d, h, rowOffset: (nq + nkv) * hd + $0 * hd) } }
        for t in 0..<T {
            var cat: [Double] = []
            for h in 0..<nq {
                let g = h / (nq / nkv)
                let s = (0...t).map { u in zip(q[t][h], k[u][g]).map(*).reduce(0, +) / Double(hd).squareRoot() }
                let m = s.max()!, e = s.map { exp($0 - m) }, z = e.reduce(0, +)
                cat += (0..<hd).map { j in (0...t).reduce(0.0) { $0 + e[$1] / z * v[$1][g][j] } }
            }
            let o = matvec(l.wo, rows: d, cols: nq * hd, cat)
            xs[t] = zip(xs[t], o).map(+)
        }
        for t in 0..<T {
            let h = norm(xs[t], l.postNorm)
            let gu = matvec(l.wGateUp, rows: 2 * inter, cols: d, h)
            let act = (0..<inter).map { gu[$0] / (1 + exp(-gu[$0])) * gu[inter + $0] }
            xs[t] = zip(xs[t], matvec(l.wDown, rows: d, cols: inter, act)).map(+)
        }
    }
    let head = w.lmHead ?? w.embed
    return xs.map { matvec(head, rows: c.vocabSize, cols: d, norm($0, w.finalNorm)) }
}

let heterogeneous = LlamaConfig(
    vocabSize: 50, hiddenSize: 24, headDim: 6,
    layers: [LayerShape(numHeads: 4, numKVHeads: 2, intermediateSize: 40),
             LayerShape(numHeads: 2, numKVHeads: 1, intermediateSize: 17),
             LayerShape(numHeads: 3, numKVHeads: 3, intermediateSize: 8)],
    rmsNormEps: 1e-5, ropeTheta: 10000, maxPositionEmbeddings: 64, tieWordEmbeddings: false)

@Test(arguments: [true, false])
func batchedForwardMatchesNaiveOnHeterogeneousLayers(tied: Bool) throws {
    var cfg = heterogeneous
    cfg.tieWordEmbeddings = tied
    let w = LlamaWeights.random(config: cfg, seed: 7, scale: 0.2)
    let runner = LlamaRunner(weights: w)
    let T = 9
    let tokens: [Int32] = (0..<2 * T).map { Int32(($0 * 7 + 3) % cfg.vocabSize) }
    let logits = try runner.logits(tokens: tokens, batch: 2, seqLen: T)
    var maxDiff = 0.0
    for b in 0..<2 {
        let ref = naiveLogits(w, tokens: Array(tokens[b * T..<(b + 1) * T]))
        for t in 0..<T { for j in 0..<cfg.vocabSize {
            maxDiff = max(maxDiff, abs(Double(logits[(b * T + t) * cfg.vocabSize + j]) - ref[t][j]))
        } }
    }
    #expect(maxDiff < 1e-4)
}

@Test func nextTokenNLLAgreesWithLogits() throws {
    let w = LlamaWeights.random(config: heterogeneous, seed: 3, scale: 0.2)
    let runner = LlamaRunner(weights: w)
    let T = 6, V = heterogeneous.vocabSize
    let tokens: [Int32] = (0..<3 * T).map { Int32(($0 * 11 + 1) % V) }
    let logits = try runner.logits(tokens: tokens, batch: 3, seqLen: T)
    let nll = try runner.nextTokenNLL(tokens: tokens, batch: 3, seqLen: T)
    for b in 0..<3 {
        var ref = 0.0
        for t in 0..<(T - 1) {
            let row = logits[((b * T + t) * V)..<((b * T + t + 1) * V)].map(Double.init)
            let m = row.max()!
            ref += log(row.map { exp($0 - m) }.reduce(0, +)) + m - row[Int(tokens[b * T + t + 1])]
        }
        #expect(abs(nll[b] - ref) < 1e-4)
    }
    // Sequences are independent: the second one alone scores the same as inside the batch.
    let alone = try runner.nextTokenNLL(tokens: Array(tokens[T..<2 * T]), batch: 1, seqLen: T)
    #expect(abs(alone[0] - nll[1]) < 1e-5)
}

@Test func outOfVocabularyTokenIsAnErrorNotATrap() {
    let runner = LlamaRunner(weights: LlamaWeights.random(config: heterogeneous, seed: 1))
    #expect(throws: ModelError.self) { try runner.logits(tokens: [1, 2, 99], batch: 1, seqLen: 3) }
    #expect(throws: ModelError.self) { try runner.logits(tokens: [1, 2], batch: 1, seqLen: 3) }
}

@Test func parameterCountCountsEveryLayerWidth() {
    var cfg = heterogeneous
    cfg.tieWordEmbeddings = false
    let w = LlamaWeights.random(config: cfg, seed: 1)
    let stored = w.huggingFaceTensors().reduce(0) { $0 + $1.values.count }
    #expect(stored == cfg.parameterCount)
}
