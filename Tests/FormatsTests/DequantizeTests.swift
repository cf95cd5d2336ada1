// Golden dequantization: raw blocks and gguf-py's expected floats, written by
// scripts/reference/make_quant_fixtures.py. Each fixture goes through a real GGUF file (written with GGUFWriter)
// and GGUFFile.floats, and must match bit for bit.
import Foundation
import Testing
@testable import Formats

struct DequantizeTests {
    struct Case: Sendable, CustomStringConvertible {
        let name: String
        var description: String { name }
    }

    static let types = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
                        "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"].map(Case.init)

    @Test("dequantize matches gguf-py bit for bit", arguments: types)
    func golden(_ c: Case) throws {
        let dir = Fixtures.resources.appendingPathComponent("quant")
        let manifestData = try Data(contentsOf: dir.appendingPathComponent("manifest.json"))
        let manifest = try #require(try JSONSerialization.jsonObject(with: manifestData) as? [String: [String: Int]])
        let entry = try #require(manifest[c.name], "fixture \(c.name) missing from manifest")
        let rawType = try #require(entry["ggml_type"]).magnitude
        let type = try #require(GGMLType(rawValue: UInt32(rawType)))
        #expect(type.name == c.name)
        let raw = try [UInt8](Data(contentsOf: dir.appendingPathComponent("\(c.name).bin")))
        let expected = try floatsFromFile(dir.appendingPathComponent("\(c.name).f32"))
        #expect(expected.count == entry["elements"])
        #expect(raw.count == entry["bytes"])

        // Two rows, so the row loop is exercised as well.
        let rowLength = expected.count / 2
        var w = GGUFWriter()
        try w.addTensor(name: "t", shape: [rowLength, 2], type: type, bytes: raw)
        let tmp = try TempDir()
        let path = try tmp.write("q.gguf", try w.serialize())
        let file = try GGUFFile(path: path)
        let info = try #require(file.tensor(named: "t"))
        #expect(info.byteCount == raw.count)
        let got = try file.floats(info)
        #expect(got.count == expected.count)
        var mismatches = 0
        var firstBad = -1
        for i in 0..<min(got.count, expected.count) where got[i].bitPattern != expected[i].bitPattern {
            mismatches += 1
            if firstBad < 0 { firstBad = i }
        }
        #expect(mismatches == 0, "\(c.name): \(mismatches) values differ; first at \(firstBad): got \(firstBad >= 0 ? got[firstBad] : 0) expected \(firstBad >= 0 ? expected[firstBad] : 0)")
    }

    @Test func halfConversionIsExactForAllBitPatterns() {
        for bits in 0...UInt16.max {
            let ours = halfToFloat(bits)
            let swift = Float(Float16(bitPattern: bits))
            if swift.isNaN {
                #expect(ours.isNaN)
            } else if ours.bitPattern != swift.bitPattern {
                Issue.record("half 0x\(String(bits, radix: 16)): \(ours) != \(swift)")
                return
            }
        }
    }

    @Test func largeTensorUsesParallelPathAndMatchesSerial() throws {
        // 64 rows × 4096 Q8_0 values: big enough for the concurrent path; compare with a block-by-block decode.
        let rows = 64, cols = 4096
        var raw = [UInt8]()
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<(rows * cols / 32) {
            let d = Float16(Float.random(in: -0.01...0.01, using: &rng)).bitPattern
            raw.append(UInt8(d & 0xFF)); raw.append(UInt8(d >> 8))
            for _ in 0..<32 { raw.append(UInt8.random(in: 0...255, using: &rng)) }
        }
        var w = GGUFWriter()
        try w.addTensor(name: "big", shape: [cols, rows], type: .q8_0, bytes: raw)
        let tmp = try TempDir()
        let file = try GGUFFile(path: try tmp.write("big.gguf", try w.serialize()))
        let got = try file.floats(try #require(file.tensor(named: "big")))
        var expected = [Float](repeating: 0, count: rows * cols)
        raw.withUnsafeBytes { src in
            expected.withUnsafeMutableBufferPointer { dst in
                for b in 0..<(rows * cols / 32) {
                    Dequantizer.decode(.q8_0, src.baseAddress! + 34 * b, dst.baseAddress! + 32 * b, 1)
                }
            }
        }
        #expect(got == expected)
    }
}
