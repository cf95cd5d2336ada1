// BF16Matmul against scripts/reference/make_bf16_fixtures.py: bf16-rounded inputs (torch's round to nearest even),
// float64 sums, fp32 output. A kernel with bf16 inputs and fp32 accumulation differs from that only by fp32
// summation error over K = 70 terms (≈1e-6 relative here); the same product in fp32 differs by ≈1e-3, so the
// tolerance 2e-5 both accepts the bf16 kernel and tells it from an fp32 one (checked below).
// Runs only where oneDNN has the native AVX512-BF16 kernel (BF16.unavailableReason == nil).
import Foundation
import Testing
@testable import TensorCore

private struct BF16Fixture: Decodable {
    struct Case: Decodable { let m: Int, y: [Float], y_acc: [Float], dx: [Float] }
    let out: Int, inp: Int, cases: [Case]

    static func load() throws -> BF16Fixture {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Resources/bf16_matmul.json")
        return try JSONDecoder().decode(BF16Fixture.self, from: Data(contentsOf: url))
    }
}

/// fp32 ((i·mul) mod `mod` − mod/2) / den, the fixture script's `pattern`.
private func pattern(_ count: Int, _ mul: Int, _ mod: Int, _ den: Int) -> [Float] {
    (0..<count).map { Float((($0 * mul) % mod) - mod / 2) / Float(den) }
}

/// max |a − b| / max |b|.
private func relativeError(_ a: [Float], _ b: [Float]) -> Float {
    zip(a, b).map { abs($0 - $1) }.max()! / b.map(abs).max()!
}

@Suite(.enabled(if: BF16.unavailableReason == nil, "no native bf16 products on this CPU"))
struct BF16MatmulTests {
    static let tolerance: Float = 2e-5

    @Test func productsMatchBF16Reference() throws {
        let f = try BF16Fixture.load()
        let w = pattern(f.out * f.inp, 29, 89, 211)        // [out × in]
        let forward = w.withUnsafeBufferPointer { BF16Matmul($0.baseAddress!, k: f.inp, n: f.out, transposed: true) }
        let backward = w.withUnsafeBufferPointer { BF16Matmul($0.baseAddress!, k: f.out, n: f.inp, transposed: false) }
        #expect(forward.bytes >= 2 * f.out * f.inp)
        for c in f.cases {
            let x = pattern(c.m * f.inp, 37, 101, 53), dy = pattern(c.m * f.out, 31, 97, 67)
            var y = [Float](repeating: .nan, count: c.m * f.out)
            #expect(forward.run(x, rows: c.m, into: &y, accumulate: false))
            var yAcc = pattern(c.m * f.out, 13, 61, 7)
            #expect(forward.run(x, rows: c.m, into: &yAcc, accumulate: true))
            var dx = [Float](repeating: .nan, count: c.m * f.inp)
            #expect(backward.run(dy, rows: c.m, into: &dx, accumulate: false))
            let errors = [relativeError(y, c.y), relativeError(yAcc, c.y_acc), relativeError(dx, c.dx)]
            #expect(errors.allSatisfy { $0 <= Self.tolerance }, "M=\(c.m): relative errors \(errors)")

            // The fp32 product of the same inputs is measurably off the bf16 reference: the kernel did round.
            var y32 = [Float](repeating: 0, count: c.m * f.out)
            BLAS.gemm(m: c.m, n: f.out, k: f.inp, a: x, b: w, bTransposed: true, c: &y32)
            #expect(relativeError(y32, c.y) > 50 * Self.tolerance, "M=\(c.m): fp32 is as close as bf16")
        }
    }

    @Test func nativeKernelIsBrgemm() {
        #expect(BF16.implementation(rows: 8, k: 64, n: 64) == "brg:avx512_core_bf16")
    }
}
