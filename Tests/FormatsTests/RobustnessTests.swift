// Every prefix and many random corruptions of valid files must either parse or throw a FormatError — never
// trap, hang or allocate absurd memory.
import Foundation
import Testing
@testable import Formats

/// Deterministic generator (SplitMix64) so failures reproduce.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

struct RobustnessTests {
    static func sampleGGUF() throws -> Data {
        var w = GGUFWriter()
        w.set("general.architecture", .string("llama"))
        w.set("llama.block_count", .uint32(1))
        w.set("llama.embedding_length", .uint32(4))
        w.set("llama.attention.head_count", .uint32(1))
        w.set("tokenizer.ggml.tokens", .strings(["a", "bb", "ccc"]))
        w.set("nested", .array(.array, [.int32s([1, 2]), .int32s([3])]))
        try w.addTensor(name: "token_embd.weight", shape: [4, 3], values: (0..<12).map(Float.init))
        try w.addTensor(name: "blk.0.attn_q.weight", shape: [32, 2], type: .q8_0, bytes: [UInt8](repeating: 1, count: 68))
        return try w.serialize()
    }

    static func exercise(_ path: String) {
        do {
            let f = try GGUFFile(path: path)
            for t in f.tensors { _ = try? f.floats(t) }
            if let s = try? GGUFLlamaSource(f) { for n in s.tensorNames { _ = try? s.floats(n) } }
        } catch is FormatError {
        } catch {
            Issue.record("non-FormatError \(error) for \(path)")
        }
    }

    @Test func ggufEveryPrefix() throws {
        let d = try RobustnessTests.sampleGGUF()
        let tmp = try TempDir()
        // The writer pads after the last tensor to the alignment; prefixes that keep all tensor bytes are valid.
        let full = try GGUFFile(path: try tmp.write("whole.gguf", d))
        let lastEnd = full.tensors.map { $0.fileOffset + $0.byteCount }.max() ?? d.count
        #expect(lastEnd < d.count)
        for n in lastEnd..<d.count {
            #expect(throws: Never.self) { _ = try GGUFFile(path: try tmp.write("ok.gguf", d.prefix(n))) }
        }
        for n in 0..<lastEnd {
            let p = try tmp.write("p.gguf", d.prefix(n))
            #expect(throws: FormatError.self, "prefix \(n) of \(d.count)") { _ = try GGUFFile(path: p) }
        }
        RobustnessTests.exercise(try tmp.write("full.gguf", d))
    }

    @Test func ggufRandomCorruption() throws {
        let d = try RobustnessTests.sampleGGUF()
        let tmp = try TempDir()
        var rng = SplitMix64(state: 42)
        let headerEnd = min(d.count, 400)
        for _ in 0..<1500 {
            var c = d
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let i = Int.random(in: 0..<headerEnd, using: &rng)
                c[i] = UInt8.random(in: 0...255, using: &rng)
            }
            RobustnessTests.exercise(try tmp.write("c.gguf", c))
        }
    }

    @Test func safetensorsPrefixesAndCorruption() throws {
        let good = try SafetensorsWriter.serialize([("a", [2, 2], [1, 2, 3, 4]), ("b", [3], [5, 6, 7])],
                                                   metadata: ["format": "pt"])
        let tmp = try TempDir()
        for n in 0..<good.count {
            let p = try tmp.write("p.safetensors", good.prefix(n))
            #expect(throws: FormatError.self, "prefix \(n)") { _ = try SafetensorsFile(path: p) }
        }
        var rng = SplitMix64(state: 7)
        for _ in 0..<1500 {
            var c = good
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                let i = Int.random(in: 0..<good.count, using: &rng)
                c[i] = UInt8.random(in: 0...255, using: &rng)
            }
            let p = try tmp.write("c.safetensors", c)
            do {
                let f = try SafetensorsFile(path: p)
                for n in f.tensorNames { _ = try? f.floats(n) }
            } catch is FormatError {
            } catch {
                Issue.record("non-FormatError \(error)")
            }
        }
    }
}
