// Float rows to the bytes of a ggml tensor type, as ggml itself writes them, for the GGUF export:
// - F16: IEEE half, round to nearest even (ggml_compute_fp32_to_fp16; Swift's Float16(_:) rounds the same way);
// - BF16: the top 16 bits rounded to nearest even, NaN forced quiet (ggml_compute_fp32_to_bf16, ggml-impl.h);
// - Q8_0: blocks of 32, d = max|x| / 127 stored as F16, q = roundf(x · (1/d)) (quantize_row_q8_0_ref,
//   ggml-quants.c; roundf rounds halves away from zero).
import Foundation

public enum GGMLEncode {
    /// The types the export writes.
    public static let writableTypes: [GGMLType] = [.f32, .f16, .bf16, .q8_0]

    /// Bytes `values` take in `type` (values must be whole rows: a multiple of the block size).
    public static func byteCount(elements: Int, type: GGMLType) -> Int {
        elements / type.blockSize * type.typeSize
    }

    /// Encodes `values` (whole blocks) as `type`, appending the bytes to `out`.
    public static func encode(_ values: UnsafeBufferPointer<Float>, as type: GGMLType, into out: inout Data) throws {
        let n = values.count
        guard writableTypes.contains(type) else {
            throw FormatError.unsupportedType(path: "<GGMLEncode>", tensor: "?", type: type.rawValue)
        }
        guard n % type.blockSize == 0 else {
            throw FormatError.shapeMismatch(path: "<GGMLEncode>", tensor: "?",
                                            reason: "\(n) values are not whole \(type.name) blocks of \(type.blockSize)")
        }
        let start = out.count
        out.count += byteCount(elements: n, type: type)
        out.withUnsafeMutableBytes { raw in
            let dst = raw.baseAddress! + start
            switch type {
            case .f32:
                if n > 0 { memcpy(dst, values.baseAddress!, 4 * n) }
            case .f16:      // storeBytes: `start` need not be 2-byte aligned
                for i in 0..<n { dst.storeBytes(of: fp16(values[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
            case .bf16:
                for i in 0..<n { dst.storeBytes(of: bf16(values[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
            default:   // q8_0
                for b in 0..<(n / 32) { q8_0Block(values.baseAddress! + 32 * b, dst + 34 * b) }
            }
        }
    }

    /// ggml_compute_fp32_to_fp16: round to nearest even (overflow to infinity, NaN stays NaN).
    @inline(__always)
    public static func fp16(_ x: Float) -> UInt16 { Float16(x).bitPattern }

    /// ggml_compute_fp32_to_bf16.
    @inline(__always)
    public static func bf16(_ x: Float) -> UInt16 {
        let u = x.bitPattern
        if u & 0x7fff_ffff > 0x7f80_0000 { return UInt16(truncatingIfNeeded: u >> 16) | 64 }   // NaN: force quiet
        return UInt16(truncatingIfNeeded: (u &+ (0x7fff &+ ((u >> 16) & 1))) >> 16)
    }

    /// One block_q8_0 (d as F16, then 32 int8) from 32 floats, as quantize_row_q8_0_ref.
    @inline(__always)
    static func q8_0Block(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var amax: Float = 0
        for j in 0..<32 { amax = max(amax, abs(x[j])) }
        let d = amax / 127
        let id: Float = d != 0 ? 1 / d : 0
        y.storeBytes(of: fp16(d).littleEndian, as: UInt16.self)
        for j in 0..<32 {
            // |x·id| ≤ 127 for finite input; a non-finite value (refused before encoding) would not convert.
            let v = (x[j] * id).rounded(.toNearestOrAwayFromZero)
            y.storeBytes(of: v.isFinite ? Int8(max(-128, min(127, v))) : 0, toByteOffset: 2 + j, as: Int8.self)
        }
    }
}
