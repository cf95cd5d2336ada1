// Test support: fixture locations (from #filePath, no bundle resources), JSON fixtures, the project's dataset
// text protocol, SHA-256, and a minimal GGUF metadata reader -- test-only, so these tests need neither Python
// nor the Formats module.
import Foundation
import Tokenizer

enum Fixtures {
    static let testsDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    static let resources = testsDir.appendingPathComponent("Resources")
    static let packageRoot = testsDir.deletingLastPathComponent().deletingLastPathComponent()

    /// models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf under the package root, or $LLMPRUNE_SMOLLM2_GGUF.
    static var smolGGUF: URL {
        if let p = ProcessInfo.processInfo.environment["LLMPRUNE_SMOLLM2_GGUF"], !p.isEmpty {
            return URL(fileURLWithPath: p)
        }
        return packageRoot.appendingPathComponent("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    }
    static var smolGGUFExists: Bool { FileManager.default.fileExists(atPath: smolGGUF.path) }

    /// Decodes a fixture with JSONDecoder (Linux JSONSerialization drops a raw U+FEFF after a quote).
    static func load<T: Decodable>(_ type: T.Type, _ name: String) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(contentsOf: resources.appendingPathComponent(name)))
    }

    /// The project's dataset text: the file's lines (split on "\n"), empty lines dropped, joined with "\n\n".
    static func datasetText(_ url: URL) throws -> String {
        let data = try Data(contentsOf: url)
        var out = [UInt8]()
        out.reserveCapacity(data.count + data.count / 8)
        for line in data.split(separator: 0x0A, omittingEmptySubsequences: true) {
            if !out.isEmpty { out.append(0x0A); out.append(0x0A) }
            out.append(contentsOf: line)
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func int32LEBytes(_ ids: [Int32]) -> [UInt8] {
        var b = [UInt8]()
        b.reserveCapacity(ids.count * 4)
        for id in ids { let u = UInt32(bitPattern: id.littleEndian); for k in 0..<4 { b.append(UInt8((u >> (8 * k)) & 0xFF)) } }
        return b
    }
}

struct TinyExpected: Decodable {
    struct Entry: Decodable {
        var without_special: [[Int32]]
        var with_special: [[Int32]]
        var decoded: [String]
    }
    var strings: [String]
    var tricky_count: Int
    var tokenizers: [String: Entry]
}

struct SmolExpected: Decodable {
    struct Facts: Decodable {
        var bos_token_id: Int
        var eos_token_id: Int
        var len: Int
        var hello_ids: [Int32]
    }
    struct FileEntry: Decodable {
        var path: String
        var chars: Int
        var count: Int
        var sha256: String
        var first: [Int32]
        var last: [Int32]
    }
    var facts: Facts
    var strings: [String]
    var ids: [[Int32]]
    var llama3_split_ids: [[Int32]]
    var add_bos_ids: [[Int32]]
    var gpt4o_split_ids: [[Int32]]
    var files: [String: FileEntry]
    var llama3_split_files: [String: FileEntry]

    static func load() throws -> SmolExpected { try Fixtures.load(SmolExpected.self, "smollm2_expected.json") }
}

struct FixtureError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

// MARK: SHA-256 (FIPS 180-4)

enum SHA256 {
    private static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    static func hex(_ message: [UInt8]) -> String {
        var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
        var m = message
        let bitLen = UInt64(message.count) * 8
        m.append(0x80)
        while m.count % 64 != 56 { m.append(0) }
        for i in (0..<8).reversed() { m.append(UInt8((bitLen >> (8 * UInt64(i))) & 0xFF)) }
        @inline(__always) func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
        var w = [UInt32](repeating: 0, count: 64)
        for chunk in stride(from: 0, to: m.count, by: 64) {
            for i in 0..<16 {
                let j = chunk + 4 * i
                w[i] = UInt32(m[j]) << 24 | UInt32(m[j + 1]) << 16 | UInt32(m[j + 2]) << 8 | UInt32(m[j + 3])
            }
            for i in 16..<64 {
                let s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
                let s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
                w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
            }
            var (a, b, c, d, e, f, g, hh) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])
            for i in 0..<64 {
                let s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
                let ch = (e & f) ^ (~e & g)
                let t1 = hh &+ s1 &+ ch &+ k[i] &+ w[i]
                let s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
                let maj = (a & b) ^ (a & c) ^ (b & c)
                let t2 = s0 &+ maj
                (hh, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
            }
            h[0] = h[0] &+ a; h[1] = h[1] &+ b; h[2] = h[2] &+ c; h[3] = h[3] &+ d
            h[4] = h[4] &+ e; h[5] = h[5] &+ f; h[6] = h[6] &+ g; h[7] = h[7] &+ hh
        }
        return h.map { v in (0..<8).map { String((v >> (28 - 4 * UInt32($0))) & 0xF, radix: 16) }.joined() }.joined()
    }
}

// MARK: minimal GGUF metadata reader (test-only)

/// The tokenizer metadata of a GGUF file: just enough to build a `BPETokenizer` the way the integration will.
struct GGUFTokenizerMetadata {
    var tokens: [String] = []
    var merges: [String] = []
    var tokenTypes: [Int]? = nil
    var model = ""
    var pre = "default"
    var bosId: Int? = nil
    var eosId: Int? = nil
    var addBOS: Bool? = nil

