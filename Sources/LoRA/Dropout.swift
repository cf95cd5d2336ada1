// Dropout of an adapter's input (peft: lora_B(lora_A(dropout(x)))), with masks that are a pure function of
// (key, row, column): the backward sweep regenerates the forward's mask instead of storing it, and rows are
// drawn in parallel. Each element takes 32 random bits; it is kept when they are ≥ p·2³².
import Foundation
import TensorCore

struct DropoutMask {
    let p: Double
    let key: UInt64

    /// Key of one adapter's mask in one pass: distinct for every (pass seed, layer, target).
    init(p: Double, seed: UInt64, layer: Int, target: Int) {
        self.p = p
        key = Self.mix(Self.mix(seed, UInt64(layer)), UInt64(target))
    }

    static func mix(_ a: UInt64, _ b: UInt64) -> UInt64 {
        var z = a ^ (b &* 0x9E37_79B9_7F4A_7C15) &+ 0x632B_E59B_D9B4_E019
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Calls body(column, kept) for the columns of one row, in order.
    @inline(__always)
    private func forEach(row: Int, cols: Int, _ body: (Int, Bool) -> Void) {
        let threshold = UInt32(min(p * 4_294_967_296.0, 4_294_967_295.0))
        var state = Self.mix(key, UInt64(row))
        var c = 0
        while c < cols {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            body(c, UInt32(truncatingIfNeeded: z) >= threshold)
            if c + 1 < cols { body(c + 1, UInt32(truncatingIfNeeded: z >> 32) >= threshold) }
            c += 2
        }
    }

    /// dst[r, c] = kept ? src[r, c] / (1 − p) : 0, for [rows × cols] dense buffers.
    func apply(_ src: UnsafePointer<Float>, to dst: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
        let s = Float(1 / (1 - p))
        Kernels.parallelRows(rows, minRowsPerChunk: 16) { range in
            for r in range {
                let x = src + r * cols, y = dst + r * cols
                forEach(row: r, cols: cols) { c, kept in y[c] = kept ? x[c] * s : 0 }
            }
        }
    }

    /// dst[r, c] += kept ? src[r, c] / (1 − p) : 0 (the transpose of `apply`, for the input gradient).
    func accumulate(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
        let s = Float(1 / (1 - p))
        Kernels.parallelRows(rows, minRowsPerChunk: 16) { range in
            for r in range {
                let x = src + r * cols, y = dst + r * cols
                forEach(row: r, cols: cols) { c, kept in if kept { y[c] += x[c] * s } }
            }
        }
    }
}
