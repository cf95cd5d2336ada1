// safetensors: writer layout (as the reference library writes it), round trip, F16/BF16 reading, shards.
import Foundation
import Testing
@testable import Formats

/// Builds a safetensors file from a literal header and data bytes (for dtypes the writer does not produce
/// and for corrupt files).
func rawSafetensors(header: String, data: [UInt8], pad: Bool = true) -> Data {
    var h = Array(header.utf8)
    if pad { while (8 + h.count) % 8 != 0 { h.append(0x20) } }
    var out = Data()
    withUnsafeBytes(of: UInt64(h.count).littleEndian) { out.append(contentsOf: $0) }
    out.append(contentsOf: h)
    out.append(contentsOf: data)
    return out
}

struct SafetensorsTests {
    @Test func writerLayoutMatchesReferenceLibrary() throws {
        // Bytes the Python `safetensors` package (0.8) writes for the same input (checked by hand).
        let data = try SafetensorsWriter.serialize(
            [("zeta", [2, 3], [Float](repeating: 1, count: 6)), ("alpha", [3], [0, 0, 0]), ("Mid.x", [5], [0, 1, 2, 3, 4])],
            metadata: ["format": "pt"])
        let n = Int(data.le(UInt64.self, at: 0))
        let header = String(decoding: data[8..<(8 + n)], as: UTF8.self)
        #expect(header.hasPrefix(#"{"__metadata__":{"format":"pt"},"Mid.x":{"dtype":"F32","shape":[5],"data_offsets":[0,20]},"alpha":{"dtype":"F32","shape":[3],"data_offsets":[20,32]},"zeta":{"dtype":"F32","shape":[2,3],"data_offsets":[32,56]}}"#))
        #expect((8 + n) % 8 == 0)
        #expect(header.hasSuffix(" ") || (8 + header.utf8.count) % 8 == 0)
        #expect(data.count == 8 + n + 56)
    }

    @Test func roundTrip() throws {
        let tmp = try TempDir()
        let url = tmp.file("m.safetensors")
        let a: [Float] = (0..<12).map { Float($0) * 0.25 - 1 }
        let b: [Float] = [.infinity, -0.0, .leastNonzeroMagnitude, 3.4e38]
        try SafetensorsWriter.write([("model.layers.0.mlp.up_proj.weight", [3, 4], a), ("b \"quoted\"\n", [4], b),
                                     ("scalar", [], [7]), ("empty", [0, 3], [])],
                                    metadata: ["format": "pt", "note": "ünïcode \t tab"], to: url)
        let f = try SafetensorsFile(path: url.path)
        #expect(f.metadata == ["format": "pt", "note": "ünïcode \t tab"])
        #expect(Set(f.tensorNames) == ["model.layers.0.mlp.up_proj.weight", "b \"quoted\"\n", "scalar", "empty"])
        #expect(f.shape(of: "model.layers.0.mlp.up_proj.weight") == [3, 4])
        #expect(f.dtype(of: "scalar") == "F32")
        #expect(try f.floats("model.layers.0.mlp.up_proj.weight") == a)
        #expect(try f.floats("b \"quoted\"\n").map(\.bitPattern) == b.map(\.bitPattern))
        #expect(try f.floats("scalar") == [7])
        #expect(try f.floats("empty") == [])
        #expect(f.shape(of: "nope") == nil)
        #expect(throws: FormatError.self) { try f.floats("nope") }
        // No temporary files left behind by the atomic write.
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp.url.path) == ["m.safetensors"])
    }

    @Test func largeTensorRoundTrip() throws {
        let tmp = try TempDir()
        let url = tmp.file("big.safetensors")
        let v = (0..<300_000).map { Float($0 % 1000) / 7 }
        try SafetensorsWriter.write([("w", [300, 1000], v)], metadata: [:], to: url)
        #expect(try SafetensorsFile(path: url.path).floats("w") == v)
    }

    @Test func writerRejectsBadInput() {
        #expect(throws: FormatError.self) { _ = try SafetensorsWriter.serialize([("a", [2, 2], [1, 2, 3])]) }
        #expect(throws: FormatError.self) { _ = try SafetensorsWriter.serialize([("a", [1], [1]), ("a", [1], [2])]) }
        #expect(throws: FormatError.self) { _ = try SafetensorsWriter.serialize([("__metadata__", [1], [1])]) }
    }

    @Test func readsF16AndBF16() throws {
        // F16 1.0, -2.0, 65504, smallest subnormal; BF16 1.0, -3.0 (0xC040), pi-ish (0x4049)
        let f16: [UInt16] = [0x3C00, 0xC000, 0x7BFF, 0x0001]
        let bf16: [UInt16] = [0x3F80, 0xC040, 0x4049]
        var bytes = [UInt8]()
        for h in f16 + bf16 { bytes.append(UInt8(h & 0xFF)); bytes.append(UInt8(h >> 8)) }
        let header = #"{"h":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[3],"data_offsets":[8,14]}}"#
        let tmp = try TempDir()
        let f = try SafetensorsFile(path: try tmp.write("x.safetensors", rawSafetensors(header: header, data: bytes)))
        #expect(f.tensorNames == ["h", "b"])               // data-offset order
        #expect(try f.floats("h") == [1, -2, 65504, Float(bitPattern: 0x3380_0000)])
        #expect(try f.floats("b") == [1, -3, Float(bitPattern: 0x4049_0000)])
    }

    @Test func shardedIndex() throws {
        let tmp = try TempDir()
        try SafetensorsWriter.write([("model.embed_tokens.weight", [2, 2], [1, 2, 3, 4]), ("model.norm.weight", [2], [5, 6])],
                                    metadata: ["format": "pt"], to: tmp.file("model-00001-of-00002.safetensors"))
        try SafetensorsWriter.write([("lm_head.weight", [2, 2], [7, 8, 9, 10])], metadata: ["format": "pt"],
                                    to: tmp.file("model-00002-of-00002.safetensors"))
        let index = """
        {"metadata": {"total_size": 40}, "weight_map": {
          "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
          "model.norm.weight": "model-00001-of-00002.safetensors",
          "lm_head.weight": "model-00002-of-00002.safetensors"}}
        """
        let path = try tmp.write("model.safetensors.index.json", Data(index.utf8))
        let s = try ShardedSafetensors(indexPath: path)
        #expect(s.shards.count == 2)
        #expect(s.metadata["total_size"] == "40")
        #expect(s.tensorNames == ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"])
        #expect(s.shape(of: "lm_head.weight") == [2, 2])
        #expect(try s.floats("lm_head.weight") == [7, 8, 9, 10])
        #expect(try s.floats("model.norm.weight") == [5, 6])
        let source: TensorSource = s
        #expect(source.sourceDescription.contains("2 shards"))

        // A weight_map entry whose shard lacks the tensor, and a missing shard file.
        let bad = #"{"weight_map": {"ghost": "model-00002-of-00002.safetensors"}}"#
        let badPath = try tmp.write("bad.index.json", Data(bad.utf8))
        let msg = formatErrorMessage { _ = try ShardedSafetensors(indexPath: badPath) }
        #expect(msg.contains("model-00002-of-00002.safetensors") && msg.contains("ghost"))
        let missing = #"{"weight_map": {"x": "nowhere.safetensors"}}"#
        let missingPath = try tmp.write("missing.index.json", Data(missing.utf8))
        let msg2 = formatErrorMessage { _ = try ShardedSafetensors(indexPath: missingPath) }
        #expect(msg2.contains("nowhere.safetensors") && msg2.contains("no such file"))
    }
}
