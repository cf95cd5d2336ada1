// Dropout of an adapter's input (peft: lora_B(lora_A(dropout(x)))). Masks are a pure function of
// (pass seed, layer, target, row, column), drawn once per forward into one bit per element; the backward
// reads the same bits. Each element takes 32 random bits and is kept when they are ≥ p·2³².
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
}

/// Keep (1) / drop (0) bits of a [rows × cols] adapter input, rows padded to whole 64-bit words.
final class DropoutBits {
    private var words: UnsafeMutablePointer<UInt64>
    private var capacity: Int
    private(set) var rows = 0, cols = 0, wordsPerRow = 0
    private(set) var scale: Float = 1

    init() {
        capacity = 1
        words = .allocate(capacity: 1)
    }
    deinit { words.deallocate() }

    /// Draws the mask of `m` for a [rows × cols] input (rows in parallel, each from its own SplitMix64 stream).
    func fill(_ m: DropoutMask, rows: Int, cols: Int) {
        self.rows = rows
        self.cols = cols
        wordsPerRow = (cols + 63) / 64
        scale = Float(1 / (1 - m.p))
        if rows * wordsPerRow > capacity {
            words.deallocate()
            capacity = rows * wordsPerRow
            words = .allocate(capacity: capacity)
        }
        let threshold = UInt32(min(m.p * 4_294_967_296.0, 4_294_967_295.0))
        let w = words, wpr = wordsPerRow
        Kernels.parallelRows(rows, minRowsPerChunk: 16) { range in
            for r in range {
                let row = w + r * wpr
                row.update(repeating: 0, count: wpr)
                var state = DropoutMask.mix(m.key, UInt64(r))
                var c = 0
                while c < cols {
                    state &+= 0x9E37_79B9_7F4A_7C15
                    var z = state
                    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
                    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
                    z ^= z >> 31
                    if UInt32(truncatingIfNeeded: z) >= threshold { row[c >> 6] |= 1 << UInt64(c & 63) }
                    if c + 1 < cols, UInt32(truncatingIfNeeded: z >> 32) >= threshold {
                        row[(c + 1) >> 6] |= 1 << UInt64((c + 1) & 63)
                    }
                    c += 2
                }
            }
        }
    }

    /// y = kept ? x / (1 − p) : 0, for dense [rows × cols] buffers.
    func apply(_ x: UnsafePointer<Float>, to y: UnsafeMutablePointer<Float>) {
        let w = words, wpr = wordsPerRow, cols = cols, s = scale
        Kernels.parallelRows(rows, minRowsPerChunk: 16) { range in
            for r in range {
                let bits = w + r * wpr, xr = x + r * cols, yr = y + r * cols
                for c in 0..<cols { yr[c] = xr[c] * (s * Float((bits[c >> 6] >> UInt64(c & 63)) & 1)) }
            }
        }
    }

    /// y += kept ? x / (1 − p) : 0 (the transpose of `apply`, for the input gradient).
    func accumulate(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>) {
        let w = words, wpr = wordsPerRow, cols = cols, s = scale
        Kernels.parallelRows(rows, minRowsPerChunk: 16) { range in
            for r in range {
                let bits = w + r * wpr, xr = x + r * cols, yr = y + r * cols
                for c in 0..<cols { yr[c] += xr[c] * (s * Float((bits[c >> 6] >> UInt64(c & 63)) & 1)) }
            }
        }
    }

    var keptCount: Int {
        var n = 0
        for i in 0..<rows * wordsPerRow { n += words[i].nonzeroBitCount }
        return n
    }
}
