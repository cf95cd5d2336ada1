// Corrupt and unsupported files: each must throw a FormatError whose one-line message names the file and the
// problem (never trap).
import Foundation
import Testing
@testable import Formats

struct BadInputTests {
    /// A valid one-tensor GGUF ("w", F32 [4, 2]) with one string key, plus the offset of the tensor's type field.
    static func validGGUF() throws -> (Data, typeFieldOffset: Int) {
        var w = GGUFWriter()
        w.set("general.name", .string("tiny"))
        try w.addTensor(name: "w", shape: [4, 2], values: [1, 2, 3, 4, 5, 6, 7, 8])
        let d = try w.serialize()
        // header 24 + key (8+12) + type 4 + string (8+4) = 60; tensor name (8+1), n_dims 4, ne 2*8 -> type at 89
        let typeOffset = 24 + (8 + 12) + 4 + (8 + 4) + (8 + 1) + 4 + 16
        #expect(d.le(UInt32.self, at: typeOffset) == 0)
        return (d, typeOffset)
    }

    // MARK: GGUF

    @Test func ggufBadMagic() throws {
        let tmp = try TempDir()
        var (d, _) = try BadInputTests.validGGUF()
        d.replaceSubrange(0..<4, with: Array("GGML".utf8))
        let path = try tmp.write("model.gguf", d)
        let msg = formatErrorMessage { _ = try GGUFFile(path: path) }
        #expect(msg == "\(path): bad magic 0x4C4D4747 (expected \"GGUF\")")
    }

    @Test func ggufUnsupportedVersion() throws {
        let tmp = try TempDir()
        var (d, _) = try BadInputTests.validGGUF()
        d.setLE(UInt32(1), at: 4)
        let p1 = try tmp.write("v1.gguf", d)
        let m1 = formatErrorMessage { _ = try GGUFFile(path: p1) }
        #expect(m1.hasPrefix(p1) && m1.contains("GGUF version 1 is not supported"))
        d.setLE(UInt32(4), at: 4)
        let p4 = try tmp.write("v4.gguf", d)
        let m4 = formatErrorMessage { _ = try GGUFFile(path: p4) }
        #expect(m4.hasPrefix(p4) && m4.contains("unsupported GGUF version 4"))
        d.setLE(UInt32(3).byteSwapped, at: 4)
        let pbe = try tmp.write("be.gguf", d)
        #expect(formatErrorMessage { _ = try GGUFFile(path: pbe) }.contains("big-endian"))
    }

    @Test func ggufTruncatedMetadata() throws {
        let tmp = try TempDir()
        let (d, _) = try BadInputTests.validGGUF()
        // Cut inside the value string of general.name.
        let p = try tmp.write("cut.gguf", d.prefix(58))
        let msg = formatErrorMessage { _ = try GGUFFile(path: p) }
        #expect(msg.hasPrefix(p) && msg.contains("truncated file") && msg.contains("general.name") && msg.contains("58 bytes"))
        // A string length far past the end of the file.
        var big = d
        big.setLE(UInt64(1) << 40, at: 24)
        let p2 = try tmp.write("hugekey.gguf", big)
        let msg2 = formatErrorMessage { _ = try GGUFFile(path: p2) }
        #expect(msg2.contains("truncated file") && msg2.contains("metadata key #0"))
        // Absurd tensor count.
        var many = d
        many.setLE(UInt64.max / 2, at: 8)
        let p3 = try tmp.write("many.gguf", many)
        #expect(formatErrorMessage { _ = try GGUFFile(path: p3) }.contains("tensor count"))
        // Only the magic.
        let p4 = try tmp.write("magic-only.gguf", d.prefix(4))
        #expect(formatErrorMessage { _ = try GGUFFile(path: p4) }.contains("version"))
        // Empty file.
        let p5 = try tmp.write("empty.gguf", Data())
        #expect(formatErrorMessage { _ = try GGUFFile(path: p5) }.contains("magic"))
    }

