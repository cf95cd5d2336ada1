// Cut and sharded export as a cluster job does it: each stage cuts only its block of layers from a view where the
// other layers are placeholders, writes its own shard, and the assembled directory loads back with exactly the
// weights of the single-process cut and single-file export; the index covers the cut model. (The export alone is
// tested in ModelExportTests.)
import Foundation
import Testing
@testable import Pruning
import LlamaModel
import Formats
import ModelExport

@Suite struct CutExportTests {
    /// Layers 1..4 pruned to heterogeneous widths.
    static let settings = PruneSettings(ratio: 0.5, layerStart: 1, layerEnd: 5, criterion: .l1,
                                        attentionUnit: .queryHead, allocation: .global)
    static let splits: [[Range<Int>]] = [[0..<6], [0..<2, 2..<6], [0..<1, 1..<3, 3..<6]]

    /// What a stage loads (as `ModelLoader.loadStage`): layers outside `block` become empty placeholders of their
    /// shape, the embedding is kept for the first stage (and the last of a tied model), norm and head for the last.
    static func stageView(_ w: LlamaWeights, block: Range<Int>, embedding: Bool, head: Bool) -> LlamaWeights {
        let layers = w.layers.enumerated().map { i, l in
            block.contains(i) ? l : LayerWeights(shape: l.shape, inputNorm: [], wqkv: [], wo: [], postNorm: [], wGateUp: [], wDown: [])
        }
        let needEmbed = embedding || (head && w.config.tieWordEmbeddings)
        return LlamaWeights(config: w.config, embed: needEmbed ? w.embed : [], layers: layers,
                            finalNorm: head ? w.finalNorm : [], lmHead: head ? w.lmHead : nil)
    }

