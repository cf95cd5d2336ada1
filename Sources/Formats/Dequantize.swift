// Block decoders for the ggml tensor types, bit-exact with ggml's `dequantize_row_*` and with gguf-py's
// `gguf.quants.dequantize` (which transformers uses to load GGUF files). Every product is evaluated in Float in
// the same order as the references (Swift never fuses a*b+c into an FMA), so results match to the last bit.
//
// Callers must pass `src` with at least nBlocks * typeSize readable bytes and `dst` with room for
// nBlocks * blockSize floats; `GGUFFile` checks both against the file before calling.
import Foundation

/// Exact IEEE half → single conversion (subnormals, infinities and NaN payloads included).
@inline(__always)
public func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exp = UInt32(h >> 10) & 0x1F
    let mant = UInt32(h & 0x03FF)
    if exp == 0x1F { return Float(bitPattern: sign | 0x7F80_0000 | (mant << 13)) }
    if exp != 0 { return Float(bitPattern: sign | ((exp + 112) << 23) | (mant << 13)) }
    if mant == 0 { return Float(bitPattern: sign) }
    // Subnormal half: mant * 2^-24, exact in Float.
    let v = Float(mant) * 5.9604644775390625e-08
    return sign != 0 ? -v : v
}

/// BF16 → Float is a plain widening of the bit pattern.
@inline(__always)
public func bfloat16ToFloat(_ b: UInt16) -> Float { Float(bitPattern: UInt32(b) << 16) }

@inline(__always) private func u8(_ p: UnsafeRawPointer, _ i: Int) -> UInt8 { p.load(fromByteOffset: i, as: UInt8.self) }
@inline(__always) private func i8(_ p: UnsafeRawPointer, _ i: Int) -> Int8 { p.load(fromByteOffset: i, as: Int8.self) }
@inline(__always) private func f16(_ p: UnsafeRawPointer, _ i: Int) -> Float {
    halfToFloat(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: i, as: UInt16.self)))
}

enum Dequantizer {
    /// Types `decode` handles.
    static func supports(_ t: GGMLType) -> Bool {
        switch t {
        case .f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K: return true
        default: return false
        }
    }

