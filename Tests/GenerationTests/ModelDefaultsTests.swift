// Where the EOS ids and the chat template come from: generation_config.json's eos_token_id (an id or a list), else
// config.json's, else the config's own; chat_template.jinja before tokenizer_config.json's chat_template (a string
// or a list with a "default" entry); malformed files refused naming the file.
import Foundation
import Testing
@testable import Generation
@testable import LlamaModel

struct ModelDefaultsTests {
    final class Dir {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("gen-defaults-\(UUID().uuidString)")
        init() { try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) }
        deinit { try? FileManager.default.removeItem(at: url) }
        func write(_ name: String, _ text: String) throws { try Data(text.utf8).write(to: url.appendingPathComponent(name)) }
        func model(format: String = "safetensors") -> LoadedModel {
            var cfg = LlamaConfig(vocabSize: 16, hiddenSize: 8, headDim: 4,
                                  layers: [LayerShape(numHeads: 2, numKVHeads: 1, intermediateSize: 8)], rmsNormEps: 1e-5,
                                  ropeTheta: 10000, maxPositionEmbeddings: 32, tieWordEmbeddings: true)
            cfg.eosTokenId = 2
            return LoadedModel(weights: LlamaWeights.random(config: cfg, seed: 1), tokenizer: nil, path: url.path,
                               format: format, chatTemplate: format == "gguf" ? "{{ 'gguf' }}" : nil)
        }
    }

    @Test func eosIdsFromGenerationConfigThenConfigThenTheModel() throws {
        let d = Dir()
        #expect(try ModelDefaults.eosIds(d.model()) == [2])
        try d.write("config.json", #"{"eos_token_id": [7, 9]}"#)
        #expect(try ModelDefaults.eosIds(d.model()) == [7, 9])
        try d.write("generation_config.json", #"{"eos_token_id": [128001, 128008, 128009]}"#)
        #expect(try ModelDefaults.eosIds(d.model()) == [128001, 128008, 128009])
        try d.write("generation_config.json", #"{"eos_token_id": 5}"#)
        #expect(try ModelDefaults.eosIds(d.model()) == [5])
        #expect(try ModelDefaults.eosIds(d.model(format: "gguf")) == [2])
        try d.write("generation_config.json", #"{"eos_token_id": "x"}"#)
        #expect(throws: GenerationError.malformedFile(path: d.url.appendingPathComponent("generation_config.json").path,
                                                      reason: "eos_token_id is not an id or a list of ids")) {
            try ModelDefaults.eosIds(d.model())
        }
    }

    @Test func chatTemplateFromJinjaFileThenTokenizerConfig() throws {
        let d = Dir()
        #expect(try ModelDefaults.chatTemplate(d.model()) == nil)
        #expect(try ModelDefaults.chatTemplate(d.model(format: "gguf")) == "{{ 'gguf' }}")
        try d.write("tokenizer_config.json", #"{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}"#)
        #expect(try ModelDefaults.chatTemplate(d.model()) == "D")
        try d.write("tokenizer_config.json", #"{"chat_template": "S"}"#)
        #expect(try ModelDefaults.chatTemplate(d.model()) == "S")
        try d.write("chat_template.jinja", "J")
        #expect(try ModelDefaults.chatTemplate(d.model()) == "J")
        try FileManager.default.removeItem(at: d.url.appendingPathComponent("chat_template.jinja"))
        try d.write("tokenizer_config.json", #"{"chat_template": 3}"#)
        #expect(throws: GenerationError.self) { try ModelDefaults.chatTemplate(d.model()) }
        try d.write("tokenizer_config.json", "not json")
        #expect(throws: GenerationError.self) { try ModelDefaults.chatTemplate(d.model()) }
    }
}
