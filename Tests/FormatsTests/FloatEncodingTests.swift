// fp32 → bf16 / f16 narrowing (FloatEncoding): hand-checked cases (ties to even, overflow, NaN, subnormals), an
// independent oracle (the nearest representable value found in Double arithmetic, ties to the even bit pattern) on
// random values of every magnitude, and a safetensors round trip: what the writer encodes, the reader widens back
// to exactly the rounded values, bit for bit.
import Foundation
import Testing
@testable import Formats

/// Nearest-even rounding computed without the encoder: the two neighbours of |x| among `values` (ascending,
/// non-negative, indexed by bit pattern) compared in Double; `overflow` is where rounding reaches infinity's pattern.
private func oracle(_ x: Float, below: (Double) -> (lo: UInt16, hi: UInt16), value: (UInt16) -> Double) -> UInt16 {
    let sign: UInt16 = x.sign == .minus ? 0x8000 : 0
    let a = abs(Double(x))
    let (lo, hi) = below(a)
    let dl = a - value(lo), dh = value(hi) - a
    let bits = dl < dh ? lo : dl > dh ? hi : (lo & 1 == 0 ? lo : hi)
    return sign | bits
}

/// The bf16 oracle: truncation and the next pattern up bracket |x|; pattern 0x7F80 stands for 2^128, the value a
/// rounding past the largest finite bf16 reaches.
private func bf16Oracle(_ x: Float) -> UInt16 {
    oracle(x, below: { a in
        let lo = UInt16(truncatingIfNeeded: Float(a).bitPattern >> 16)
        return Double(bfloat16ToFloat(lo)) == a ? (lo, lo) : (lo, lo + 1)
    }, value: { $0 == 0x7F80 ? 0x1p128 : Double(bfloat16ToFloat($0)) })
}

/// Every non-negative finite half, ascending (pattern order is value order), with 2^16 standing for infinity.
private let halfValues: [Double] = (0...0x7C00).map { $0 == 0x7C00 ? 65536 : Double(halfToFloat(UInt16($0))) }

private func f16Oracle(_ x: Float) -> UInt16 {
    oracle(x, below: { a in
        if a >= 65536 { return (0x7C00, 0x7C00) }
        var lo = 0, hi = halfValues.count - 1                   // largest index with value ≤ a
        while lo < hi { let m = (lo + hi + 1) / 2; if halfValues[m] <= a { lo = m } else { hi = m - 1 } }
        return halfValues[lo] == a ? (UInt16(lo), UInt16(lo)) : (UInt16(lo), UInt16(lo + 1))
    }, value: { halfValues[Int($0)] })
}

struct FloatEncodingTests {
    @Test func bf16Cases() {
        func b(_ bits: UInt32) -> UInt16 { FloatEncoding.bf16(Float(bitPattern: bits)) }
        #expect(FloatEncoding.bf16(1) == 0x3F80 && FloatEncoding.bf16(-2) == 0xC000)
        #expect(b(0x3F80_8000) == 0x3F80)          // tie, even below: down
        #expect(b(0x3F81_8000) == 0x3F82)          // tie, odd below: up to even
        #expect(b(0x3F80_8001) == 0x3F81)          // above the tie: up
        #expect(b(0x3F80_7FFF) == 0x3F80)          // below the tie: down
        #expect(b(0x7F7F_FFFF) == 0x7F80)          // largest float rounds to infinity
        #expect(b(0x7F7F_7FFF) == 0x7F7F)          // the largest bf16 keeps below its tie
        #expect(b(0x8000_0000) == 0x8000 && b(0x0001_0000) == 0x0001 && b(0x0000_8000) == 0x0000)   // −0, subnormals
        #expect(FloatEncoding.bf16(.infinity) == 0x7F80 && FloatEncoding.bf16(-.infinity) == 0xFF80)
        #expect(FloatEncoding.bf16(.nan) == 0x7FC0 && b(0x7F80_0001) == 0x7FC0)   // a NaN does not carry into ∞
    }

    @Test func f16Cases() {
        #expect(FloatEncoding.f16(1) == 0x3C00 && FloatEncoding.f16(-2) == 0xC000)
        #expect(FloatEncoding.f16(2049) == 0x6800)         // 2048|2050 tie → 2048 (even)
        #expect(FloatEncoding.f16(2051) == 0x6802)         // 2050|2052 tie → 2052 (even)
        #expect(FloatEncoding.f16(65504) == 0x7BFF && FloatEncoding.f16(65519) == 0x7BFF)
        #expect(FloatEncoding.f16(65520) == 0x7C00)        // the tie past the largest half → ∞
        #expect(FloatEncoding.f16(0x1p-24) == 0x0001)      // smallest subnormal
        #expect(FloatEncoding.f16(0x1p-25) == 0x0000)      // 0|2^-24 tie → 0
        #expect(FloatEncoding.f16(0x1.8p-24) == 0x0002)    // 1|2 (×2^-24) tie → 2
        #expect(FloatEncoding.f16(-0.0) == 0x8000 && halfToFloat(FloatEncoding.f16(.nan)).isNaN)
    }

