// Configs and checkpoints whose math is not implemented are refused by name, one line naming the file and the key
// or tensor; nothing is computed silently otherwise.
import Foundation
import Formats
import Testing
@testable import LlamaModel

struct ConfigVariantTests {
    /// A copy of the tiny Mistral with its config.json edited by `edit` (and extra tensors added to its weights).
    func variant(_ edit: (inout [String: Any]) -> Void,
                 extraTensors: [(name: String, shape: [Int], values: [Float])] = []) throws -> URL {
        let src = WindowTests.dir
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("llmprune-variant-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var obj = try JSONSerialization.jsonObject(with: Data(contentsOf: src.appendingPathComponent("config.json"))) as! [String: Any]
        edit(&obj)
        try JSONSerialization.data(withJSONObject: obj).write(to: dir.appendingPathComponent("config.json"))
        if extraTensors.isEmpty {
            try FileManager.default.copyItem(at: src.appendingPathComponent("model.safetensors"),
                                             to: dir.appendingPathComponent("model.safetensors"))
        } else {
            let w = try ModelLoader.load(path: src.path, tokenizer: false).weights
            try SafetensorsWriter.write(w.huggingFaceTensors() + extraTensors, to: dir.appendingPathComponent("model.safetensors"))
        }
        return dir
    }

    func expectRefused(_ dir: URL, mentions words: [String]) {
        defer { try? FileManager.default.removeItem(at: dir) }
        do {
            _ = try ModelLoader.load(path: dir.path, tokenizer: false)
            Issue.record("loaded a model that should be refused (\(words))")
        } catch {
            let text = "\(error)"
            #expect(!text.contains("\n"), "one line: \(text)")
            #expect(text.contains(dir.path), "names the file: \(text)")
            for w in words { #expect(text.contains(w), "\(text) should mention \(w)") }
        }
    }

    @Test(arguments: [0, -3])
    func nonPositiveSlidingWindow(_ w: Int) throws {
        expectRefused(try variant { $0["sliding_window"] = w }, mentions: ["sliding_window", "\(w)"])
    }

    @Test func slidingWindowNotANumber() throws {
        expectRefused(try variant { $0["sliding_window"] = "wide" }, mentions: ["sliding_window"])
    }

    @Test func nullWindowIsFullAttentionAndMissingIsMistralsDefault() throws {
        for (edit, expected) in [({ (o: inout [String: Any]) in o["sliding_window"] = NSNull() }, nil as Int?),
                                 ({ (o: inout [String: Any]) in o["sliding_window"] = nil }, 4096)] {
            let dir = try variant(edit)
            defer { try? FileManager.default.removeItem(at: dir) }
            #expect(try ModelLoader.load(path: dir.path, tokenizer: false).config.slidingWindow == expected)
        }
    }

    @Test func unknownModelTypes() throws {
        expectRefused(try variant { $0["model_type"] = "gemma" }, mentions: ["model_type", "gemma"])
        expectRefused(try variant { $0["model_type"] = "qwen2" }, mentions: ["model.layers.0.self_attn.q_proj.bias"])   // declared, absent
        expectRefused(try variant { $0["model_type"] = "phi3" }, mentions: ["model_type", "phi3"])
        expectRefused(try variant { $0["model_type"] = "smollm3"; $0["no_rope_layers"] = [1, 0, 1] },
                      mentions: ["no_rope_layers"])
        expectRefused(try variant { $0["model_type"] = "smollm3"; $0["use_sliding_window"] = true; $0["sliding_window"] = 0 },
                      mentions: ["sliding_window"])
    }

    @Test func keysThatChangeTheMath() throws {
        expectRefused(try variant { $0["attention_bias"] = true }, mentions: ["attention_bias", "mistral"])
        expectRefused(try variant { $0["mlp_bias"] = true }, mentions: ["mlp_bias", "mistral"])
        expectRefused(try variant { $0["attention_bias"] = "yes" }, mentions: ["attention_bias"])
        expectRefused(try variant { $0["hidden_act"] = "gelu" }, mentions: ["hidden_act", "gelu"])
        expectRefused(try variant { $0["partial_rotary_factor"] = 0.5 }, mentions: ["partial_rotary_factor"])
    }

    @Test func biasTensorTheConfigDoesNotDeclare() throws {
        let bias = (name: "model.layers.0.self_attn.q_proj.bias", shape: [64], values: [Float](repeating: 0.5, count: 64))
        expectRefused(try variant({ _ in }, extraTensors: [bias]), mentions: ["model.layers.0.self_attn.q_proj.bias", "bias"])
        let other = (name: "model.layers.1.mlp.experts.gate", shape: [4], values: [Float](repeating: 0, count: 4))
        expectRefused(try variant({ _ in }, extraTensors: [other]), mentions: ["model.layers.1.mlp.experts.gate"])
    }

    /// Biases a Llama config declares must be in the file (the reverse of an undeclared bias tensor).
    @Test func declaredBiasTensorsMustExist() throws {
        let edit: (String) -> (inout [String: Any]) -> Void = { key in { o in o["model_type"] = "llama"; o[key] = true } }
        expectRefused(try variant(edit("attention_bias")), mentions: ["model.layers.0.self_attn.q_proj.bias"])
        expectRefused(try variant(edit("mlp_bias")), mentions: ["model.layers.0.mlp.gate_proj.bias"])
    }

    @Test func exportWritesBiasesAndQwen2Back() throws {
        for name in BiasTests.names {
            let c = try ModelLoader.load(path: resources.appendingPathComponent(name).path, tokenizer: false).config
            let obj = try JSONSerialization.jsonObject(with: c.configJSON()) as! [String: Any]
            if c.modelType == "qwen2" {
                #expect(obj["architectures"] as? [String] == ["Qwen2ForCausalLM"] && obj["attention_bias"] == nil)
                #expect(obj["use_sliding_window"] as? Bool == true && obj["sliding_window"] as? Int == 5)
                #expect(obj["max_window_layers"] as? Int == 1
                        && obj["layer_types"] as? [String] == ["full_attention", "sliding_attention"])
            } else {
                #expect(obj["architectures"] as? [String] == ["LlamaForCausalLM"])
                #expect(obj["attention_bias"] as? Bool == true && obj["mlp_bias"] as? Bool == true)
            }
            #expect(try LlamaConfig(configJSON: c.configJSON(), source: "config.json") == c)
        }
    }

    @Test func exportWritesTheFamilyBack() throws {
        let c = try ModelLoader.load(path: WindowTests.dir.path, tokenizer: false).config
        let obj = try JSONSerialization.jsonObject(with: c.configJSON()) as! [String: Any]
        #expect(obj["model_type"] as? String == "mistral" && obj["sliding_window"] as? Int == 5)
        #expect(obj["architectures"] as? [String] == ["MistralForCausalLM"])
        let back = try LlamaConfig(configJSON: c.configJSON(), source: "config.json")
        #expect(back == c)
    }
}
