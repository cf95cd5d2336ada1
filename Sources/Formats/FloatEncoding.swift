// The float dtypes llmprune writes tensors in, and the one fp32 → bf16 / f16 narrowing every writer uses (the pruned,
// merged and synthetic models). Both round to nearest, ties to even, as PyTorch's `tensor.to(torch.bfloat16)` /
// `.to(torch.float16)` do (c10/util/BFloat16.h `round_to_nearest_even`; IEEE 754 conversion for half), so a model
// written here holds the values `model.to(dtype).save_pretrained()` would write from the same fp32 weights.
// The widening side is `bfloat16ToFloat` / `halfToFloat` (Dequantize.swift); widen(narrow(x)) is `rounded(x, to:)`.
import Foundation

/// A float dtype of a written tensor. The raw value is the command line's name (`--dtype f32|bf16|f16`).
public enum TensorDType: String, CaseIterable, Codable, Sendable {
    case f32, bf16, f16

    /// safetensors' name: F32, BF16, F16.
    public var safetensorsName: String { rawValue.uppercased() }

    /// The dtype of a safetensors name ("F32", "BF16", "F16"); nil for any other (integer, fp8, quantised GGUF types).
    public init?(safetensorsName s: String) {
        guard let d = Self.allCases.first(where: { $0.safetensorsName == s }) else { return nil }
        self = d
    }

    /// torch's name, as config.json's `torch_dtype` / `dtype` say it: float32, bfloat16, float16.
    public var torchName: String {
        switch self {
        case .f32: "float32"
        case .bf16: "bfloat16"
        case .f16: "float16"
        }
    }

    /// Bytes per element.
    public var byteCount: Int { self == .f32 ? 4 : 2 }
}

public enum FloatEncoding {
    /// bfloat16 bits of `x`: the top half of its fp32 bits, rounded to nearest even on the dropped half; overflow
    /// rounds to ±infinity. NaN becomes 0x7FC0 (c10's canonical quiet NaN), since adding the rounding bias to a NaN
    /// with only low payload bits would carry it into infinity.
    @inline(__always)
    public static func bf16(_ x: Float) -> UInt16 {
        if x.isNaN { return 0x7FC0 }
        let b = x.bitPattern
        return UInt16(truncatingIfNeeded: (b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16)
    }

    /// IEEE half bits of `x`: Swift's Float16 conversion rounds to nearest even, overflows to ±infinity and keeps
    /// subnormals, as IEEE 754 (and torch's float → half) does.
    @inline(__always)
    public static func f16(_ x: Float) -> UInt16 { Float16(x).bitPattern }

    /// The value `x` becomes when written in `dtype` and read back: exact for f32, else rounded as above.
    @inline(__always)
    public static func rounded(_ x: Float, to dtype: TensorDType) -> Float {
        switch dtype {
        case .f32: x
        case .bf16: bfloat16ToFloat(bf16(x))
        case .f16: halfToFloat(f16(x))
        }
    }

    /// Little-endian bytes of `v` in `dtype`, written straight into the result (no intermediate array); a large
    /// tensor is narrowed on all cores.
    public static func encode(_ v: UnsafeBufferPointer<Float>, as dtype: TensorDType) -> Data {
        if dtype == .f32 { return Data(buffer: v) }
        var out = Data(count: 2 * v.count)
        guard let src = v.baseAddress else { return out }
        out.withUnsafeMutableBytes { raw in
            let input = SendableRawPointer(UnsafeRawPointer(src))
            let output = SendableHalfPointer(raw.bindMemory(to: UInt16.self).baseAddress!)
            parallelRanges(v.count) { lo, hi in
                let x = input.p.assumingMemoryBound(to: Float.self)
                if dtype == .bf16 {
                    for i in lo..<hi { output.p[i] = bf16(x[i]).littleEndian }
                } else {
                    for i in lo..<hi { output.p[i] = f16(x[i]).littleEndian }
                }
            }
        }
        return out
    }

    /// `encode` of an array.
    public static func encode(_ v: [Float], as dtype: TensorDType) -> Data {
        v.withUnsafeBufferPointer { encode($0, as: dtype) }
    }
}

/// 16-bit output shared by the workers of `parallelRanges`, which write disjoint ranges.
private struct SendableHalfPointer: @unchecked Sendable {
    let p: UnsafeMutablePointer<UInt16>
    init(_ p: UnsafeMutablePointer<UInt16>) { self.p = p }
}
