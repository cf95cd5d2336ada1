// Hugging Face export: what is written loads back with identical weights, existing output is replaced only
// with force, and a failure leaves neither the target nor a temporary directory behind.
import Foundation
import Testing
@testable import Pruning
import LlamaModel
import Tokenizer

@Suite struct ExportTests {
    static let tokenizerJSON = PlanFixtures.packageRoot.appendingPathComponent("Tests/TokenizerTests/Resources/tiny_llama3.json")

    static func expectSame(_ a: LlamaWeights, _ b: LlamaWeights) {
        #expect(a.config == b.config)
        let ta = a.huggingFaceTensors(), tb = b.huggingFaceTensors()
        #expect(ta.map(\.name) == tb.map(\.name))
        for (x, y) in zip(ta, tb) { #expect(x.shape == y.shape && x.values == y.values, "\(x.name)") }
    }

    /// A pruned (heterogeneous) model and a uniform one, tied and untied.
    static func models(_ dir: PlanTempDir) throws -> [LlamaWeights] {
        let c = PlanFixtures.config()
        let w = LlamaWeights.random(config: c, seed: 2)
        let plan = try PlanFixtures.plan(c, PruneSettings(ratio: 0.5, layerStart: 1, layerEnd: 4, criterion: .l1,
                                                          attentionUnit: .queryHead, allocation: .global), dir: dir)
        let tied = LlamaWeights.random(config: PlanFixtures.config(tied: true), seed: 4)
        return [try Pruner.apply(plan: plan, to: w), tied]
    }

    @Test func exportLoadsBackIdentically() throws {
        let dir = try PlanTempDir()
        let src = dir.file("src")
        try FileManager.default.createDirectory(at: src, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: Self.tokenizerJSON, to: src.appendingPathComponent("tokenizer.json"))
        for (i, w) in try Self.models(dir).enumerated() {
            let out = dir.file("out\(i)")
            try HFExport.write(weights: w, tokenizerSource: .huggingFaceDirectory(src), to: out, force: false)
            let names = try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
            #expect(names == ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json"])
            let back = try ModelLoader.load(path: out.path, tokenizer: true)
            Self.expectSame(back.weights, w)
            #expect(back.tokenizer != nil)
            #expect(back.format == "safetensors")
            let gen = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("generation_config.json"))) as! [String: Any]
            #expect(gen["bos_token_id"] as? Int == 1 && gen["eos_token_id"] as? Int == 2)
            let config = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("config.json"))) as! [String: Any]
            #expect((config[LlamaConfig.layerWidthsKey] != nil) == !w.config.isUniform)
            if w.config.tieWordEmbeddings {
                #expect(!back.weights.huggingFaceTensors().map(\.name).contains("lm_head.weight"))
            }
        }
        // hidden temporaries are gone
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path).allSatisfy { !$0.hasPrefix(".") })
    }

    @Test func ggufSourceWritesNoTokenizerYet() throws {
        let dir = try PlanTempDir()
        let out = dir.file("out")
        try HFExport.write(weights: Self.models(dir)[1], tokenizerSource: .gguf(path: "/x.gguf", tokenizer: nil, chatTemplate: nil), to: out, force: false)
        let back = try ModelLoader.load(path: out.path, tokenizer: false)
        #expect(back.tokenizer == nil)
    }

    @Test func existingOutputNeedsForce() throws {
        let dir = try PlanTempDir()
        let out = dir.file("out")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try Data("keep".utf8).write(to: out.appendingPathComponent("old.txt"))
        let w = try Self.models(dir)[0]
        let m = pruneMessage { try HFExport.write(weights: w, tokenizerSource: .none, to: out, force: false) }
        #expect(m == "\(out.path): output directory exists; pass --force to replace it")
        #expect(try FileManager.default.contentsOfDirectory(atPath: out.path) == ["old.txt"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path).sorted() == ["model.gguf", "out"])
        // with force: replaced as a whole, nothing left aside
        try HFExport.write(weights: w, tokenizerSource: .none, to: out, force: true)
        #expect(try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
                == ["config.json", "generation_config.json", "model.safetensors"])
        Self.expectSame(try ModelLoader.load(path: out.path, tokenizer: false).weights, w)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path).sorted() == ["model.gguf", "out"])
    }

    @Test func failureLeavesNothingBehind() throws {
        let dir = try PlanTempDir()
        let good = try Self.models(dir)[1]
        // a layer whose o matrix is short: config.json is written, then model.safetensors fails
        var layers = good.layers
        layers[3].wo.removeLast()
        let broken = LlamaWeights(config: good.config, embed: good.embed, layers: layers, finalNorm: good.finalNorm, lmHead: good.lmHead)
        let out = dir.file("out")
        #expect(throws: (any Error).self) { try HFExport.write(weights: broken, tokenizerSource: .none, to: out, force: false) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path) == ["model.gguf"])
        // and with force over an existing export, the old one survives intact
        try HFExport.write(weights: good, tokenizerSource: .none, to: out, force: false)
        #expect(throws: (any Error).self) { try HFExport.write(weights: broken, tokenizerSource: .none, to: out, force: true) }
        Self.expectSame(try ModelLoader.load(path: out.path, tokenizer: false).weights, good)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path).sorted() == ["model.gguf", "out"])
    }
}
