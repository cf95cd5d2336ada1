// Sharded export as a cluster job does it, without a cut: each stage writes the shard of its block of layers into
// one staging directory, rank 0 the index and the other files, then commits; the directory loads back with exactly
// the weights of the single-file export. Also the shard names, the index's refusals and the commit.
import Foundation
import Testing
import LlamaModel
import Formats
@testable import ModelExport

@Suite struct ShardedExportTests {
    static let splits: [[Range<Int>]] = [[0..<6], [0..<2, 2..<6], [0..<1, 1..<3, 3..<6]]

    /// What a stage holds (as `ModelLoader.loadStage`): layers outside `block` become empty placeholders of their
    /// shape, the embedding is kept for the first stage (and the last of a tied model), norm and head for the last.
    static func stageView(_ w: LlamaWeights, block: Range<Int>, embedding: Bool, head: Bool) -> LlamaWeights {
        let layers = w.layers.enumerated().map { i, l in
            block.contains(i) ? l : LayerWeights(shape: l.shape, inputNorm: [], wqkv: [], wo: [], postNorm: [], wGateUp: [], wDown: [])
        }
        let needEmbed = embedding || (head && w.config.tieWordEmbeddings)
        return LlamaWeights(config: w.config, embed: needEmbed ? w.embed : [], layers: layers,
                            finalNorm: head ? w.finalNorm : [], lmHead: head ? w.lmHead : nil)
    }

