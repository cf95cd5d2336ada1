// Causal GQA attention over a fused [N × (nq + 2·nkv)·hd] q|k|v buffer, forward and backward, per (sequence,
// head) with single-threaded BLAS on each core. The backward serves GradientPass and the LoRA pass; the forward
// keeps the softmax (the LoRA backward always needs it; LlamaRunner's own forward keeps it only when asked).
import Foundation
import TensorCore

public enum AttentionCore {
    /// attn[N × nq·hd] = softmax(Q Kᵀ/√hd, causal) V per sequence and head; probs[(b·nq + h)·T²] keeps the softmax.
    public static func forward(qkv: UnsafePointer<Float>, probs: UnsafeMutablePointer<Float>, attn: UnsafeMutablePointer<Float>,
                        batch: Int, seqLen T: Int, nq: Int, nkv: Int, hd: Int) {
        let width = (nq + 2 * nkv) * hd, qWidth = nq * hd, rep = nq / nkv
        let scale = 1 / Float(hd).squareRoot()
        let pairs = batch * nq
        let workers = min(ProcessInfo.processInfo.activeProcessorCount, pairs)
        let savedThreads = BLAS.threads
        BLAS.threads = 1
        DispatchQueue.concurrentPerform(iterations: workers) { wk in
            var p = wk
            while p < pairs {
                let b = p / nq, h = p % nq, g = h / rep
                let scores = probs + p * T * T
                let rows = qkv + b * T * width
                BLAS.gemm(m: T, n: T, k: hd, a: rows + h * hd, lda: width, b: rows + (nq + g) * hd, ldb: width,
                          bTransposed: true, c: scores)
                Kernels.causalSoftmax(scores, rows: T, cols: T, shift: 0, scale: scale)
                BLAS.gemm(m: T, n: hd, k: T, a: scores, b: rows + (nq + nkv + g) * hd, ldb: width, bTransposed: false,
                          c: attn + b * T * qWidth + h * hd, ldc: qWidth)
                p += workers
            }
        }
        BLAS.threads = savedThreads
    }

    /// Per (sequence, KV group), the group's query heads one after another (they share dK, dV):
    /// dP = dO·Vᵀ, dV += Pᵀ·dO, dS = softmax'(dP)/√hd, dQ = dS·K, dK += dSᵀ·Q. Writes every column of dqkv.
    public static func backward(qkv: UnsafePointer<Float>, probs: UnsafePointer<Float>, dAttn: UnsafePointer<Float>,
                         dqkv: UnsafeMutablePointer<Float>, batch: Int, seqLen T: Int, nq: Int, nkv: Int, hd: Int) {
        let width = (nq + 2 * nkv) * hd, qWidth = nq * hd, rep = nq / nkv
        let scale = 1 / Float(hd).squareRoot()
        let units = batch * nkv
        let workers = min(ProcessInfo.processInfo.activeProcessorCount, units)
        let savedThreads = BLAS.threads
        BLAS.threads = 1
        DispatchQueue.concurrentPerform(iterations: workers) { wk in
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
        }
        BLAS.threads = savedThreads
    }
}
