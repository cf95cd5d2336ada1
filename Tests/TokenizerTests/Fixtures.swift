// Test support: fixture locations (from #filePath, no bundle resources), JSON fixtures, the project's dataset
// text protocol, and the tokenizer metadata of a GGUF read through Formats.
import Formats
import Foundation
import Support
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
    var scores: [Float]? = nil
    var unkId: Int? = nil
    var addSpacePrefix: Bool? = nil

    init(url: URL) throws {
        let m = try GGUFFile(path: url.path).metadata
        tokens = m["tokenizer.ggml.tokens"]?.stringArray ?? []
        merges = m["tokenizer.ggml.merges"]?.stringArray ?? []
        tokenTypes = m["tokenizer.ggml.token_type"]?.intArray
        model = m["tokenizer.ggml.model"]?.string ?? ""
        pre = m["tokenizer.ggml.pre"]?.string ?? "default"
        bosId = m["tokenizer.ggml.bos_token_id"]?.int
        eosId = m["tokenizer.ggml.eos_token_id"]?.int
        addBOS = m["tokenizer.ggml.add_bos_token"]?.bool
        scores = m["tokenizer.ggml.scores"]?.floatArray
        unkId = m["tokenizer.ggml.unknown_token_id"]?.int
        addSpacePrefix = m["tokenizer.ggml.add_space_prefix"]?.bool
    }

    func tokenizer() throws -> BPETokenizer {
        if model == "llama" {
            return try BPETokenizer(sentencePieceVocabulary: tokens, scores: scores ?? [], tokenTypes: tokenTypes,
                                    bosId: bosId, eosId: eosId, unkId: unkId, addBOS: addBOS ?? true,
                                    addSpacePrefix: addSpacePrefix ?? true)
        }
        return try BPETokenizer(vocabulary: tokens, merges: merges, tokenTypes: tokenTypes, preTokenizer: pre,
                         bosId: bosId, eosId: eosId, addBOS: addBOS ?? false)
    }
}
