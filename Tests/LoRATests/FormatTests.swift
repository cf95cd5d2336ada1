// Adapter initialisation, the peft directory format (round trip, peft's own file, malformed files) and
// merging the adapters into plain weights.
import Foundation
import Formats
import LlamaModel
import Testing
@testable import LoRA

struct FormatTests {
    static func tempDir() -> URL {
        let u = FileManager.default.temporaryDirectory.appendingPathComponent("lora-tests-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
        return u
    }

    @Test func initialisationAsPeft() throws {
        let c = LoRAConfig(rank: 8, seed: 5)
        let a = try LoRAAdapters.initialized(config: c, model: heterogeneousConfig)
        #expect(a.slots.count == 3 * 7)
        for s in a.slots {
            let f = s.target.features(heterogeneousConfig.layers[s.layer], hidden: 24, headDim: 6)
            #expect(f.in == s.inFeatures && f.out == s.outFeatures)
            let bound = Float(1 / Double(s.inFeatures).squareRoot())
            let av = a.a(s)
            #expect(av.allSatisfy { abs($0) <= bound } && Set(av).count > av.count / 2)
            #expect(av.map { abs($0) }.max()! > 0.8 * bound)
            #expect(a.b(s).allSatisfy { $0 == 0 })
        }
        // per-layer widths: layer 1 has 3 heads of 6 over 1 KV head, 28 MLP channels
        #expect(a.slot(layer: 1, target: .q)?.outFeatures == 18 && a.slot(layer: 1, target: .k)?.outFeatures == 6)
        #expect(a.slot(layer: 1, target: .down)?.inFeatures == 28)
        #expect(try LoRAAdapters.initialized(config: c, model: heterogeneousConfig).parameters == a.parameters)
        var other = c
        other.seed = 6
        #expect(try LoRAAdapters.initialized(config: other, model: heterogeneousConfig).parameters != a.parameters)
        #expect(a.parameterCount == a.slots.reduce(0) { $0 + 8 * ($1.inFeatures + $1.outFeatures) })
    }

    @Test func configValidation() throws {
        #expect(throws: LoRAError.self) { try LoRAConfig(rank: 0).validate() }
        #expect(throws: LoRAError.self) { try LoRAConfig(dropout: 1).validate() }
        #expect(throws: LoRAError.self) { try LoRAConfig(targets: []).validate() }
        #expect(try LoRAConfig.parseTargets("q, k_proj,down") == [.q, .k, .down])
        #expect(throws: LoRAError.self) { try LoRAConfig.parseTargets("q,lm_head") }
        #expect(LoRAConfig().scale == 2)
    }

    @Test func peftRoundTrip() throws {
        let a = try randomAdapters(heterogeneousConfig, config: LoRAConfig(rank: 4, alpha: 12, dropout: 0.1, targets: [.q, .v, .o, .up, .down]), seed: 9)
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        try PEFTFormat.write(a, to: dir, baseModel: "some/model")
        let b = try PEFTFormat.load(from: dir, model: heterogeneousConfig)
        #expect(b.parameters == a.parameters)
        #expect(b.config.rank == 4 && b.config.alpha == 12 && b.config.dropout == 0.1 && b.config.targets == a.config.targets)
        let f = try SafetensorsFile(path: dir.appendingPathComponent(PEFTFormat.weightsFile).path)
        #expect(f.metadata == ["format": "pt"])
        #expect(f.shape(of: "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight") == [4, 24])
        #expect(f.shape(of: "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight") == [6, 4])
        #expect(f.shape(of: "base_model.model.model.layers.2.mlp.down_proj.lora_A.weight") == [4, 36])
        #expect(f.tensorNames.count == 3 * 5 * 2)
        let cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent(PEFTFormat.configFile))) as! [String: Any]
        #expect(cfg["peft_type"] as? String == "LORA" && cfg["r"] as? Int == 4 && cfg["task_type"] as? String == "CAUSAL_LM")
        #expect(cfg["target_modules"] as? [String] == ["q_proj", "v_proj", "o_proj", "up_proj", "down_proj"])
    }

    @Test func readsPeftsOwnFile() throws {
        let model = try ModelLoader.load(path: LoRAFixtures.modelDir.path, tokenizer: false)
        let a = try PEFTFormat.load(from: LoRAFixtures.adapterInit, model: model.config)
        #expect(a.config.rank == 8 && a.config.alpha == 16)
        #expect(a.parameters.contains { $0 != 0 })
        // the wrong model: a shape mismatch names the tensor
        #expect {
            try PEFTFormat.load(from: LoRAFixtures.adapterInit, model: heterogeneousConfig)
        } throws: { "\($0)".contains("adapter_model.safetensors") && "\($0)".contains("shape") }
    }

    @Test func malformedAdapters() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = try randomAdapters(heterogeneousConfig, config: LoRAConfig(rank: 2, targets: [.q]), seed: 1)
        try PEFTFormat.write(a, to: dir)
        let cfgURL = dir.appendingPathComponent(PEFTFormat.configFile)
        let good = try Data(contentsOf: cfgURL)
        func withConfig(_ edit: (inout [String: Any]) -> Void) throws -> String {
            var obj = try JSONSerialization.jsonObject(with: good) as! [String: Any]
            edit(&obj)
            try JSONSerialization.data(withJSONObject: obj).write(to: cfgURL)
            do { _ = try PEFTFormat.load(from: dir, model: heterogeneousConfig); return "loaded" } catch { return "\(error)" }
        }
        #expect(try withConfig { $0["target_modules"] = "q_proj|v_proj" }.contains("target_modules"))
        #expect(try withConfig { $0["target_modules"] = ["q_proj", "lm_head"] }.contains("lm_head"))
        #expect(try withConfig { $0["use_dora"] = true }.contains("use_dora"))
        #expect(try withConfig { $0["r"] = nil }.contains("\"r\""))
        #expect(try withConfig { $0["target_modules"] = ["q_proj", "k_proj"] }.contains("missing tensor"))
        #expect(try withConfig { _ in } == "loaded")
        try Data("{".utf8).write(to: cfgURL)
        #expect { try PEFTFormat.load(from: dir, model: heterogeneousConfig) } throws: { "\($0)".contains("adapter_config.json") }
        try good.write(to: cfgURL)
        try Data("not safetensors".utf8).write(to: dir.appendingPathComponent(PEFTFormat.weightsFile))
        #expect { try PEFTFormat.load(from: dir, model: heterogeneousConfig) } throws: { "\($0)".contains("adapter_model.safetensors") }
    }

    /// Also with every bias (q/k/v/o, gate/up/down): the merge keeps the frozen base biases as they are.
    @Test(arguments: [false, true]) func mergeEqualsForwardWithAdapters(_ biases: Bool) throws {
        var c = heterogeneousConfig
        (c.qkvBias, c.oBias, c.mlpBias) = (biases, biases, biases)
        let w = LlamaWeights.random(config: c, seed: 4, scale: 0.25)
        #expect(w.layers.allSatisfy { ($0.biasCount > 0) == biases })
        let a = try randomAdapters(heterogeneousConfig, config: LoRAConfig(rank: 8, alpha: 16, dropout: 0.05), seed: 2, bScale: 0.3)
        let tokens = syntheticExamples(vocab: 80, lengths: [13, 13], masked: [0, 0], seed: 1).flatMap(\.ids)
        let withAdapters = try LoRAPass(base: w, adapters: a).logits(tokens: tokens, batch: 2, seqLen: 13)
        let merged = try LoRAMerge.merged(base: w, adapters: a)
        let plain = try LlamaRunner(weights: merged).logits(tokens: tokens, batch: 2, seqLen: 13)
        let baseOnly = try LlamaRunner(weights: w).logits(tokens: tokens, batch: 2, seqLen: 13)
        let scale = Double(plain.map { abs($0) }.max()!)
        let diff = Double(zip(withAdapters, plain).map { abs($0 - $1) }.max()!)
        let effect = Double(zip(baseOnly, plain).map { abs($0 - $1) }.max()!)
        print("merge vs forward with adapters: max abs logit diff \(diff), relative \(diff / scale) (adapters move logits by \(effect))")
        #expect(diff / scale < 1e-4)
        #expect(effect / scale > 1e-2)
        // the base is untouched and the merge is W + s·B·A
        #expect(w.layers[0].wqkv != merged.layers[0].wqkv)
        let s = a.slot(layer: 2, target: .up)!
        let A = a.a(s), B = a.b(s), inter = heterogeneousConfig.layers[2].intermediateSize
        let (i, j) = (5, 7)
        var expected = w.layers[2].wGateUp[(inter + i) * 24 + j]
        for k in 0..<8 { expected += 2 * B[i * 8 + k] * A[k * 24 + j] }
        #expect(abs(merged.layers[2].wGateUp[(inter + i) * 24 + j] - expected) < 1e-6)
        #expect(zip(merged.layers, w.layers).allSatisfy { $0.bqkv == $1.bqkv && $0.bo == $1.bo && $0.bGateUp == $1.bGateUp && $0.bDown == $1.bDown })
    }
}
