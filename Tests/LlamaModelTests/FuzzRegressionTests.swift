// Config inputs found by (or minimised from) the libFuzzer harnesses in scripts/fuzz/: each must be refused with a
// ModelError (or FormatError) whose message is one line and names the file — never a trap or a huge allocation.
import Foundation
import Testing
import Formats
@testable import LlamaModel

struct FuzzRegressionTests {
    static let dir = resources.appendingPathComponent("fuzz")

    static func expectRefused(_ name: String, sourceLocation: SourceLocation = #_sourceLocation,
                              _ body: (String) throws -> Void) -> String {
        let path = dir.appendingPathComponent(name).path
        do {
            try body(path)
            Issue.record("\(name): expected an error", sourceLocation: sourceLocation)
            return ""
        } catch {
            let m = "\(error)"
            #expect(error is ModelError || error is FormatError, "\(type(of: error)): \(m)", sourceLocation: sourceLocation)
            #expect(m.hasPrefix(path), "message must start with the file: \(m)", sourceLocation: sourceLocation)
            #expect(!m.contains(where: { $0.isNewline }), "one line: \(m.debugDescription)", sourceLocation: sourceLocation)
            return m
        }
    }

    static func configJSON(_ path: String) throws {
        _ = try LlamaConfig(configJSON: try Data(contentsOf: URL(fileURLWithPath: path)), source: path)
    }

    /// llama.block_count = -3 used to trap in `Array(repeating:count:)`; 4e9 tried to allocate ~96 GB of layers.
    @Test func ggufBlockCountOutOfRange() {
        let neg = Self.expectRefused("gguf_block_count_negative.gguf") { _ = try ModelLoader.config(path: $0) }
        #expect(neg.contains("llama.block_count -3"))
        let huge = Self.expectRefused("gguf_block_count_huge.gguf") { _ = try ModelLoader.config(path: $0) }
        #expect(huge.contains("llama.block_count 4000000000"))
    }

    /// num_hidden_layers = 10^12 used to allocate the layer array before validating.
    @Test func configHugeLayerCount() {
        let m = Self.expectRefused("config_layers_huge.json", Self.configJSON)
        #expect(m.contains("num_hidden_layers 1000000000000"))
    }

    /// vocab_size 25184467440737095516166 (found by the fuzzer) passed validation and then trapped on overflow
    /// in `parameterCount`.
    @Test func configVocabOverflow() {
        let m = Self.expectRefused("config_vocab_overflow.json", Self.configJSON)
        #expect(m.contains("overflows"))
    }

    /// A model_type with a newline is quoted in the error, which must stay one line.
    @Test func configModelTypeNewline() {
        let m = Self.expectRefused("config_model_type_newline.json", Self.configJSON)
        #expect(m.contains("\"llama\\n\""))
    }

    /// "layer_widths": 0 (found by the fuzzer) made JSONSerialization.data(withJSONObject:) call fatalError.
    @Test func configLayerWidthsNotAnArray() {
        let m = Self.expectRefused("config_layer_widths_number.json", Self.configJSON)
        #expect(m.contains("\"layer_widths\" must list 2 layer shapes"))
    }

    /// rms_norm_eps 1e205 (found by the fuzzer) is +inf as a Float: it passed validation and then configJSON()
    /// threw an anonymous NSError ("Invalid number value (inf) in JSON write") when the config was written back.
    @Test func configEpsilonOverflowsFloat() {
        let m = Self.expectRefused("config_rms_eps_overflows_float.json", Self.configJSON)
        #expect(m.contains("must be positive and finite"))
    }
}