    @Test func randomValuesAgreeWithTheOracle() {
        var rng = SystemRandomNumberGenerator()
        var bfMismatch = 0, hMismatch = 0
        for i in 0..<200_000 {
            // Any finite float for bf16; for f16 the exponents around its range (2^-26 … 2^17), both signs.
            var bits = UInt32.random(in: 0...UInt32.max, using: &rng)
            if i % 4 == 0 { bits = (bits & 0xFFFF_0000) | 0x8000 }      // exact bf16 ties
            let x = Float(bitPattern: bits)
            if x.isFinite, FloatEncoding.bf16(x) != bf16Oracle(x) { bfMismatch += 1 }
            let e = UInt32.random(in: 101...144, using: &rng)
            var m = UInt32.random(in: 0..<(1 << 23), using: &rng)
            if i % 4 == 1 { m = (m & ~0x1FFF) | 0x1000 }                 // exact f16 ties (normal range)
            let y = Float(bitPattern: (bits & 0x8000_0000) | (e << 23) | m)
            if FloatEncoding.f16(y) != f16Oracle(y) { hMismatch += 1 }
        }
        #expect(bfMismatch == 0 && hMismatch == 0, "bf16 mismatches \(bfMismatch), f16 mismatches \(hMismatch)")
    }

    @Test(arguments: TensorDType.allCases)
    func writtenTensorsReadBackAsTheRoundedValues(dtype: TensorDType) throws {
        let tmp = try TempDir()
        var rng = SystemRandomNumberGenerator()
        // One tensor past parallelRanges' 2^16 threshold (narrowed on several cores), one small, one of edge values.
        let big = (0..<100_003).map { _ in Float.random(in: -4...4, using: &rng) * 0.02 }
        let small = (0..<17).map { _ in Float.random(in: -1...1, using: &rng) }
        let edges: [Float] = [0, -0.0, 1, 0x1.01p0, 0x1.008p0, 0x1.018p0, 65519, 65520, 0x1p-24, 0x1p-25, 3e38, -3e38,
                              .leastNonzeroMagnitude, .infinity, -.infinity]
        let tensors: [(String, [Float])] = [("big", big), ("small", small), ("edges", edges)]
        let url = tmp.file("t.safetensors")
        let specs = tensors.map { SafetensorsWriter.Spec(name: $0.0, shape: [$0.1.count], dtype: dtype.safetensorsName) }
        try SafetensorsWriter.stream(specs, to: url) { FloatEncoding.encode(tensors[$0].1, as: dtype) }
        let f = try SafetensorsFile(path: url.path)
        #expect((try FileManager.default.attributesOfItem(atPath: url.path)[.size] as? NSNumber)?.intValue
                == f.dataOffset + dtype.byteCount * tensors.reduce(0) { $0 + $1.1.count })
        for (name, v) in tensors {
            #expect(f.dtype(of: name) == dtype.safetensorsName)
            let back = try f.floats(name)
            let want = v.map { FloatEncoding.rounded($0, to: dtype) }
            #expect(back.map(\.bitPattern) == want.map(\.bitPattern), "\(name)")
            // The rounded value is the oracle's, and rounding it again changes nothing.
            switch dtype {
            case .f32: #expect(back.map(\.bitPattern) == v.map(\.bitPattern))
            case .bf16: #expect(want.map(\.bitPattern) == v.map { bfloat16ToFloat(bf16Oracle($0)).bitPattern })
            case .f16: #expect(want.map(\.bitPattern) == v.map { halfToFloat(f16Oracle($0)).bitPattern })
            }
            #expect(want.map { FloatEncoding.rounded($0, to: dtype).bitPattern } == want.map(\.bitPattern))
        }
    }

    @Test func dtypeNames() {
        #expect(TensorDType.allCases.map(\.safetensorsName) == ["F32", "BF16", "F16"])
        #expect(TensorDType.allCases.map(\.torchName) == ["float32", "bfloat16", "float16"])
        #expect(TensorDType(safetensorsName: "BF16") == .bf16 && TensorDType(safetensorsName: "bf16") == nil)
        #expect(TensorDType(safetensorsName: "Q4_1") == nil && TensorDType(rawValue: "f16") == .f16)
    }
}