    @Test func ggufTensorDataOutOfRange() throws {
        let tmp = try TempDir()
        let (d, _) = try BadInputTests.validGGUF()
        let p = try tmp.write("model.gguf", d.prefix(d.count - 8))
        let msg = formatErrorMessage { _ = try GGUFFile(path: p) }
        #expect(msg == "\(p): tensor w data [offset \(d.count - 32), 32 bytes] out of range (file \(d.count - 8) bytes)")
    }

    @Test func ggufUnknownType() throws {
        let tmp = try TempDir()
        var (d, typeOffset) = try BadInputTests.validGGUF()
        d.setLE(UInt32(99), at: typeOffset)
        let p = try tmp.write("model.gguf", d)
        #expect(formatErrorMessage { _ = try GGUFFile(path: p) } == "\(p): tensor w has unsupported type 99")
    }

    @Test func ggufKnownButUndequantizableType() throws {
        // IQ2_XXS (16) is sized correctly but not decodable: opening works, floats() names tensor and type.
        var w = GGUFWriter()
        try w.addTensor(name: "iq", shape: [256], type: .iq2_xxs, bytes: [UInt8](repeating: 0, count: 66))
        let tmp = try TempDir()
        let p = try tmp.write("iq.gguf", try w.serialize())
        let f = try GGUFFile(path: p)
        let msg = formatErrorMessage { _ = try f.floats(f.tensors[0]) }
        #expect(msg == "\(p): tensor iq has unsupported type 16 (IQ2_XXS)")
    }

    @Test func ggufStructuralProblems() throws {
        let tmp = try TempDir()
        var (d, typeOffset) = try BadInputTests.validGGUF()
        // Q4_0 needs rows of 32: 4 is not a multiple.
        d.setLE(UInt32(2), at: typeOffset)
        let p = try tmp.write("rows.gguf", d)
        #expect(formatErrorMessage { _ = try GGUFFile(path: p) }.contains("not a multiple of the Q4_0 block size 32"))
        // Misaligned tensor offset.
        var d2 = try BadInputTests.validGGUF().0
        d2.setLE(UInt64(4), at: typeOffset + 4)
        let p2 = try tmp.write("align.gguf", d2)
        #expect(formatErrorMessage { _ = try GGUFFile(path: p2) }.contains("not a multiple of the alignment 32"))
        // Unknown metadata value type.
        var d3 = try BadInputTests.validGGUF().0
        d3.setLE(UInt32(77), at: 24 + 20)
        let p3 = try tmp.write("vtype.gguf", d3)
        #expect(formatErrorMessage { _ = try GGUFFile(path: p3) }.contains("general.name has unknown value type 77"))
        // Bad alignment value.
        var w = GGUFWriter()
        w.set("general.alignment", .uint32(3))
        let p4 = try tmp.write("badalign.gguf", try w.serialize())
        #expect(formatErrorMessage { _ = try GGUFFile(path: p4) }.contains("general.alignment"))
    }

    @Test func missingFiles() throws {
        let tmp = try TempDir()
        let g = tmp.file("absent.gguf").path
        #expect(formatErrorMessage { _ = try GGUFFile(path: g) } == "\(g): no such file")
        let s = tmp.file("absent.safetensors").path
        #expect(formatErrorMessage { _ = try SafetensorsFile(path: s) } == "\(s): no such file")
        #expect(formatErrorMessage { _ = try GGUFFile(path: tmp.url.path) }.contains("is a directory"))
    }

    @Test func notALlama() throws {
        var w = GGUFWriter()
        w.set("general.architecture", .string("gpt2"))
        let tmp = try TempDir()
        let p = try tmp.write("gpt2.gguf", try w.serialize())
        #expect(formatErrorMessage { _ = try GGUFLlamaSource(path: p) }.contains("architecture gpt2 is not a Llama-family model"))
        var w2 = GGUFWriter()
        w2.set("general.architecture", .string("llama"))
        let p2 = try tmp.write("nolayers.gguf", try w2.serialize())
        #expect(formatErrorMessage { _ = try GGUFLlamaSource(path: p2) }.contains("llama.block_count"))
    }

