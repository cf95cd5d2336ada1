// Causal GQA attention over a fused [N × (nq + 2·nkv)·hd] q|k|v buffer, forward and backward, per (sequence,
// head) with single-threaded BLAS on each core; the forward also attends new queries to a KV cache's keys (one
// routine: the full-sequence forward is the case with no cached positions). The forward keeps the softmax when a backward will follow, and
// otherwise computes scores in blocks of query rows (bounded memory at any sequence length).
import Foundation
import TensorCore

public enum AttentionCore {
    /// Query rows per block of scores: a forward that does not keep the softmax holds at most `scoreBlockRows` × T
    /// floats per worker, so attention's working memory stays bounded at any sequence length.
    public static let scoreBlockRows = 512
    /// Multiply-adds of Q·Kᵀ below which attention runs on the calling thread (a decode step of SmolLM2: 9 heads ×
    /// 64 × cached positions, so up to ≈ 1,800 positions).
    static let serialWork = 1 << 20

    /// attn[N × nq·hd] = softmax(Q Kᵀ/√hd, causal, within `window` keys when given) V per sequence and head, q, k and v
    /// read from the fused [N × W] buffer. With `probs`, the softmax of sequence b, head h is kept at
    /// probs + (b·nq + h)·T² (the backward reads it); without, each worker holds the scores of one block of query
    /// rows at a time. Sequences of up to `scoreBlockRows` tokens are one block.
    public static func forward(qkv: UnsafePointer<Float>, probs: UnsafeMutablePointer<Float>?, attn: UnsafeMutablePointer<Float>,
                        batch: Int, seqLen T: Int, nq: Int, nkv: Int, hd: Int, window: Int? = nil) {
        let width = (nq + 2 * nkv) * hd
        attend(q: qkv, qStride: width, keys: qkv + nq * hd, values: qkv + (nq + nkv) * hd, kvStride: width,
               probs: probs, attn: attn, batch: batch, queries: T, keyCount: T, nq: nq, nkv: nkv, hd: hd, window: window)
    }

    /// The same attention for T new queries of one or more sequences against `keyCount` keys per sequence, the last
    /// T of them at the queries' own positions (the ones before: a KV cache's). Query row i (position
    /// keyCount − T + i) sees keys 0...keyCount − T + i (within `window`). q head h is at column h·hd of rows
    /// `qStride` apart; k and v heads g at column g·hd of rows `kvStride` apart, keyCount rows per sequence.
    /// `probs` (kept softmax, [B·nq × T × keyCount]) only when keyCount == T.
    public static func attend(q qBase: UnsafePointer<Float>, qStride: Int, keys kBase: UnsafePointer<Float>,
                              values vBase: UnsafePointer<Float>, kvStride: Int, probs: UnsafeMutablePointer<Float>?,
                              attn: UnsafeMutablePointer<Float>, batch: Int, queries T: Int, keyCount Tk: Int, nq: Int,
                              nkv: Int, hd: Int, window: Int?) {
        precondition(Tk >= T && (probs == nil || Tk == T), "attend: \(T) queries against \(Tk) keys")
        let qWidth = nq * hd, rep = nq / nkv, past = Tk - T
        let scale = 1 / Float(hd).squareRoot()
        let pairs = batch * nq
        // A generation step (one query against a short cache) is far less work than a thread hand-off: it runs on
        // the calling thread. The per-pair arithmetic is the same either way.
        // Workers as many as `--threads` (BLAS.configuredThreads), not the cores: each holds a [blockRows × Tk] score block
        // (16 MiB at an 8192-token window), so the peak memory follows the thread setting, not the machine.
        let small = pairs * T * Tk * hd < serialWork
        let workers = small ? 1 : max(1, min(BLAS.configuredThreads, pairs))
        let blockRows = min(T, scoreBlockRows)
        BLAS.singleThreaded { DispatchQueue.concurrentPerform(iterations: workers) { wk in
            let scratch = probs == nil ? UnsafeMutablePointer<Float>.allocate(capacity: blockRows * Tk) : nil
            defer { scratch?.deallocate() }
            var p = wk
            while p < pairs {
                let b = p / nq, h = p % nq, g = h / rep
                let q = qBase + b * T * qStride + h * hd
                let k = kBase + b * Tk * kvStride + g * hd, v = vBase + b * Tk * kvStride + g * hd
                let out = attn + b * T * qWidth + h * hd
                // Blocks of query rows against all keys (the masked tail is zero after the softmax), the same
                // blocks whether the softmax is kept or not, so both forwards give the same values (to rounding: BLAS may pick
                // another kernel for another address).
                var r0 = 0
                while r0 < T {
                    let m = min(blockRows, T - r0)
                    let scores = probs.map { $0 + p * T * T + r0 * T } ?? scratch!
                    BLAS.gemm(m: m, n: Tk, k: hd, a: q + r0 * qStride, lda: qStride, b: k, ldb: kvStride,
                              bTransposed: true, c: scores)
                    Kernels.causalSoftmax(scores, rows: m, cols: Tk, shift: past + r0, scale: scale, window: window)
                    BLAS.gemm(m: m, n: hd, k: Tk, a: scores, b: v, ldb: kvStride, bTransposed: false,
                              c: out + r0 * qWidth, ldc: qWidth)
                    r0 += m
                }
                p += workers
            }
        } }
    }

