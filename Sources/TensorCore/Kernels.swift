// Element-wise and row-wise kernels of the Llama forward: RMSNorm, rotary embedding, SwiGLU, softmax and the
// cross-entropy of logits rows. Loops run over raw pointers so the optimiser vectorises them; rows are
// spread over cores with `parallelRows` when there are enough of them.
import Foundation

public enum Kernels {
    /// Runs `body(rowRange)` over `rows` split into contiguous chunks, concurrently when the work is large.
    @inline(__always)
    public static func parallelRows(_ rows: Int, minRowsPerChunk: Int = 16, _ body: (Range<Int>) -> Void) {
        // Fewer than two chunks' worth of rows (a generation step's one row) runs here, without asking Foundation for
        // the core count: that call reads the cgroup CPU limits on Linux, tens of µs, more than the row takes.
        if rows < 2 * max(minRowsPerChunk, 1) { body(0..<rows); return }
        let chunks = max(1, min(ProcessInfo.processInfo.activeProcessorCount, rows / max(minRowsPerChunk, 1)))
        if chunks == 1 { body(0..<rows); return }
        let per = (rows + chunks - 1) / chunks
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let lo = c * per, hi = min(rows, lo + per)
            if lo < hi { body(lo..<hi) }
        }
    }

    /// y[r] (+)= W[r, :]·x for a weight W stored [rows × cols] (a Linear's layout) and one input row x: the product
    /// of a generation step. One sequential pass over W, a dot product per row, on `threads` contiguous blocks of
    /// rows. On this project's machine OpenBLAS' sgemv reads 576-wide rows at about half the bandwidth of one
    /// sequential stream (9 vs 17+ GB/s, measured); a decode step is nothing but these products.
    public static func matvec(_ w: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                              rows: Int, cols: Int, accumulate: Bool, threads: Int) {
        func block(_ range: Range<Int>) {
            for r in range {
                let v = VectorMath.dot(w + r * cols, x, cols)
                y[r] = accumulate ? y[r] + v : v
            }
        }
        let chunks = max(1, min(threads, rows * cols / (1 << 16)))
        if chunks == 1 { block(0..<rows); return }
        let per = (rows + chunks - 1) / chunks
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let lo = c * per, hi = min(rows, lo + per)
            if lo < hi { block(lo..<hi) }
        }
    }

    /// out[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) · weight, for `rows` rows of width `dim`.
    public static func rmsNorm(_ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
                               rows: Int, dim: Int, eps: Float) {
        parallelRows(rows, minRowsPerChunk: 32) { range in
            for r in range {
                let xr = x + r * dim, yr = out + r * dim
                let inv = 1 / (VectorMath.sumOfSquares(xr, dim) / Float(dim) + eps).squareRoot()
                VectorMath.scaleMul(xr, inv, weight, yr, dim)
            }
        }
    }

    /// Applies rotary embedding in place to `heads` heads of width `headDim` that start at column `colOffset`
    /// of every row of a [tokens × rowStride] buffer. Token t of the row uses position `positions[t]`.
    /// HF layout (`rotate_half`): dimension j pairs with j + headDim/2.
    /// cos/sin tables are [maxPos × headDim/2].
    public static func rope(_ buf: UnsafeMutablePointer<Float>, tokens: Int, rowStride: Int, colOffset: Int,
                            heads: Int, headDim: Int, positions: (Int) -> Int,
                            cos: UnsafePointer<Float>, sin: UnsafePointer<Float>) {
        let half = headDim / 2
        parallelRows(tokens, minRowsPerChunk: 64) { range in
            for t in range {
                let p = positions(t)
                let c = cos + p * half, s = sin + p * half
                let row = buf + t * rowStride + colOffset
                for h in 0..<heads {
                    let v = row + h * headDim
                    for j in 0..<half {
                        let a = v[j], b = v[j + half]
                        v[j] = a * c[j] - b * s[j]
                        v[j + half] = b * c[j] + a * s[j]
                    }
                }
            }
        }
    }

    /// act[r, i] = silu(gu[r, i]) · gu[r, I + i] for a [rows × 2I] gate‖up buffer, written to [rows × I].
    public static func swiglu(_ gu: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, rows: Int, inner: Int) {
        parallelRows(rows, minRowsPerChunk: 16) { range in
            for r in range {
                let g = gu + r * 2 * inner
                VectorMath.swiglu(g, g + inner, out + r * inner, inner)
            }
        }
    }

    /// In-place causal softmax of a [q × k] score block: row i keeps columns 0...(i + shift), the rest are 0; with
    /// a sliding `window` W, columns below i + shift + 1 − W are 0 too. `scale` multiplies the scores first.
    public static func causalSoftmax(_ s: UnsafeMutablePointer<Float>, rows: Int, cols: Int, shift: Int, scale: Float,
                                     window: Int? = nil) {
        for i in 0..<rows {
            let row = s + i * cols
            let n = min(cols, i + shift + 1)
            // A sliding window of W keeps keys u with t − W < u ≤ t (transformers' sliding_window_overlay).
            let lo = window.map { min(n, max(0, i + shift + 1 - $0)) } ?? 0
            if lo > 0 { row.update(repeating: 0, count: lo) }
            let r = row + lo, m = n - lo
            VectorMath.scale(r, scale, r, m)
            let sum = VectorMath.expInPlace(r, m, shift: VectorMath.max(r, m))
            VectorMath.scale(r, 1 / sum, r, m)
            (row + n).update(repeating: 0, count: cols - n)
        }
    }

    /// Negative log-likelihood of `target` under softmax(logits[0..<n]): log Σ exp(l − max) + max − l[target].
    @inline(__always)
    public static func nll(_ logits: UnsafePointer<Float>, count n: Int, target: Int) -> Double {
        let mx = VectorMath.max(logits, n)
        let sum = VectorMath.sumExp(logits, n, shift: mx)
        return Double(Foundation.log(sum)) + Double(mx) - Double(logits[target])
    }
}
