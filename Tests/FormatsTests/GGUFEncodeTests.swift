// The GGUF export's encoders and streamed writer: F16, BF16 and Q8_0 bytes equal gguf-py's quantize (the code
// llama.cpp's converter writes those files with, bit-exact to ggml's reference) on edge cases (Resources/encode,
// scripts/reference/make_encode_fixtures.py); a streamed file is byte-identical to the in-memory writer's and leaves
// nothing behind when not finished.
import Foundation
import Testing
@testable import Formats

@Suite struct GGUFEncodeTests {
    static let dir = Fixtures.resources.appendingPathComponent("encode")

    static func input() throws -> [Float] {
        let d = try Data(contentsOf: dir.appendingPathComponent("input.f32"))
        return d.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    @Test(arguments: [GGMLType.f16, .bf16, .q8_0])
    func encodingEqualsGGUFPy(_ type: GGMLType) throws {
        let x = try Self.input()
        #expect(x.count == 512)
        let golden = try Data(contentsOf: Self.dir.appendingPathComponent("\(type.name).bin"))
        var out = Data()
        try x.withUnsafeBufferPointer { try GGMLEncode.encode($0, as: type, into: &out) }
        #expect(out.count == golden.count)
        let differing = zip(out, golden).enumerated().filter { $0.element.0 != $0.element.1 }.map(\.offset)
        #expect(differing.isEmpty, "\(type.name): \(differing.count) bytes differ, first at \(differing.first ?? -1)")
        // decoding what was written gives back the input to the type's precision (Q8_0: half a step per block)
        if type == .q8_0 {
            for b in 0..<16 {
                let block = Array(x[(32 * b)..<(32 * b + 32)])
                let d16 = Float16(bitPattern: UInt16(out[34 * b]) | UInt16(out[34 * b + 1]) << 8), d = Float(d16)
                guard d16.isNormal else { continue }      // a subnormal f16 scale has lost the precision bounded here
                for j in 0..<32 {
                    // half a step, plus the f16 rounding of d (relative 2^-11) over at most 127 steps
                    let q = Float(Int8(bitPattern: out[34 * b + 2 + j]))
                    #expect(abs(q * d - block[j]) <= d * (0.5 + 127 * 0x1p-11) + abs(block[j]) * 1e-6)
                }
            }
        }
    }

    @Test func refusesPartialBlocksAndUnwritableTypes() throws {
        var out = Data()
        let v = [Float](repeating: 1, count: 40)
        #expect(throws: FormatError.self) { try v.withUnsafeBufferPointer { try GGMLEncode.encode($0, as: .q8_0, into: &out) } }
        #expect(throws: FormatError.self) { try v.withUnsafeBufferPointer { try GGMLEncode.encode($0, as: .q4_K, into: &out) } }
        #expect(out.isEmpty)
    }

    @Test func streamedFileEqualsTheInMemoryWriter() throws {
        let tmp = try TempDir()
        var w = GGUFWriter()
        w.set("general.architecture", .string("llama"))
        w.set("llama.attention.head_count", .int32s([4, 2, 3]))
        w.set("tokenizer.ggml.tokens", .strings(["a", "b", "c"]))
        let a: [Float] = (0..<96).map { Float($0) * 0.25 - 3 }
        var q = Data()
        try a.withUnsafeBufferPointer { try GGMLEncode.encode($0, as: .q8_0, into: &q) }
        try w.addTensor(name: "x", shape: [32, 3], values: a)
        try w.addTensor(name: "y", shape: [32, 3], type: .q8_0, bytes: Array(q))
        try w.addTensor(name: "z", shape: [5], values: [1, 2, 3, 4, 5])
        let url = tmp.file("s.gguf")
        let s = try GGUFStreamWriter(target: url, metadata: w.metadata,
                                     tensors: w.tensors.map { .init(name: $0.name, shape: $0.shape, type: $0.type) })
        try s.write(Data(a.withUnsafeBytes { Array($0) }))
        try s.write(part: q.prefix(34), of: q.count)        // in chunks
        try s.write(part: q.dropFirst(34), of: q.count)
        try s.write(Data([Float](arrayLiteral: 1, 2, 3, 4, 5).withUnsafeBytes { Array($0) }))
        try s.finish()
        #expect(try Data(contentsOf: url) == (try w.serialize()))
        let f = try GGUFFile(path: url.path)
        #expect(f.metadataValue(forKey: "llama.attention.head_count") == .int32s([4, 2, 3]))
        #expect(f.metadataValue(forKey: "tokenizer.ggml.tokens") == .strings(["a", "b", "c"]))
        #expect(try f.floats(f.tensor(named: "z")!) == [1, 2, 3, 4, 5])
    }

    @Test func anUnfinishedStreamLeavesNoFile() throws {
        let tmp = try TempDir()
        let url = tmp.file("u.gguf")
        do {
            let s = try GGUFStreamWriter(target: url, metadata: [("general.architecture", .string("llama"))],
                                         tensors: [.init(name: "x", shape: [4], type: .f32), .init(name: "y", shape: [4], type: .f32)])
            try s.write(Data(count: 16))
            #expect(throws: FormatError.self) { try s.write(Data(count: 12)) }     // wrong size
            #expect(throws: FormatError.self) { try s.finish() }                   // one tensor missing
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp.url.path).isEmpty)
    }
}