    /// Decodes `nBlocks` consecutive blocks of type `t`. Returns false for unsupported types.
    @discardableResult
    static func decode(_ t: GGMLType, _ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ nBlocks: Int) -> Bool {
        switch t {
        case .f32:
            memcpy(dst, src, nBlocks * 4)           // little-endian host (x86-64 / arm64 Linux)
        case .f16:
            for i in 0..<nBlocks { dst[i] = f16(src, 2 * i) }
        case .bf16:
            for i in 0..<nBlocks {
                dst[i] = bfloat16ToFloat(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
            }
        case .q4_0: q4_0(src, dst, nBlocks)
        case .q4_1: q4_1(src, dst, nBlocks)
        case .q5_0: q5_0(src, dst, nBlocks)
        case .q5_1: q5_1(src, dst, nBlocks)
        case .q8_0: q8_0(src, dst, nBlocks)
        case .q2_K: q2_K(src, dst, nBlocks)
        case .q3_K: q3_K(src, dst, nBlocks)
        case .q4_K: q4_K(src, dst, nBlocks)
        case .q5_K: q5_K(src, dst, nBlocks)
        case .q6_K: q6_K(src, dst, nBlocks)
        default: return false
        }
        return true
    }

    // block_q4_0 { half d; uint8 qs[16] }: x = d * (q - 8); low nibbles are elements 0..15, high 16..31.
    static func q4_0(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ nb: Int) {
        for b in 0..<nb {
            let p = src + b * 18, y = dst + b * 32
            let d = f16(p, 0)
            for j in 0..<16 {
                let q = u8(p, 2 + j)
                y[j] = d * Float(Int32(q & 0x0F) - 8)
                y[j + 16] = d * Float(Int32(q >> 4) - 8)
            }
        }
    }

    // block_q4_1 { half d; half m; uint8 qs[16] }: x = d * q + m.
    static func q4_1(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ nb: Int) {
        for b in 0..<nb {
            let p = src + b * 20, y = dst + b * 32
            let d = f16(p, 0), m = f16(p, 2)
            for j in 0..<16 {
                let q = u8(p, 4 + j)
                y[j] = d * Float(q & 0x0F) + m
                y[j + 16] = d * Float(q >> 4) + m
            }
        }
    }

    // block_q5_0 { half d; uint8 qh[4]; uint8 qs[16] }: bit j of qh is the 5th bit of element j.
    static func q5_0(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ nb: Int) {
        for b in 0..<nb {
            let p = src + b * 22, y = dst + b * 32
            let d = f16(p, 0)
            let qh = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 2, as: UInt32.self))
            for j in 0..<16 {
                let q = UInt32(u8(p, 6 + j))
                let lo = (q & 0x0F) | (((qh >> UInt32(j)) & 1) << 4)
                let hi = (q >> 4) | (((qh >> UInt32(j + 16)) & 1) << 4)
                y[j] = d * Float(Int32(lo) - 16)
                y[j + 16] = d * Float(Int32(hi) - 16)
            }
        }
    }

    // block_q5_1 { half d; half m; uint8 qh[4]; uint8 qs[16] }: x = d * q + m.
    static func q5_1(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ nb: Int) {
        for b in 0..<nb {
            let p = src + b * 24, y = dst + b * 32
            let d = f16(p, 0), m = f16(p, 2)
            let qh = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
            for j in 0..<16 {
                let q = UInt32(u8(p, 8 + j))
                let lo = (q & 0x0F) | (((qh >> UInt32(j)) & 1) << 4)
                let hi = (q >> 4) | (((qh >> UInt32(j + 16)) & 1) << 4)
                y[j] = d * Float(lo) + m
                y[j + 16] = d * Float(hi) + m
            }
        }
    }

    // block_q8_0 { half d; int8 qs[32] }: x = q * d.
    static func q8_0(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ nb: Int) {
        for b in 0..<nb {
            let p = src + b * 34, y = dst + b * 32
            let d = f16(p, 0)
            for j in 0..<32 { y[j] = Float(i8(p, 2 + j)) * d }
        }
    }

    // block_q2_K { uint8 scales[16]; uint8 qs[64]; half d; half dmin } (84 bytes, 256 values).
    // Element e = 128*h + 32*s + l takes bits 2s..2s+1 of qs[32h + l]; sub-block e/16 has scale
    // d * (scales & 15) and min dmin * (scales >> 4): x = dl * q - ml.
    static func q2_K(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ nb: Int) {
        for b in 0..<nb {
            let p = src + b * 84, y = dst + b * 256
            let d = f16(p, 80), dmin = f16(p, 82)
            for h in 0..<2 {
                for s in 0..<4 {
                    for half in 0..<2 {
                        let e0 = 128 * h + 32 * s + 16 * half
                        let sc = u8(p, e0 / 16)
                        let dl = d * Float(sc & 0x0F), ml = dmin * Float(sc >> 4)
                        for l in 0..<16 {
                            let q = (u8(p, 16 + 32 * h + 16 * half + l) >> UInt8(2 * s)) & 3
                            y[e0 + l] = dl * Float(q) - ml
                        }
                    }
                }
            }
        }
    }

    // block_q3_K { uint8 hmask[32]; uint8 qs[64]; uint8 scales[12]; half d } (110 bytes).
    // 16 six-bit scales (packed: low nibbles in bytes 0..7, high 2-bit pairs in 8..11), minus 32.
    // Element e = 128*h + 32*s + l: low bits (qs[32h+l] >> 2s) & 3, minus 4 unless bit e/32 of hmask[l] is set.
    static func q3_K(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ nb: Int) {
        for b in 0..<nb {
            let p = src + b * 110, y = dst + b * 256
            let d = f16(p, 108)
            for g in 0..<16 {                        // 16-value groups sharing one scale
                let lo = g < 8 ? u8(p, 96 + g) & 0x0F : u8(p, 96 + g - 8) >> 4
                let hi = (u8(p, 104 + g % 4) >> UInt8(2 * (g / 4))) & 3
                let dl = d * Float(Int32(lo | (hi << 4)) - 32)
                let e0 = 16 * g
                let h = e0 / 128, s = (e0 % 128) / 32, l0 = e0 % 32
                let shift = UInt8(2 * s), bit = UInt8(e0 / 32)
                for l in l0..<(l0 + 16) {
                    let ql = Int32((u8(p, 32 + 32 * h + l) >> shift) & 3)
                    let q = ql - (((u8(p, l) >> bit) & 1) == 0 ? 4 : 0)
                    y[e0 - l0 + l] = dl * Float(q)
                }
            }
        }
    }

    /// The 8 six-bit (scale, min) pairs of Q4_K / Q5_K, packed in 12 bytes at `p`.
    @inline(__always)
    static func scaleMinK4(_ j: Int, _ p: UnsafeRawPointer) -> (UInt8, UInt8) {
        if j < 4 {
            return (u8(p, j) & 63, u8(p, j + 4) & 63)
        }
        let sc = (u8(p, j + 4) & 0x0F) | ((u8(p, j - 4) >> 6) << 4)
        let m = (u8(p, j + 4) >> 4) | ((u8(p, j) >> 6) << 4)
        return (sc, m)
    }

    // block_q4_K { half d; half dmin; uint8 scales[12]; uint8 qs[128] } (144 bytes).
    // Sub-block j (32 values) = nibble (j & 1) of qs[32*(j/2) + l]; x = (d*sc) * q - (dmin*m).
    static func q4_K(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ nb: Int) {
        for b in 0..<nb {
            let p = src + b * 144, y = dst + b * 256
            let d = f16(p, 0), dmin = f16(p, 2)
            for j in 0..<8 {
                let (sc, m) = scaleMinK4(j, p + 4)
                let d1 = d * Float(sc), m1 = dmin * Float(m)
                let shift = UInt8(4 * (j & 1))
                let qs = 16 + 32 * (j >> 1)
                let yj = y + 32 * j
                for l in 0..<32 {
                    yj[l] = d1 * Float((u8(p, qs + l) >> shift) & 0x0F) - m1
                }
            }
        }
    }

    // block_q5_K { half d; half dmin; uint8 scales[12]; uint8 qh[32]; uint8 qs[128] } (176 bytes).
    // As Q4_K, with bit j of qh[l] as the 5th bit of value l of sub-block j.
    static func q5_K(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ nb: Int) {
        for b in 0..<nb {
            let p = src + b * 176, y = dst + b * 256
            let d = f16(p, 0), dmin = f16(p, 2)
            for j in 0..<8 {
                let (sc, m) = scaleMinK4(j, p + 4)
                let d1 = d * Float(sc), m1 = dmin * Float(m)
                let shift = UInt8(4 * (j & 1))
                let qs = 48 + 32 * (j >> 1)
                let yj = y + 32 * j
                for l in 0..<32 {
                    let q = ((u8(p, qs + l) >> shift) & 0x0F) | (((u8(p, 16 + l) >> UInt8(j)) & 1) << 4)
                    yj[l] = d1 * Float(q) - m1
                }
            }
        }
    }

    // block_q6_K { uint8 ql[128]; uint8 qh[64]; int8 scales[16]; half d } (210 bytes).
    // Element e = 128*h + r: low 4 bits = nibble (r / 64) of ql[64h + r % 64], high 2 bits =
    // (qh[32h + r % 32] >> 2*(r / 32)) & 3; x = (d * scales[e/16]) * (q - 32).
    static func q6_K(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ nb: Int) {
        for b in 0..<nb {
            let p = src + b * 210, y = dst + b * 256
            let d = f16(p, 208)
            for h in 0..<2 {
                for s in 0..<4 {                     // 32-value groups within the half: r = 32s + l
                    let r0 = 32 * s
                    let shiftL = UInt8(4 * (r0 / 64)), shiftH = UInt8(2 * s)
                    for half in 0..<2 {
                        let e0 = 128 * h + r0 + 16 * half
                        let ds = d * Float(i8(p, 192 + e0 / 16))
                        for l in (16 * half)..<(16 * half + 16) {
                            let lo = (u8(p, 64 * h + (r0 + l) % 64) >> shiftL) & 0x0F
                            let hi = (u8(p, 128 + 32 * h + l) >> shiftH) & 3
                            let q = Int32(lo | (hi << 4)) - 32
                            y[128 * h + r0 + l] = ds * Float(q)
                        }
                    }
                }
            }
        }
    }
}
