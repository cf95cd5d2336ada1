import Foundation
import Testing
@testable import TensorCore

private func naiveGemm(_ a: [Float], _ b: [Float], m: Int, n: Int, k: Int, bT: Bool) -> [Float] {
    var c = [Float](repeating: 0, count: m * n)
    for i in 0..<m { for j in 0..<n {
        var s: Double = 0
        for p in 0..<k { s += Double(a[i * k + p]) * Double(bT ? b[j * k + p] : b[p * n + j]) }
        c[i * n + j] = Float(s)
    } }
    return c
}

@Test(arguments: [true, false])
func gemmMatchesNaiveProduct(bTransposed: Bool) {
    let m = 7, n = 5, k = 11
    let a = (0..<m * k).map { Float(sin(Double($0))) }
    let b = (0..<n * k).map { Float(cos(Double($0) * 0.7)) }
    var c = [Float](repeating: 0, count: m * n)
    BLAS.gemm(m: m, n: n, k: k, a: a, b: b, bTransposed: bTransposed, c: &c)
    let ref = naiveGemm(a, b, m: m, n: n, k: k, bT: bTransposed)
    #expect(zip(c, ref).map { abs($0 - $1) }.max()! < 1e-5)
}

@Test func rmsNormMatchesDefinition() {
    let rows = 40, dim = 9
    let x = (0..<rows * dim).map { Float(sin(Double($0) * 1.3)) }
    let w = (0..<dim).map { 1 + Float($0) * 0.1 }
    var out = [Float](repeating: 0, count: rows * dim)
    Kernels.rmsNorm(x, weight: w, out: &out, rows: rows, dim: dim, eps: 1e-5)
    for r in 0..<rows {
        let row = x[r * dim..<(r + 1) * dim]
        let inv = 1 / (row.map { $0 * $0 }.reduce(0, +) / Float(dim) + 1e-5).squareRoot()
        for i in 0..<dim { #expect(abs(out[r * dim + i] - w[i] * x[r * dim + i] * inv) < 1e-6) }
    }
}

@Test func causalSoftmaxRowsSumToOneAndMaskFuture() {
    let n = 6
    var s = (0..<n * n).map { Float($0 % 5) - 2 }
    Kernels.causalSoftmax(&s, rows: n, cols: n, shift: 0, scale: 0.5)
    for i in 0..<n {
        let row = s[i * n..<(i + 1) * n]
        #expect(abs(row.reduce(0, +) - 1) < 1e-6)
        for j in (i + 1)..<n where j < n { #expect(s[i * n + j] == 0) }
    }
}

@Test func ropeRotatesHalfPairsAndPreservesNorm() {
    let hd = 8, half = 4
    let angle = { (i: Int) in Double(i / half) * Double(i % half + 1) * 0.3 }   // position · frequency j
    let cos: [Float] = (0..<2 * half).map { Float(Foundation.cos(angle($0))) }
    let sin: [Float] = (0..<2 * half).map { Float(Foundation.sin(angle($0))) }
    var v: [Float] = (0..<2 * hd).map { Float($0) + 1 }   // 2 tokens × 1 head
    let before = v
    Kernels.rope(&v, tokens: 2, rowStride: hd, colOffset: 0, heads: 1, headDim: hd, positions: { $0 },
                 cos: cos, sin: sin)
    #expect(v[0..<hd] == before[0..<hd])          // position 0: cos row is 1, sin row 0
    let p = 1, j = 2, a = before[hd + j], b = before[hd + j + half]
    #expect(abs(v[hd + j] - (a * cos[p * half + j] - b * sin[p * half + j])) < 1e-6)
    let n0 = before[hd...].map { $0 * $0 }.reduce(0, +), n1 = v[hd...].map { $0 * $0 }.reduce(0, +)
    #expect(abs(n0 - n1) / n0 < 1e-6)
}

@Test func nllIsLogSumExpMinusTarget() {
    let logits: [Float] = [1, 2, 3, 0.5]
    let lse = log(logits.map { exp(Double($0)) }.reduce(0, +))
    #expect(abs(Kernels.nll(logits, count: 4, target: 1) - (lse - 2)) < 1e-6)
}

@Test func vectorExpIsAccurateAcrossTheFloatRange() {
    var worst: Double = 0
    var x: Float = -87
    while x < 88 {
        let v = VectorMath.exp(SIMD8<Float>(repeating: x))[3]
        let ref = Foundation.exp(Double(x))
        worst = max(worst, abs(Double(v) - ref) / ref)
        x += 0.01737
    }
    #expect(worst < 3e-7, "worst relative error \(worst)")
    #expect(VectorMath.exp(SIMD8<Float>(repeating: -200))[0] < 1e-37)
}

@Test func swigluMatchesDefinitionIncludingTail() {
    let n = 13
    let g = (0..<n).map { Float($0) * 0.7 - 4 }, u = (0..<n).map { Float($0) * 0.1 + 0.5 }
    var o = [Float](repeating: 0, count: n)
    VectorMath.swiglu(g, u, &o, n)
    for i in 0..<n {
        let ref = Double(g[i]) / (1 + Foundation.exp(-Double(g[i]))) * Double(u[i])
        #expect(abs(Double(o[i]) - ref) < 1e-6)
    }
}

/// The one-row product of a generation step: each output a dot product over its weight row (any width, tails
/// included), set or accumulated, the same on 1 or 2 threads, to rounding of the double-precision sum.
@Test(arguments: [(5, 7), (64, 576), (300, 1531), (1024, 96)])
func matvecIsTheRowDotProducts(_ rows: Int, _ cols: Int) {
    var seed: UInt32 = 7
    func rnd() -> Float { seed = seed &* 1664525 &+ 1013904223; return Float(Int32(bitPattern: seed) >> 8) / Float(1 << 23) }
    let w = (0..<(rows * cols)).map { _ in rnd() }, x = (0..<cols).map { _ in rnd() }, y0 = (0..<rows).map { _ in rnd() }
    for threads in [1, 2] {
        for accumulate in [false, true] {
            var y = y0
            Kernels.matvec(w, x, &y, rows: rows, cols: cols, accumulate: accumulate, threads: threads)
            for r in 0..<rows {
                var ref = accumulate ? Double(y0[r]) : 0
                for c in 0..<cols { ref += Double(w[r * cols + c]) * Double(x[c]) }
                #expect(abs(Double(y[r]) - ref) <= 1e-5 * Double(cols).squareRoot(), "row \(r), \(threads) threads")
            }
        }
    }
}
