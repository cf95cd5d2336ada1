// The one transformer block: attention scores computed in blocks of query rows agree with plain causal attention
// (in Double) at lengths past one block, a forward that keeps no softmax gives the values of one that keeps it
// (to rounding),
// and the block's internals count what they hold.
import Foundation
import Testing
import TensorCore
@testable import LlamaModel

struct BlockTests {
    static let B = 2, nq = 4, nkv = 2, hd = 8

    /// q|k|v [B·T × (nq + 2·nkv)·hd] with deterministic values.
    static func qkv(T: Int) -> [Float] {
        (0..<(B * T * (nq + 2 * nkv) * hd)).map { i in Float(sin(Double(i) * 0.37)) * 0.5 }
    }

    static func attention(_ qkv: [Float], T: Int, keep: Bool) -> [Float] {
        var out = [Float](repeating: .nan, count: B * T * nq * hd)
        let probs = keep ? FloatBuffer(B * nq * T * T) : nil
        qkv.withUnsafeBufferPointer { q in
            out.withUnsafeMutableBufferPointer { o in
                AttentionCore.forward(qkv: q.baseAddress!, probs: probs?.p, attn: o.baseAddress!, batch: B, seqLen: T,
                                      nq: nq, nkv: nkv, hd: hd)
            }
        }
        return out
    }

    /// Causal GQA attention of sequence b, query head h, row t, in Double.
    static func reference(_ x: [Float], T: Int, b: Int, h: Int, t: Int) -> [Double] {
        let width = (nq + 2 * nkv) * hd, g = h / (nq / nkv)
        func at(_ row: Int, _ col: Int) -> Double { Double(x[(b * T + row) * width + col]) }
        let s = (0...t).map { u in (0..<hd).reduce(0.0) { $0 + at(t, h * hd + $1) * at(u, (nq + g) * hd + $1) } / Double(hd).squareRoot() }
        let m = s.max()!, e = s.map { exp($0 - m) }, z = e.reduce(0, +)
        return (0..<hd).map { j in (0...t).reduce(0.0) { $0 + e[$1] / z * at($1, (nq + nkv + g) * hd + j) } }
    }

    @Test(arguments: [AttentionCore.scoreBlockRows + 88, 2 * AttentionCore.scoreBlockRows + 1])
    func blockedScoresAreCausalAttention(T: Int) {
        let x = Self.qkv(T: T)
        let blocked = Self.attention(x, T: T, keep: false), kept = Self.attention(x, T: T, keep: true)
        // The same blocks either way; OpenBLAS may still pick another kernel for the softmax's other address (seen: a
        // 1-ulp difference in the 1-row last block), so the two agree to rounding.
        let apart = zip(blocked, kept).map { abs($0 - $1) }.max()!
        #expect(apart <= 1e-6, "kept vs not kept: \(apart)")
        var worst = 0.0
        // Rows on both sides of each block boundary, and the last one, of every (sequence, head).
        let rows = [0, 1, 511, 512, 513, T - 1]
        for b in 0..<Self.B { for h in 0..<Self.nq { for t in rows {
            let ref = Self.reference(x, T: T, b: b, h: h, t: t)
            for j in 0..<Self.hd {
                worst = max(worst, abs(Double(blocked[(b * T + t) * Self.nq * Self.hd + h * Self.hd + j]) - ref[j]))
            }
        }}}
        #expect(worst < 1e-5, "worst |blocked − reference| \(worst)")
    }

    @Test func internalsBytesCountTheirBuffers() {
        let c = LlamaConfig(vocabSize: 32, hiddenSize: 16, headDim: 8,
                            layers: Array(repeating: LayerShape(numHeads: 4, numKVHeads: 2, intermediateSize: 40), count: 2),
                            rmsNormEps: 1e-5, ropeTheta: 10000, maxPositionEmbeddings: 64, tieWordEmbeddings: true)
        let g = BlockGeometry(batch: 3, seqLen: 5)
        let t = LayerInternals(shape: c.layers[0], config: c, geometry: g, allocate: { FloatBuffer($0) })
        #expect(t.bytes == LayerInternals.bytes(c.layers[0], config: c, geometry: g))
        // N = 15 rows: q|k|v (4 + 2·2)·8, softmax 3·4·5², attention 4·8, mid residual 16, gate|up 2·40, act 40
        #expect(t.bytes == 4 * (15 * 64 + 3 * 4 * 25 + 15 * 32 + 15 * 16 + 15 * 80 + 15 * 40))
    }
}