    // MARK: safetensors

    static let goodHeader = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#

    @Test func safetensorsHeaderLengthPastEOF() throws {
        let tmp = try TempDir()
        var d = rawSafetensors(header: BadInputTests.goodHeader, data: [UInt8](repeating: 0, count: 8))
        d.setLE(UInt64(9_999_999), at: 0)
        let p = try tmp.write("x.safetensors", d)
        #expect(formatErrorMessage { _ = try SafetensorsFile(path: p) } == "\(p): header length 9999999 past end of file (\(d.count) bytes)")
        let p2 = try tmp.write("tiny.safetensors", Data([1, 2, 3]))
        #expect(formatErrorMessage { _ = try SafetensorsFile(path: p2) }.contains("truncated file"))
    }

    @Test func safetensorsBadJSON() throws {
        let tmp = try TempDir()
        let p = try tmp.write("x.safetensors", rawSafetensors(header: #"{"a": {"dtype": "F32", "#, data: []))
        let msg = formatErrorMessage { _ = try SafetensorsFile(path: p) }
        #expect(msg.hasPrefix("\(p): bad header: header is not valid JSON"))
        let p2 = try tmp.write("y.safetensors", rawSafetensors(header: #"[1, 2]"#, data: []))
        #expect(formatErrorMessage { _ = try SafetensorsFile(path: p2) }.contains("bad header"))
        let p3 = try tmp.write("z.safetensors", rawSafetensors(header: #"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8)))
        #expect(formatErrorMessage { _ = try SafetensorsFile(path: p3) }.contains("tensor a has no shape of non-negative integers"))
    }

    @Test func safetensorsOffsetsOutOfRange() throws {
        let tmp = try TempDir()
        let header = #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#
        let d = rawSafetensors(header: header, data: [UInt8](repeating: 0, count: 8))
        let p = try tmp.write("x.safetensors", d)
        let dataStart = d.count - 8
        #expect(formatErrorMessage { _ = try SafetensorsFile(path: p) } == "\(p): tensor a data [offset \(dataStart), 16 bytes] out of range (file \(d.count) bytes)")
        // Overlap.
        let h2 = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        let p2 = try tmp.write("o.safetensors", rawSafetensors(header: h2, data: [UInt8](repeating: 0, count: 12)))
        #expect(formatErrorMessage { _ = try SafetensorsFile(path: p2) }.contains("overlap"))
    }

    @Test func safetensorsUnknownAndUnsupportedDType() throws {
        let tmp = try TempDir()
        let h = #"{"a":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}}"#
        let p = try tmp.write("x.safetensors", rawSafetensors(header: h, data: [UInt8](repeating: 0, count: 8)))
        #expect(formatErrorMessage { _ = try SafetensorsFile(path: p) } == "\(p): tensor a has unsupported dtype Q7 (readable: F32, F16, BF16)")
        let h2 = #"{"ids":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#
        let p2 = try tmp.write("y.safetensors", rawSafetensors(header: h2, data: [UInt8](repeating: 0, count: 8)))
        let f = try SafetensorsFile(path: p2)
        #expect(formatErrorMessage { _ = try f.floats("ids") } == "\(p2): tensor ids has unsupported dtype I64 (readable: F32, F16, BF16)")
    }

    @Test func safetensorsShapeSizeMismatch() throws {
        let tmp = try TempDir()
        let h = #"{"a":{"dtype":"F16","shape":[3],"data_offsets":[0,8]}}"#
        let p = try tmp.write("x.safetensors", rawSafetensors(header: h, data: [UInt8](repeating: 0, count: 8)))
        let msg = formatErrorMessage { _ = try SafetensorsFile(path: p) }
        #expect(msg == "\(p): tensor a: shape [3] × F16 (2 bytes) needs 6 bytes but data_offsets [0, 8] span 8")
    }
}