    @Test(arguments: [false, true])
    func shardsLoadBackAsTheSingleFileExport(tied: Bool) throws {
        let dir = try ExportTempDir()
        let w = LlamaWeights.random(config: ExportFixtures.config(tied: tied, widths: ExportFixtures.heterogeneous), seed: 9)
        let single = dir.file("single")
        try HFExport.write(weights: w, tokenizerSource: .none, to: single, force: false)
        for blocks in Self.splits {
            let out = dir.file("sharded\(blocks.count)"), n = blocks.count
            let staging = try HFExport.createStaging(for: out, tag: "test", force: false)
            var shards: [ShardFile] = []
            for (k, block) in blocks.enumerated() {
                let view = Self.stageView(w, block: block, embedding: k == 0, head: k == n - 1)
                let tensors = try HFExport.shardTensors(weights: view, layers: block, embedding: k == 0, head: k == n - 1)
                shards.append(try HFExport.writeShard(tensors: tensors, index: k, count: n, into: staging))
            }
            try HFExport.writeIndex(shards: shards, into: staging)
            try HFExport.writeModelFiles(config: w.config, tokenizerSource: .none, into: staging)
            try HFExport.commit(staging: staging, to: out, force: false)
            #expect(try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
                    == (["config.json", "generation_config.json"]
                        + (1...n).map { HFExport.shardFileName(index: $0 - 1, count: n) } + [HFExport.indexFileName]
                        + [RemoteCode.configurationFile, RemoteCode.modelingFile]).sorted())   // heterogeneous widths
            let back = try ModelLoader.load(path: out.path, tokenizer: false).weights
            #expect(back.config == w.config)
            let ta = back.huggingFaceTensors(), tb = w.huggingFaceTensors()
            #expect(ta.map(\.name) == tb.map(\.name))
            for (x, y) in zip(ta, tb) { #expect(x.shape == y.shape && x.values == y.values, "\(x.name)") }
            #expect(try Data(contentsOf: out.appendingPathComponent("config.json"))
                    == Data(contentsOf: single.appendingPathComponent("config.json")))
            // each shard holds exactly the tensors the index says, and no more
            for s in shards {
                let file = try SafetensorsFile(path: out.appendingPathComponent(s.fileName).path)
                #expect(Set(file.tensorNames) == Set(s.tensorNames) && file.metadata == ["format": "pt"])
                #expect(file.entries.reduce(0) { $0 + $1.end - $1.begin } == s.dataBytes)
            }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path).allSatisfy { !$0.hasPrefix(".") })
    }

    @Test func shardOfWhatIsNotLoadedIsRefused() throws {
        let w = LlamaWeights.random(config: ExportFixtures.config(), seed: 4)
        let view = Self.stageView(w, block: 0..<2, embedding: true, head: false)
        #expect(exportMessage { _ = try HFExport.shardTensors(weights: view, layers: 0..<3, embedding: true, head: false) }
                == "sharded export: layer 2 is not loaded (placeholder or wrong size for its shape)")
        #expect(exportMessage { _ = try HFExport.shardTensors(weights: view, layers: 0..<2, embedding: true, head: true) }
                == "sharded export: the final norm or LM head is not loaded")
        #expect(exportMessage { _ = try HFExport.shardTensors(weights: view, layers: 0..<7, embedding: true, head: false) }
                == "sharded export: layers 0..<7 outside the model's 6 layers")
    }

    @Test func shardNamesAndNumbers() throws {
        #expect(HFExport.shardFileName(index: 0, count: 1) == "model-00001-of-00001.safetensors")
        #expect(HFExport.shardFileName(index: 11, count: 120) == "model-00012-of-00120.safetensors")
        let dir = try ExportTempDir()
        let t = [(name: "x", shape: [1], values: [Float(1)])]
        for (k, n) in [(3, 3), (-1, 2), (0, 0)] {
            let m = exportMessage { try HFExport.writeShard(tensors: t, index: k, count: n, into: dir.url) }
            #expect(m?.hasPrefix("sharded export: shard index \(k) of \(n)") == true, "\(m ?? "no error")")
        }
    }

    @Test func duplicateTensorsAreRefused() throws {
        let dir = try ExportTempDir()
        let a = ShardFile(fileName: "model-00001-of-00002.safetensors", tensorNames: ["x", "y"], dataBytes: 8)
        let b = ShardFile(fileName: "model-00002-of-00002.safetensors", tensorNames: ["y"], dataBytes: 4)
        let m = exportMessage { try HFExport.writeIndex(shards: [a, b], into: dir.url) }
        #expect(m == "sharded export: tensor y is in both model-00001-of-00002.safetensors and model-00002-of-00002.safetensors")
        #expect(!FileManager.default.fileExists(atPath: dir.file(HFExport.indexFileName).path))
        // overlapping stage blocks produce exactly that
        let w = LlamaWeights.random(config: ExportFixtures.config(), seed: 1)
        let s0 = try HFExport.shardTensors(weights: w, layers: 0..<3, embedding: true, head: false)
        let s1 = try HFExport.shardTensors(weights: w, layers: 2..<6, embedding: false, head: true)
        let f0 = try HFExport.writeShard(tensors: s0, index: 0, count: 2, into: dir.url)
        let f1 = try HFExport.writeShard(tensors: s1, index: 1, count: 2, into: dir.url)
        #expect(exportMessage { try HFExport.writeIndex(shards: [f0, f1], into: dir.url) }?.contains("model.layers.2.") == true)
    }

    @Test func commitNeedsForceAndLeavesNoStaging() throws {
        let dir = try ExportTempDir()
        let fm = FileManager.default
        let out = dir.file("out")
        func stage(_ content: String) throws -> URL {
            let s = try HFExport.createStaging(for: out, tag: "t", force: true)
            #expect(s.lastPathComponent == ".out.partial-t" && s.deletingLastPathComponent().path == dir.url.path)
            try Data(content.utf8).write(to: s.appendingPathComponent("new.txt"))
            return s
        }
        // fresh target: renamed in
        try HFExport.commit(staging: try stage("one"), to: out, force: false)
        #expect(try String(contentsOf: out.appendingPathComponent("new.txt"), encoding: .utf8) == "one")
        #expect(try fm.contentsOfDirectory(atPath: dir.url.path) == ["out"])
        // existing target without force: refused up front and at commit, target untouched
        #expect(exportMessage { _ = try HFExport.createStaging(for: out, tag: "t", force: false) }
                == "\(out.path): output directory exists; pass --force to replace it")
        let s = try stage("two")
        #expect(exportMessage { try HFExport.commit(staging: s, to: out, force: false) }
                == "\(out.path): output directory exists; pass --force to replace it")
        #expect(try String(contentsOf: out.appendingPathComponent("new.txt"), encoding: .utf8) == "one")
        // with force: replaced as a whole, neither staging nor the old directory left aside
        try HFExport.commit(staging: s, to: out, force: true)
        #expect(try String(contentsOf: out.appendingPathComponent("new.txt"), encoding: .utf8) == "two")
        #expect(try fm.contentsOfDirectory(atPath: dir.url.path) == ["out"])
        #expect(try fm.contentsOfDirectory(atPath: out.path) == ["new.txt"])
    }
}