    /// Per (sequence, KV group), the group's query heads one after another (they share dK, dV). A sliding window
    /// needs nothing here: the kept softmax is zero outside it, and so are the gradients there.
    /// dP = dO·Vᵀ, dV += Pᵀ·dO, dS = softmax'(dP)/√hd, dQ = dS·K, dK += dSᵀ·Q. Writes every column of dqkv.
    public static func backward(qkv: UnsafePointer<Float>, probs: UnsafePointer<Float>, dAttn: UnsafePointer<Float>,
                         dqkv: UnsafeMutablePointer<Float>, batch: Int, seqLen T: Int, nq: Int, nkv: Int, hd: Int) {
        let width = (nq + 2 * nkv) * hd, qWidth = nq * hd, rep = nq / nkv
        let scale = 1 / Float(hd).squareRoot()
        let units = batch * nkv
        let workers = max(1, min(BLAS.configuredThreads, units))     // each holds a T × T block: as many as --threads
        BLAS.singleThreaded { DispatchQueue.concurrentPerform(iterations: workers) { wk in
            let dp = UnsafeMutablePointer<Float>.allocate(capacity: T * T)
            defer { dp.deallocate() }
            var u = wk
            while u < units {
                let b = u / nkv, g = u % nkv
                let rows = qkv + b * T * width, drows = dqkv + b * T * width
                let k = rows + (nq + g) * hd, v = rows + (nq + nkv + g) * hd
                let dk = drows + (nq + g) * hd, dv = drows + (nq + nkv + g) * hd
                for j in 0..<rep {
                    let h = g * rep + j
                    let p = probs + (b * nq + h) * T * T
                    let dO = dAttn + b * T * qWidth + h * hd
                    BLAS.gemm(m: T, n: T, k: hd, a: dO, lda: qWidth, b: v, ldb: width, bTransposed: true, c: dp)
                    BLAS.gemm(m: T, n: hd, k: T, a: p, lda: T, b: dO, ldb: qWidth, bTransposed: false, c: dv, ldc: width,
                              beta: j == 0 ? 0 : 1, aTransposed: true)
                    Kernels.softmaxBackward(p: p, dp: dp, rows: T, cols: T, scale: scale)
                    BLAS.gemm(m: T, n: hd, k: T, a: dp, b: k, ldb: width, bTransposed: false, c: drows + h * hd, ldc: width)
                    BLAS.gemm(m: T, n: hd, k: T, a: dp, lda: T, b: rows + h * hd, ldb: width, bTransposed: false, c: dk,
                              ldc: width, beta: j == 0 ? 0 : 1, aTransposed: true)
                }
                u += workers
            }
        } }
    }
}
