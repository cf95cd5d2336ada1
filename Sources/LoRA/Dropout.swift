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

    /// The eight 0/1 factors of each byte of mask bits, low bit first: a row is scaled eight columns at a time
    /// (one table load and one vector multiply), with exactly the products of the per-column form, x · (s · bit).
    private static let byteFactors: UnsafePointer<SIMD8<Float>> = {
        let t = UnsafeMutablePointer<SIMD8<Float>>.allocate(capacity: 256)
        for b in 0..<256 {
            var v = SIMD8<Float>()
            for j in 0..<8 { v[j] = Float((b >> j) & 1) }
            t[b] = v
        }
        return UnsafePointer(t)
    }()

    /// Over one row: `body(column, factors)` for each whole group of eight columns (factors = s · bit of each), then
    /// `tail(column, factor)` for the columns after the last whole group.
    @inline(__always)
    private static func row(_ bits: UnsafePointer<UInt64>, cols: Int, scale s: Float,
                            _ body: (Int, SIMD8<Float>) -> Void, tail: (Int, Float) -> Void) {
        let table = byteFactors
        let bytes = UnsafeRawPointer(bits).assumingMemoryBound(to: UInt8.self)   // little-endian: byte k = bits 8k…
        let groups = cols / 8
        for g in 0..<groups { body(g * 8, s * table[Int(bytes[g])]) }
        for c in groups * 8..<cols { tail(c, s * Float((bits[c / 64] >> UInt64(c % 64)) & 1)) }
    }

    /// y = kept ? x / (1 − p) : 0, for dense [rows × cols] buffers.
    func apply(_ x: UnsafePointer<Float>, to y: UnsafeMutablePointer<Float>) { masked(x, into: y, accumulate: false) }

    /// y += kept ? x / (1 − p) : 0 (the transpose of `apply`, for the input gradient).
    func accumulate(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>) { masked(x, into: y, accumulate: true) }

    /// y = x · (s · bit), or y += that.
    private func masked(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, accumulate: Bool) {
        let w = words, wpr = wordsPerRow, cols = cols, s = scale
        Kernels.parallelRows(rows, minRowsPerChunk: 16) { range in
            for r in range {
                let xr = UnsafeRawPointer(x + r * cols), yr = UnsafeMutableRawPointer(y + r * cols)
                Self.row(w + r * wpr, cols: cols, scale: s, { c, f in
                    let v = xr.loadUnaligned(fromByteOffset: 4 * c, as: SIMD8<Float>.self) * f
                    yr.storeBytes(of: accumulate ? yr.loadUnaligned(fromByteOffset: 4 * c, as: SIMD8<Float>.self) + v : v,
                                  toByteOffset: 4 * c, as: SIMD8<Float>.self)
                }, tail: { c, f in
                    let v = xr.load(fromByteOffset: 4 * c, as: Float.self) * f
                    yr.storeBytes(of: accumulate ? yr.load(fromByteOffset: 4 * c, as: Float.self) + v : v,
                                  toByteOffset: 4 * c, as: Float.self)
                })
            }
        }
    }

    var keptCount: Int {
        var n = 0
        for i in 0..<rows * wordsPerRow { n += words[i].nonzeroBitCount }
        return n
    }
}
