// The trust_remote_code output: a model whose family's transformers class cannot load it (layers of different
// widths; a Llama whose heads do not divide hidden_size) is written with configuration_llmprune.py and
// modeling_llmprune.py (the repository's files, byte for byte), auto_map, model_type "llmprune" and the family in
// base_model_type, and llmprune loads it back as the same config and tensors, for every variant: biases, RoPE
// scaling, windows, NoPE layers, tied and untied heads. Uniform models stay plain family configs without the files.
// (That transformers loads the files is checked by scripts/reference/check_remote_code.py and
// scripts/bench/remote_code.sh; these tests need no torch.)
import Foundation
import Testing
import LlamaModel
@testable import ModelExport

@Suite struct RemoteCodeTests {
    static let pythonDir = ExportFixtures.packageRoot.appendingPathComponent("Sources/ModelExport/RemoteCode")
    static let pythonFiles = [RemoteCode.configurationFile, RemoteCode.modelingFile]

    /// One config per variant llmprune computes, all with `ExportFixtures.heterogeneous` widths (6 layers).
    static func variants() -> [(name: String, config: LlamaConfig)] {
        func base(tied: Bool = true) -> LlamaConfig { ExportFixtures.config(tied: tied, widths: ExportFixtures.heterogeneous) }
        var out: [(String, LlamaConfig)] = [("llama tied", base()), ("llama untied", base(tied: false))]
        var c = base(tied: false)
        (c.qkvBias, c.oBias, c.mlpBias) = (true, true, true)
        out.append(("llama attention_bias mlp_bias", c))
        c = base()
        c.modelType = "qwen2"
        c.qkvBias = true
        c.slidingWindow = 16
        c.windowedLayers = [false, false, false, true, true, true]
        out.append(("qwen2 q/k/v biases, window on layers 3-5", c))
        c = base()
        c.modelType = "mistral"
        c.slidingWindow = 16
        out.append(("mistral window", c))
        c = base()
        c.modelType = "smollm3"
        c.ropeLayers = [true, true, true, false, true, true]
        c.slidingWindow = 8
        c.windowedLayers = [false, false, false, true, false, false]
        out.append(("smollm3 NoPE layer 3, windowed", c))
        for kind in [RopeScaling.Kind.linear, .dynamic, .yarn, .llama3] {
            c = base()
            var s = RopeScaling(kind: kind)
            s.factor = 4
            if kind == .yarn { (s.originalMaxPositionEmbeddings, s.betaFast, s.mscale, s.mscaleAllDim) = (32, 16, 1, 0.5) }
            if kind == .llama3 { (s.originalMaxPositionEmbeddings, s.lowFreqFactor, s.highFreqFactor) = (32, 1, 4) }
            c.ropeScaling = s
            out.append(("rope \(kind.rawValue)", c))
        }
        return out
    }

