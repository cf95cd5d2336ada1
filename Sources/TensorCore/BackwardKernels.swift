// Row kernels of the backward pass: RMSNorm, SwiGLU, softmax. Each is the exact derivative of its forward
// twin in Kernels.swift.
import Foundation

extension Kernels {
    /// dx[r] (+)= d/dx of y = w ⊙ x · inv, inv = (mean(x²) + eps)^(−½), given dy:
    /// dx = inv · (w ⊙ dy) − x · inv³ / dim · Σ(w ⊙ dy ⊙ x). `accumulate` adds into dx.
    public static func rmsNormBackward(x: UnsafePointer<Float>, weight: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                                       dx: UnsafeMutablePointer<Float>, rows: Int, dim: Int, eps: Float,
                                       accumulate: Bool) {
        parallelRows(rows, minRowsPerChunk: 32) { range in
            for r in range {
                let xr = x + r * dim, gr = dy + r * dim, or = dx + r * dim
                let inv = 1 / (VectorMath.sumOfSquares(xr, dim) / Float(dim) + eps).squareRoot()
                var dot: Float = 0
                for i in 0..<dim { dot += weight[i] * gr[i] * xr[i] }
                let k = inv * inv * inv / Float(dim) * dot
                if accumulate {
                    for i in 0..<dim { or[i] += inv * weight[i] * gr[i] - xr[i] * k }
                } else {
                    for i in 0..<dim { or[i] = inv * weight[i] * gr[i] - xr[i] * k }
                }
            }
        }
    }

    /// Backward of act = silu(g) · u for a [rows × 2I] gate‖up buffer: writes d(gate‖up) into dgu [rows × 2I].
    /// silu'(g) = σ(g) · (1 + g · (1 − σ(g))).
    public static func swigluBackward(_ gu: UnsafePointer<Float>, dAct: UnsafePointer<Float>,
                                      dgu: UnsafeMutablePointer<Float>, rows: Int, inner: Int) {
        parallelRows(rows, minRowsPerChunk: 16) { range in
            for r in range {
                let g = gu + r * 2 * inner, u = g + inner, da = dAct + r * inner
                let dg = dgu + r * 2 * inner, du = dg + inner
                for i in 0..<inner {
                    let x = g[i]
                    let s = 1 / (1 + VectorMath.exp(-x))
                    du[i] = da[i] * x * s
                    dg[i] = da[i] * u[i] * s * (1 + x * (1 - s))
                }
            }
        }
    }

    /// In place: dP ← P ⊙ (dP − Σⱼ dPᵢⱼ Pᵢⱼ) · scale, the gradient of the pre-softmax scores (times the score
    /// scale), for a causal [rows × cols] block (entries above the diagonal stay 0 because P is 0 there).
    public static func softmaxBackward(p: UnsafePointer<Float>, dp: UnsafeMutablePointer<Float>, rows: Int, cols: Int,
                                       scale: Float) {
        for i in 0..<rows {
            let pr = p + i * cols, gr = dp + i * cols
            let n = min(cols, i + 1)
            var dot: Float = 0
            for j in 0..<n { dot += pr[j] * gr[j] }
            for j in 0..<n { gr[j] = pr[j] * (gr[j] - dot) * scale }
            for j in n..<cols { gr[j] = 0 }
        }
    }
}
