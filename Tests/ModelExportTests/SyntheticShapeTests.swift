// The shapes of `synth` carry their published configs: parameter counts as their model cards give them, and the
// config (RoPE scaling, sliding window, family) survives config.json both ways.
import Foundation
import LlamaModel
import ModelExport
import Testing

struct SyntheticShapeTests {
    @Test(arguments: [
        (SyntheticShape.llama2_7b, 6_738_415_616), (.llama3_1_8b, 8_030_261_248), (.llama3_2_1b, 1_235_814_400),
        (.mistral7b, 7_241_732_096), (.qwen2_5_0_5b, 494_032_768), (.qwen2_5_7b, 7_615_616_512), (.tinyllama, 1_100_048_384), (.smollm2, 134_515_008), (.llama2_70b, 68_976_648_192),
    ])
    func parameterCountsArePublished(shape: SyntheticShape, count: Int) {
        #expect(shape.config().parameterCount == count, "\(shape.rawValue)")
    }

    @Test(arguments: SyntheticShape.allCases)
    func configSurvivesConfigJSON(shape: SyntheticShape) throws {
        let c = shape.config()
        #expect(try LlamaConfig(configJSON: c.configJSON(), source: "config.json") == c, "\(shape.rawValue)")
    }

    @Test func realConfigs() throws {
        let l32 = SyntheticShape.llama3_2_1b.config()
        #expect(l32.ropeScaling.kind == .llama3 && l32.ropeScaling.factor == 32 && l32.tieWordEmbeddings)
        #expect(l32.maxPositionEmbeddings == 131072 && l32.ropeTheta == 500000 && l32.vocabSize == 128256)
        let m = SyntheticShape.mistral7b.config()
        #expect(m.modelType == "mistral" && m.attentionWindow(layer: 31) == 4096)
        let obj = try JSONSerialization.jsonObject(with: m.configJSON()) as! [String: Any]
        #expect(obj["architectures"] as? [String] == ["MistralForCausalLM"] && obj["sliding_window"] as? Int == 4096)
    }
}