    static func readConfig(_ dir: URL) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("config.json"))) as! [String: Any]
    }

    @Test func heterogeneousVariantsCarryTheRemoteCodeAndLoadBack() throws {
        let dir = try ExportTempDir()
        for (i, v) in Self.variants().enumerated() {
            let c = v.config
            try c.validate(source: v.name)
            #expect(RemoteCode.isNeeded(for: c), "\(v.name)")
            let w = LlamaWeights.random(config: c, seed: UInt64(10 + i))
            let out = dir.file("out\(i)")
            try HFExport.write(weights: w, tokenizerSource: .none, to: out, force: false)
            let names = try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
            #expect(names == (["config.json", "generation_config.json", "model.safetensors"] + Self.pythonFiles).sorted(),
                    "\(v.name)")
            for f in Self.pythonFiles {   // the repository's python, byte for byte
                #expect(try Data(contentsOf: out.appendingPathComponent(f)) == Data(contentsOf: Self.pythonDir.appendingPathComponent(f)),
                        "\(v.name): \(f)")
            }
            let obj = try Self.readConfig(out)
            #expect(obj["model_type"] as? String == "llmprune" && obj["base_model_type"] as? String == c.modelType, "\(v.name)")
            #expect(obj["architectures"] as? [String] == ["LlmpruneForCausalLM"])
            #expect(obj["auto_map"] as? [String: String] == [
                "AutoConfig": "configuration_llmprune.LlmpruneConfig", "AutoModel": "modeling_llmprune.LlmpruneModel",
                "AutoModelForCausalLM": "modeling_llmprune.LlmpruneForCausalLM"])
            #expect(obj["layer_types"] as? [String]
                    == (0..<c.numLayers).map { c.attentionWindow(layer: $0) != nil ? "sliding_attention" : "full_attention" },
                    "\(v.name)")
            #expect(obj["sliding_window"] as? Int == c.slidingWindow, "\(v.name)")
            #expect((obj["layer_widths"] as? [[String: Int]])?.map { [$0["num_attention_heads"]!, $0["num_key_value_heads"]!,
                                                                     $0["intermediate_size"]!] }
                    == c.layers.map { [$0.numHeads, $0.numKVHeads, $0.intermediateSize] })
            // llmprune's loader reads its own output back: same config (family, biases, window, NoPE, RoPE scaling,
            // tie), same tensors.
            let back = try ModelLoader.load(path: out.path, tokenizer: false).weights
            ExportTests.expectSame(back, w)
            #expect(back.config.modelType == c.modelType)
        }
    }

    /// The classes auto_map names are the ones the files define, and the model_type the files declare is the one
    /// config.json carries.
    @Test func autoMapNamesTheClassesTheFilesDefine() throws {
        let cfg = String(decoding: RemoteCode.files[RemoteCode.configurationFile]!, as: UTF8.self)
        let modeling = String(decoding: RemoteCode.files[RemoteCode.modelingFile]!, as: UTF8.self)
        #expect(cfg.contains("class LlmpruneConfig(LlamaConfig):"))
        #expect(cfg.contains("model_type = \"\(LlamaConfig.remoteCodeModelType)\""))
        #expect(modeling.contains("class LlmpruneModel(llama.LlamaModel):"))
        #expect(modeling.contains("class \(RemoteCode.architecture)(llama.LlamaForCausalLM):"))
        #expect(modeling.contains("from .configuration_llmprune import LlmpruneConfig"))
        for family in ["llama", "mistral", "qwen2", "smollm3"] { #expect(cfg.contains("\"\(family)\"")) }
    }

    @Test func uniformModelsStayPlainFamilyConfigs() throws {
        let dir = try ExportTempDir()
        for family in ["llama", "mistral", "qwen2", "smollm3"] {
            var c = ExportFixtures.config(tied: true)
            c.modelType = family
            if family == "qwen2" { c.qkvBias = true }
            if family == "smollm3" { c.ropeLayers = [true, true, true, false, true, true] }   // as the parser spells it
            #expect(!RemoteCode.isNeeded(for: c))
            let w = LlamaWeights.random(config: c, seed: 3)
            let out = dir.file(family)
            try HFExport.write(weights: w, tokenizerSource: .none, to: out, force: false)
            #expect(try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
                    == ["config.json", "generation_config.json", "model.safetensors"], "\(family)")
            let obj = try Self.readConfig(out)
            #expect(obj["model_type"] as? String == family && obj["auto_map"] == nil && obj["base_model_type"] == nil)
            let classes = ["llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
                           "smollm3": "SmolLM3ForCausalLM"]
            #expect(obj["architectures"] as? [String] == [classes[family]!])
            ExportTests.expectSame(try ModelLoader.load(path: out.path, tokenizer: false).weights, w)
        }
    }

    /// transformers 5's LlamaConfig refuses hidden_size 32 over 3 heads even with head_dim 8 given: such a uniform
    /// Llama goes out as remote code too (the other families' configs accept it).
    @Test func uniformLlamaWhoseHeadsDoNotDivideHiddenSize() throws {
        var c = ExportFixtures.config(widths: Array(repeating: (3, 1, 40), count: 6))
        #expect(c.isUniform && RemoteCode.isNeeded(for: c))
        c.modelType = "mistral"
        #expect(!RemoteCode.isNeeded(for: c))
        c.modelType = "llama"
        let dir = try ExportTempDir()
        let w = LlamaWeights.random(config: c, seed: 8)
        try HFExport.write(weights: w, tokenizerSource: .none, to: dir.file("out"), force: false)
        let obj = try Self.readConfig(dir.file("out"))
        #expect(obj["model_type"] as? String == "llmprune" && obj["layer_widths"] == nil && obj["num_attention_heads"] as? Int == 3)
        #expect(FileManager.default.fileExists(atPath: dir.file("out").appendingPathComponent(RemoteCode.modelingFile).path))
        ExportTests.expectSame(try ModelLoader.load(path: dir.file("out").path, tokenizer: false).weights, w)
    }

    /// A model_type "llmprune" config without a usable family is refused in one line naming the file and the key.
    @Test func remoteCodeConfigWithoutAFamilyIsRefused() throws {
        var obj = try JSONSerialization.jsonObject(with: ExportFixtures.config().configJSON(extra: RemoteCode.configKeys(for: ExportFixtures.config()))) as! [String: Any]
        for (value, words) in [(nil as Any?, ["base_model_type"]), (7 as Any?, ["base_model_type"]), ("gemma" as Any?, ["gemma"])] {
            obj["base_model_type"] = value
            let data = try JSONSerialization.data(withJSONObject: obj)
            do {
                _ = try LlamaConfig(configJSON: data, source: "/m/config.json")
                Issue.record("accepted base_model_type \(String(describing: value))")
            } catch {
                let text = "\(error)"
                #expect(text.hasPrefix("/m/config.json: ") && !text.contains("\n"), "\(text)")
                for w in words { #expect(text.contains(w), "\(text)") }
            }
        }
    }
}