    init(url: URL) throws {
        let data = try Data(contentsOf: url, options: .alwaysMapped)
        var r = Reader(data: data)
        guard try r.bytes(4) == Array("GGUF".utf8) else { throw FixtureError("\(url.path): not a GGUF file") }
        let version: UInt32 = try r.scalar()
        guard version >= 2 else { throw FixtureError("GGUF version \(version) unsupported") }
        let _: UInt64 = try r.scalar()  // tensor count
        let kvCount: UInt64 = try r.scalar()
        for _ in 0..<kvCount {
            let key = try r.string()
            let type: UInt32 = try r.scalar()
            switch key {
            case "tokenizer.ggml.tokens": tokens = try r.stringArray(type)
            case "tokenizer.ggml.merges": merges = try r.stringArray(type)
            case "tokenizer.ggml.token_type": tokenTypes = try r.intArray(type)
            case "tokenizer.ggml.model": model = try r.value(type) as? String ?? ""
            case "tokenizer.ggml.pre": pre = try r.value(type) as? String ?? "default"
            case "tokenizer.ggml.bos_token_id": bosId = try r.value(type) as? Int
            case "tokenizer.ggml.eos_token_id": eosId = try r.value(type) as? Int
            case "tokenizer.ggml.add_bos_token": addBOS = try r.value(type) as? Bool
            default: _ = try r.value(type)
            }
        }
    }

    func tokenizer() throws -> BPETokenizer {
        try BPETokenizer(vocabulary: tokens, merges: merges, tokenTypes: tokenTypes, preTokenizer: pre,
                         bosId: bosId, eosId: eosId, addBOS: addBOS ?? false)
    }

    private struct Reader {
        let data: Data
        var pos = 0

        mutating func bytes(_ n: Int) throws -> [UInt8] {
            guard pos + n <= data.count else { throw FixtureError("GGUF truncated") }
            defer { pos += n }
            return [UInt8](data[(data.startIndex + pos)..<(data.startIndex + pos + n)])
        }

        mutating func scalar<T: FixedWidthInteger>() throws -> T {
            let b = try bytes(MemoryLayout<T>.size)
            var v: T = 0
            for (i, x) in b.enumerated() { v |= T(truncatingIfNeeded: x) << (8 * i) }
            return v
        }

        mutating func string() throws -> String {
            let n: UInt64 = try scalar()
            return String(decoding: try bytes(Int(n)), as: UTF8.self)
        }

        static let sizes: [UInt32: Int] = [0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8]

        mutating func value(_ type: UInt32) throws -> Any {
            switch type {
            case 0: return Int(try scalar() as UInt8)
            case 1: return Int(try scalar() as Int8)
            case 2: return Int(try scalar() as UInt16)
            case 3: return Int(try scalar() as Int16)
            case 4: return Int(try scalar() as UInt32)
            case 5: return Int(try scalar() as Int32)
            case 6: return Float(bitPattern: try scalar() as UInt32)
            case 7: return (try scalar() as UInt8) != 0
            case 8: return try string()
            case 10: return Int(try scalar() as UInt64)
            case 11: return Int(try scalar() as Int64)
            case 12: return Double(bitPattern: try scalar() as UInt64)
            case 9:
                let et: UInt32 = try scalar()
                let n: UInt64 = try scalar()
                if let size = Self.sizes[et] { pos += size * Int(n); return n }
                for _ in 0..<n { _ = try value(et) }
                return n
            default: throw FixtureError("GGUF value type \(type) unknown")
            }
        }

        mutating func arrayHeader(_ type: UInt32) throws -> (UInt32, Int) {
            guard type == 9 else { throw FixtureError("GGUF: expected an array") }
            let et: UInt32 = try scalar()
            let n: UInt64 = try scalar()
            return (et, Int(n))
        }

        mutating func stringArray(_ type: UInt32) throws -> [String] {
            let (et, n) = try arrayHeader(type)
            guard et == 8 else { throw FixtureError("GGUF: expected a string array") }
            var out = [String](); out.reserveCapacity(n)
            for _ in 0..<n { out.append(try string()) }
            return out
        }

        mutating func intArray(_ type: UInt32) throws -> [Int] {
            let (et, n) = try arrayHeader(type)
            var out = [Int](); out.reserveCapacity(n)
            for _ in 0..<n { out.append(try value(et) as? Int ?? 0) }
            return out
        }
    }
}