    static func expectSame(_ a: LlamaWeights, _ b: LlamaWeights) {
        #expect(a.config == b.config)
        let ta = a.huggingFaceTensors(), tb = b.huggingFaceTensors()
        #expect(ta.map(\.name) == tb.map(\.name))
        for (x, y) in zip(ta, tb) { #expect(x.shape == y.shape && x.values == y.values, "\(x.name)") }
    }

    /// Every stage cuts and writes its shard into one staging directory; then the index, the other files, commit.
    @discardableResult
    static func exportSharded(_ w: LlamaWeights, plan: PrunePlan, blocks: [Range<Int>], to out: URL,
                              tokenizer: TokenizerSource = .none) throws -> [ShardFile] {
        let staging = try HFExport.createStaging(for: out, tag: "test", force: false)
        let want = try plan.prunedConfig(w.config)
        var shards: [ShardFile] = []
        for (k, block) in blocks.enumerated() {
            let embedding = k == 0, head = k == blocks.count - 1
            let view = stageView(w, block: block, embedding: embedding, head: head)
            let cut = try Pruner.apply(plan: plan, to: view, layers: block)
            #expect(cut.config == want)
            for (i, l) in cut.layers.enumerated() where !block.contains(i) {
                #expect(Pruner.isPlaceholder(l) && l.shape == want.layers[i], "layer \(i) outside \(block)")
            }
            let tensors = try HFExport.shardTensors(weights: cut, layers: block, embedding: embedding, head: head)
            shards.append(try HFExport.writeShard(tensors: tensors, index: k, count: blocks.count, into: staging))
        }
        try HFExport.writeIndex(shards: shards, into: staging)
        try HFExport.writeModelFiles(config: want, tokenizerSource: tokenizer, into: staging,
                                     extraFiles: ["prune_plan.json": try plan.encoded()])
        try HFExport.commit(staging: staging, to: out, force: false)
        return shards
    }

    @Test(arguments: [false, true])
    func shardsLoadBackAsTheSingleFileExport(tied: Bool) throws {
        let dir = try PlanTempDir()
        let c = PlanFixtures.config(tied: tied)
        let w = LlamaWeights.random(config: c, seed: 9)
        let plan = try PlanFixtures.plan(c, Self.settings, dir: dir)
        let pruned = try Pruner.apply(plan: plan, to: w)
        #expect(!pruned.config.isUniform)
        let single = dir.file("single")
        try HFExport.write(weights: pruned, tokenizerSource: .none, to: single, force: false)
        let singleBack = try ModelLoader.load(path: single.path, tokenizer: false).weights
        for blocks in Self.splits {
            let out = dir.file("sharded\(blocks.count)")
            try Self.exportSharded(w, plan: plan, blocks: blocks, to: out)
            let n = blocks.count
            let names = try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
            #expect(names == (["config.json", "generation_config.json"]
                    + (1...n).map { HFExport.shardFileName(index: $0 - 1, count: n) }
                    + ["model.safetensors.index.json", "prune_plan.json"]
                    + [RemoteCode.configurationFile, RemoteCode.modelingFile]).sorted())   // heterogeneous widths
            let back = try ModelLoader.load(path: out.path, tokenizer: false)
            Self.expectSame(back.weights, pruned)
            Self.expectSame(back.weights, singleBack)
            #expect(try Data(contentsOf: out.appendingPathComponent("config.json"))
                    == Data(contentsOf: single.appendingPathComponent("config.json")))
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path).allSatisfy { !$0.hasPrefix(".") })
    }

    @Test func indexMapsEveryTensorOnce() throws {
        let dir = try PlanTempDir()
        let c = PlanFixtures.config()
        let w = LlamaWeights.random(config: c, seed: 3)
        let plan = try PlanFixtures.plan(c, Self.settings, dir: dir)
        let out = dir.file("out")
        let shards = try Self.exportSharded(w, plan: plan, blocks: Self.splits[2], to: out)
        #expect(shards.map(\.fileName) == ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                                           "model-00003-of-00003.safetensors"])
        // shard 0: embedding + layer 0; shard 2: layers 3..5, norm, lm_head
        #expect(shards[0].tensorNames.first == "model.embed_tokens.weight" && shards[0].tensorNames.count == 1 + 9)
        #expect(shards[2].tensorNames.suffix(2) == ["model.norm.weight", "lm_head.weight"])
        let data = try Data(contentsOf: out.appendingPathComponent(HFExport.indexFileName))
        let index = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        let map = index["weight_map"] as! [String: String]
        let all = try Pruner.apply(plan: plan, to: w).huggingFaceTensors()
        #expect(Set(map.keys) == Set(all.map(\.name)) && map.count == all.count)
        for s in shards { for t in s.tensorNames { #expect(map[t] == s.fileName) } }
        let total = (index["metadata"] as! [String: Any])["total_size"] as? Int
        #expect(total == all.reduce(0) { $0 + 4 * $1.values.count })
        #expect(total == 4 * plan.parametersAfter)
        // each shard holds exactly the tensors the index says, and no more
        for s in shards {
            let file = try SafetensorsFile(path: out.appendingPathComponent(s.fileName).path)
            #expect(Set(file.tensorNames) == Set(s.tensorNames) && file.metadata == ["format": "pt"])
            #expect(file.entries.reduce(0) { $0 + $1.end - $1.begin } == s.dataBytes)
        }
    }

    @Test func stageCutRefusesWhatItCannotCut() throws {
        let dir = try PlanTempDir()
        let c = PlanFixtures.config()
        let w = LlamaWeights.random(config: c, seed: 4)
        let plan = try PlanFixtures.plan(c, Self.settings, dir: dir)
        let view = Self.stageView(w, block: 0..<2, embedding: true, head: false)
        // layer 2 is planned but only a placeholder here
        let m1 = pruneMessage { _ = try Pruner.apply(plan: plan, to: view, layers: 0..<3) }
        #expect(m1 == "stage layers: layer 2 is to be cut but its weights are not loaded")
        // the full model cut on a sub-range would leave planned layers uncut under their pruned shape
        let m2 = pruneMessage { _ = try Pruner.apply(plan: plan, to: w, layers: 0..<2) }
        #expect(m2 == "stage layers: layer 2 lies outside 0..<2 but holds weights; it would stay uncut")
        let m3 = pruneMessage { _ = try Pruner.apply(plan: plan, to: w, layers: 0..<7) }
        #expect(m3 == "stage layers: 0..<7 is outside the model's 6 layers")
        // and a shard of a placeholder layer or a missing head is refused, not written empty
        let cut = try Pruner.apply(plan: plan, to: view, layers: 0..<2)
        #expect(pruneMessage { _ = try HFExport.shardTensors(weights: cut, layers: 0..<3, embedding: true, head: false) }
                == "sharded export: layer 2 is not loaded (placeholder or wrong size for its shape)")
        #expect(pruneMessage { _ = try HFExport.shardTensors(weights: cut, layers: 0..<2, embedding: true, head: true) }
                == "sharded export: the final norm or LM head is not loaded")
    }
}

