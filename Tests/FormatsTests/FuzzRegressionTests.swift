// Inputs found by the libFuzzer harnesses in scripts/fuzz/ (or minimised from them): each must be refused with a
// FormatError whose message is one line and names the file — never a trap, a hang or a multi-line message.
import Foundation
import Testing
@testable import Formats

struct FuzzRegressionTests {
    static let dir = Fixtures.resources.appendingPathComponent("fuzz")

    static func message(_ name: String, _ open: (String) throws -> Void) -> String {
        let path = dir.appendingPathComponent(name).path
        let m = formatErrorMessage { try open(path) }
        #expect(m.hasPrefix(path), "message must start with the file: \(m)")
        #expect(!m.contains(where: { $0.isNewline }), "message must be one line: \(m.debugDescription)")
        return m
    }

    /// A metadata key holding a newline and an escape sequence, then an unknown value type: the key used to be
    /// pasted raw into the message, splitting it over lines (and writing terminal escapes).
    @Test func ggufKeyWithControlCharacters() {
        let m = Self.message("gguf_key_newline_bad_type.gguf") { _ = try GGUFFile(path: $0) }
        #expect(m.contains("\\u{0}tokenizer\\nggml\\u{1B}[2J.scores"))
        #expect(m.contains("unknown value type"))
    }

    /// A 4000-byte tensor name full of newlines with an unknown type: one line, capped in length.
    @Test func ggufLongTensorName() {
        let m = Self.message("gguf_long_tensor_name.gguf") { _ = try GGUFFile(path: $0) }
        #expect(m.contains("more characters)"))
        #expect(m.unicodeScalars.count < 1040)
    }

    /// A safetensors tensor name and dtype with control characters.
    @Test func safetensorsNameWithNewline() {
        let m = Self.message("safetensors_name_newline.safetensors") { _ = try SafetensorsFile(path: $0) }
        #expect(m.contains("a\\nb\\r\\u{1B}"))
    }

    /// Every file in Resources/fuzz is refused by every parser that could be pointed at it, with a one-line error.
    @Test func everyFuzzInputIsAThrownOneLineError() throws {
        for name in try FileManager.default.contentsOfDirectory(atPath: Self.dir.path).sorted() {
            _ = Self.message(name) { _ = try GGUFFile(path: $0) }
            _ = Self.message(name) { _ = try SafetensorsFile(path: $0) }
        }
    }

    /// An index naming an absolute shard path that does not exist (found by the fuzzer): the error named only
    /// the missing shard; it now also says which index listed it.
    @Test func indexWithMissingAbsoluteShard() {
        let index = Self.dir.appendingPathComponent("index_absolute_missing_shard.json").path
        let m = formatErrorMessage { _ = try ShardedSafetensors(indexPath: index) }
        #expect(m == "/nonexistent-llmprune-fuzz/model-00002-of-00002.safetensors: no such file (a shard listed in \(index))")
    }

    /// Found while reviewing the index harness (not by the fuzzer): a weight_map entry naming a FIFO used to block
    /// forever in open(2); every file is now opened non-blocking and must be a regular file.
    @Test func shardThatIsAFIFOIsRefusedNotAwaited() throws {
        let tmp = try TempDir()
        let fifo = tmp.file("model-00001-of-00001.safetensors").path
        #expect(mkfifo(fifo, 0o600) == 0)
        let index = try tmp.write("model.safetensors.index.json",
                                  Data(#"{"weight_map": {"w": "model-00001-of-00001.safetensors"}}"#.utf8))
        let m = formatErrorMessage { _ = try ShardedSafetensors(indexPath: index) }
        #expect(m.hasPrefix(fifo) && m.contains("not a regular file"), "\(m)")
    }
}
