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
                var state = DropoutMask.mix(m.key, UInt64(r))
                // Column pairs (c, c+1), c even, take the low and high halves of one SplitMix64 output; a word holds
                // 64 columns, so a pair never straddles two words and each word is built in a register.
                for wi in 0..<wpr {
                    let end = min(64, cols - wi * 64)
                    var bits: UInt64 = 0
                    var j = 0
                    while j < end {
                        state &+= 0x9E37_79B9_7F4A_7C15
                        var z = state
                        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
                        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
                        z ^= z >> 31
                        let lo: UInt64 = UInt32(truncatingIfNeeded: z) >= threshold ? 1 : 0
                        let hi: UInt64 = j + 1 < end && UInt32(truncatingIfNeeded: z >> 32) >= threshold ? 1 : 0
                        bits |= (lo | hi << 1) << UInt64(j)
                        j += 2
                    }
                    row[wi] = bits
                }
            }
        }
    }

    /// `body(column, bit)` over one row's columns, each mask word read once (bit: 0 or 1).
    @inline(__always)
    private static func columns(_ bits: UnsafePointer<UInt64>, cols: Int, _ body: (Int, Float) -> Void) {
        var c = 0, wi = 0
        while c < cols {
            let word = bits[wi], end = min(cols, c + 64)
            var j: UInt64 = 0
            while c < end {
                body(c, Float((word >> j) & 1))
                c += 1
                j += 1
            }
            wi += 1
        }
    }

    /// y = kept ? x / (1 − p) : 0, for dense [rows × cols] buffers.
    func apply(_ x: UnsafePointer<Float>, to y: UnsafeMutablePointer<Float>) {
        let w = words, wpr = wordsPerRow, cols = cols, s = scale
        Kernels.parallelRows(rows, minRowsPerChunk: 16) { range in
            for r in range {
                let xr = x + r * cols, yr = y + r * cols
                Self.columns(w + r * wpr, cols: cols) { c, bit in yr[c] = xr[c] * (s * bit) }
            }
        }
    }

    /// y += kept ? x / (1 − p) : 0 (the transpose of `apply`, for the input gradient).
    func accumulate(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>) {
        let w = words, wpr = wordsPerRow, cols = cols, s = scale
        Kernels.parallelRows(rows, minRowsPerChunk: 16) { range in
            for r in range {
                let xr = x + r * cols, yr = y + r * cols
                Self.columns(w + r * wpr, cols: cols) { c, bit in yr[c] += xr[c] * (s * bit) }
            }
        }
    }

    var keptCount: Int {
        var n = 0
        for i in 0..<rows * wordsPerRow { n += words[i].nonzeroBitCount }
        return n
    }
}