/// Opt-in (set LLMPRUNE_SHARDED_EXPORT_DIR): SmolLM2 pruned by a random-score plan, written twice under that
/// directory — NAME-single by `HFExport.write`, NAME-sharded by three stages each loaded with
/// `ModelLoader.loadStage` (10 layers each) — for scripts/reference checks with transformers. NAME is
/// `hetero` (layers 4..<28 pruned: per-layer widths) or `uniform` (all layers pruned alike: a plain HF config,
/// which `from_pretrained` loads through the index by itself).
@Suite(.enabled(if: ProcessInfo.processInfo.environment["LLMPRUNE_SHARDED_EXPORT_DIR"] != nil
                && FileManager.default.fileExists(atPath: smolLM2PruningPath), "opt-in: LLMPRUNE_SHARDED_EXPORT_DIR"))
struct ShardedExportSmolLM2 {
    @Test func writeForReference() throws {
        let root = URL(fileURLWithPath: ProcessInfo.processInfo.environment["LLMPRUNE_SHARDED_EXPORT_DIR"]!)
        let path = smolLM2PruningPath
        let m = try ModelLoader.load(path: path, tokenizer: true)
        let c = m.config, id = try ModelIdentity(path: m.path, format: m.format, config: c)
        let blocks = [0..<10, 10..<20, 20..<30]
        for (name, layers) in [("hetero", 4..<28), ("uniform", 0..<30)] {
            let s = PruneSettings(ratio: 0.25, layerStart: layers.lowerBound, layerEnd: layers.upperBound, criterion: .l1,
                                  attentionUnit: .queryHead)
            let plan = try PrunePlan.make(settings: s, config: c, model: id, calibration: nil,
                                          scores: PlanFixtures.randomScores(c, s))
            let files = ["prune_plan.json": try plan.encoded()]
            try HFExport.write(weights: try Pruner.apply(plan: plan, to: m.weights), tokenizerSource: .of(m),
                               to: root.appendingPathComponent("\(name)-single"), force: true, extraFiles: files)
            let out = root.appendingPathComponent("\(name)-sharded")
            let staging = try HFExport.createStaging(for: out, tag: "\(getpid())", force: true)
            var shards: [ShardFile] = []
            for (k, block) in blocks.enumerated() {
                let embedding = k == 0, head = k == blocks.count - 1
                let stage = try ModelLoader.loadStage(path: path, layers: block, embedding: embedding, head: head, tokenizer: false)
                let cut = try Pruner.apply(plan: plan, to: stage.weights, layers: block)
                let tensors = try HFExport.shardTensors(weights: cut, layers: block, embedding: embedding, head: head)
                shards.append(try HFExport.writeShard(tensors: tensors, index: k, count: blocks.count, into: staging))
            }
            try HFExport.writeIndex(shards: shards, into: staging)
            try HFExport.writeModelFiles(config: try plan.prunedConfig(c), tokenizerSource: .of(m), into: staging, extraFiles: files)
            try HFExport.commit(staging: staging, to: out, force: true)
            #expect(try ModelLoader.config(path: out.path) == plan.prunedConfig(c))
        }
    }
}
