// Hugging Face export: what is written (per-layer widths included) loads back with identical weights, existing
// output is replaced only with force, and a failure leaves neither the target nor a temporary directory behind.
import Foundation
import Testing
import LlamaModel
@testable import ModelExport

@Suite struct ExportTests {
    static func expectSame(_ a: LlamaWeights, _ b: LlamaWeights) {
        #expect(a.config == b.config)
        let ta = a.huggingFaceTensors(), tb = b.huggingFaceTensors()
        #expect(ta.map(\.name) == tb.map(\.name))
        for (x, y) in zip(ta, tb) { #expect(x.shape == y.shape && x.values == y.values, "\(x.name)") }
    }

    @Test func exportLoadsBackIdentically() throws {
        let dir = try ExportTempDir()
        let src = dir.file("src")
        try FileManager.default.createDirectory(at: src, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: ExportFixtures.tokenizerJSON, to: src.appendingPathComponent("tokenizer.json"))
        for (i, w) in ExportFixtures.models().enumerated() {
            let out = dir.file("out\(i)")
            try HFExport.write(weights: w, tokenizerSource: .huggingFaceDirectory(src), to: out, force: false)
            let names = try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
            let remote = RemoteCode.isNeeded(for: w.config) ? [RemoteCode.configurationFile, RemoteCode.modelingFile] : []
            #expect(names == (["config.json", "generation_config.json", "model.safetensors", "tokenizer.json"] + remote).sorted())
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
        let dir = try ExportTempDir()
        let out = dir.file("out")
        try HFExport.write(weights: ExportFixtures.models()[1], tokenizerSource: .gguf(path: "/x.gguf", tokenizer: nil, chatTemplate: nil), to: out, force: false)
        let back = try ModelLoader.load(path: out.path, tokenizer: false)
        #expect(back.tokenizer == nil)
    }

    @Test func existingOutputNeedsForce() throws {
        let dir = try ExportTempDir()
        let out = dir.file("out")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try Data("keep".utf8).write(to: out.appendingPathComponent("old.txt"))
        let w = ExportFixtures.models()[0]
        let m = exportMessage { try HFExport.write(weights: w, tokenizerSource: .none, to: out, force: false) }
        #expect(m == "\(out.path): output directory exists; pass --force to replace it")
        #expect(try FileManager.default.contentsOfDirectory(atPath: out.path) == ["old.txt"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path).sorted() == ["out"])
        // with force: replaced as a whole, nothing left aside
        try HFExport.write(weights: w, tokenizerSource: .none, to: out, force: true)
        #expect(try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
                == ["config.json", "configuration_llmprune.py", "generation_config.json", "model.safetensors",
                    "modeling_llmprune.py"])   // heterogeneous: with the remote code
        Self.expectSame(try ModelLoader.load(path: out.path, tokenizer: false).weights, w)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path).sorted() == ["out"])
    }

    @Test func failureLeavesNothingBehind() throws {
        let dir = try ExportTempDir()
        let good = ExportFixtures.models()[1]
        // a layer whose o matrix is short: config.json is written, then model.safetensors fails
        var layers = good.layers
        layers[3].wo.removeLast()
        let broken = LlamaWeights(config: good.config, embed: good.embed, layers: layers, finalNorm: good.finalNorm, lmHead: good.lmHead)
        let out = dir.file("out")
        #expect(throws: (any Error).self) { try HFExport.write(weights: broken, tokenizerSource: .none, to: out, force: false) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path).isEmpty)
        // and with force over an existing export, the old one survives intact
        try HFExport.write(weights: good, tokenizerSource: .none, to: out, force: false)
        #expect(throws: (any Error).self) { try HFExport.write(weights: broken, tokenizerSource: .none, to: out, force: true) }
        Self.expectSame(try ModelLoader.load(path: out.path, tokenizer: false).weights, good)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path).sorted() == ["out"])
    }
}
