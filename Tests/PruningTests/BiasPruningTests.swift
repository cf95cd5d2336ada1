// Biases in importance and in the cut, against PyTorch (scripts/reference/make_bias_fixtures.py: importance.py with a
// row's bias element counted in its row) on a tiny random Qwen2 (q/k/v biases) and a Llama with attention_bias and
// mlp_bias; the cut keeps bias entries with their units, and the export writes them back (transformers loads it:
// scripts/reference/check_bias_export.py compares its logits with the ones this test leaves next to the export).
import Formats
import Foundation
import Testing
import LlamaModel
import ModelExport
@testable import Pruning

private enum BiasFixtures {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("LlamaModelTests/Resources")
    static let names = ["tiny_qwen2_bias", "tiny_llama_bias"]
    static func meta(_ name: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent(name + ".json"))) as! [String: Any]
    }
    static func tokens(_ m: [String: Any]) -> (tokens: [Int32], batch: Int, seqLen: Int) {
        let ids = m["input_ids"] as! [[Int]]
        return (ids.flatMap { $0.map(Int32.init) }, ids.count, ids[0].count)
    }
}

@Test(arguments: BiasFixtures.names)
func biasScoresMatchPyTorch(_ name: String) throws {
    let w = try ModelLoader.load(path: BiasFixtures.dir.appendingPathComponent(name).path, tokenizer: false).weights
    let meta = try BiasFixtures.meta(name), (tokens, b, t) = BiasFixtures.tokens(meta)
    let r = try GradientPass(weights: w).gradients(tokens: tokens, batch: b, seqLen: t, layers: 0..<w.config.numLayers,
                                                  fisher: true)
    let golden = meta["scores"] as! [String: [String: [String: [String: [Double]]]]]
    var worst: [String: Double] = [:]
    for l in 0..<w.config.numLayers {
        for crit in ["element1", "vector", "param_second"] {
            for red in ["sum", "max"] {
                let ref = golden["\(l)"]![crit]![red]!
                for (unit, key) in [(AttentionUnit.kvGroup, "attention_kv"), (.queryHead, "attention_qhead")] {
                    let s = try Importance.scores(layer: l, weights: w.layers[l], gradient: r.gradients[l],
                                                  fisher: r.fisher?[l], config: w.config, criterion: Criterion(rawValue: crit)!,
                                                  reduction: GroupReduction(rawValue: red)!, attentionUnit: unit, seed: 0)
                    for (ours, theirs) in [(s.attention, ref[key]!), (s.mlp, ref["mlp"]!)] {
                        #expect(ours.count == theirs.count)
                        for (x, y) in zip(ours, theirs) {
                            let rel = abs(x - y) / max(abs(y), 1e-30)
                            worst[crit] = max(worst[crit] ?? 0, rel)
                            #expect(rel <= 1e-4, "\(name) layer \(l) \(crit) \(red) \(key): \(x) vs \(y)")
                        }
                    }
                }
            }
        }
    }
    print("\(name) importance vs PyTorch (bias counted in its unit): max relative error \(worst)")

    // The bias entries count: without them the element1 scores change.
    var noBias = w.layers[0]
    noBias.bqkv = noBias.bqkv.map { _ in 0 }
    noBias.bGateUp = noBias.bGateUp.map { _ in 0 }
    let with = try Importance.scores(layer: 0, weights: w.layers[0], gradient: r.gradients[0], fisher: nil, config: w.config,
                                     criterion: .element1, reduction: .sum, attentionUnit: .kvGroup, seed: 0)
    let without = try Importance.scores(layer: 0, weights: noBias, gradient: r.gradients[0], fisher: nil, config: w.config,
                                        criterion: .element1, reduction: .sum, attentionUnit: .kvGroup, seed: 0)
    #expect(with.attention != without.attention)
}

/// The cut of a biased model equals the original with the removed units masked (o / down columns zeroed), and its
/// export loads back with the biases. Leaves NAME/ (the export) and NAME.logits.bin / NAME.json under
/// $TMPDIR/llmprune-bias-export for scripts/reference/check_bias_export.py.
@Test(arguments: BiasFixtures.names)
func biasedCutEqualsMaskedOriginalAndExports(_ name: String) throws {
    let w = try ModelLoader.load(path: BiasFixtures.dir.appendingPathComponent(name).path, tokenizer: false).weights
    let c = w.config, hd = c.headDim, d = c.hiddenSize
    let meta = try BiasFixtures.meta(name), (tokens, b, t) = BiasFixtures.tokens(meta)
    // Uniform: every layer drops KV group 0 (query heads 0, 1) and every third MLP channel.
    let s = c.layers[0]
    let keptC = (0..<s.intermediateSize).filter { $0 % 3 != 1 }
    let plans = (0..<c.numLayers).map { l in
        LayerPlan(layer: l, original: s, keptKVHeads: [1], keptQueryHeads: [2, 3], keptMLPChannels: keptC,
                  attentionScores: [0, 1], mlpScores: .init(repeating: 0, count: s.intermediateSize))
    }
    var masked = w.layers
    for l in 0..<c.numLayers {
        for r in 0..<d {
            for h in [0, 1] { for e in 0..<hd { masked[l].wo[r * s.numHeads * hd + h * hd + e] = 0 } }
            for ch in 0..<s.intermediateSize where ch % 3 == 1 { masked[l].wDown[r * s.intermediateSize + ch] = 0 }
        }
    }
    let maskedModel = LlamaWeights(config: c, embed: w.embed, layers: masked, finalNorm: w.finalNorm, lmHead: w.lmHead)
    let pruned = LlamaWeights(config: { var p = c; p.layers = plans.map(\.pruned); return p }(), embed: w.embed,
                              layers: zip(w.layers, plans).map { Pruner.cut($0, by: $1, headDim: hd, hiddenSize: d) },
                              finalNorm: w.finalNorm, lmHead: w.lmHead)
    #expect(pruned.layers[0].bqkv.count == (c.qkvBias ? (2 + 2) * hd : 0))
    #expect(pruned.layers[0].bGateUp.count == (c.mlpBias ? 2 * keptC.count : 0))
    let ref = try LlamaRunner(weights: maskedModel).logits(tokens: tokens, batch: b, seqLen: t)
    let ours = try LlamaRunner(weights: pruned).logits(tokens: tokens, batch: b, seqLen: t)
    let diff = zip(ours, ref).map { abs($0 - $1) }.max()!
    #expect(diff <= 1e-5, "pruned vs masked: \(diff)")

    let root = FileManager.default.temporaryDirectory.appendingPathComponent("llmprune-bias-export")
    try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    let out = root.appendingPathComponent(name)
    try HFExport.write(weights: pruned, tokenizerSource: .none, to: out, force: true)
    let back = try ModelLoader.load(path: out.path, tokenizer: false).weights
    #expect(back.config == pruned.config)
    #expect(zip(back.layers, pruned.layers).allSatisfy { $0.bqkv == $1.bqkv && $0.bo == $1.bo && $0.bGateUp == $1.bGateUp && $0.bDown == $1.bDown })
    try ours.withUnsafeBufferPointer { Data(buffer: $0) }.write(to: root.appendingPathComponent(name + ".logits.bin"))
    try JSONSerialization.data(withJSONObject: ["input_ids": meta["input_ids"]!, "shape": [b, t, c.vocabSize]])
        .write(to: root.appendingPathComponent(name + ".json"))
    print("\(name): pruned vs masked original max |logit diff| \(diff); export at \(out.path)")
}

/// The cluster job's cut-and-write, per stage, on the biased fixtures: low-memory stages (layers widened from the
/// mapped file, cut and streamed to their shard one at a time) and fp32-held stages give the single-process cut,
/// biases included, in every output dtype (bf16 / f16: the cut's values rounded, bit for bit); the index's total size
/// counts them.
@Test(arguments: BiasFixtures.names, [true, false])
func biasedShardsLoadBackAsTheSingleProcessCut(_ name: String, streamed: Bool) throws {
    let path = BiasFixtures.dir.appendingPathComponent(name).path
    let w = try ModelLoader.load(path: path, tokenizer: false).weights
    let dir = try PlanTempDir()
    let settings = PruneSettings(ratio: 0.5, layerStart: 0, layerEnd: 2, criterion: .l1, attentionUnit: .queryHead,
                                 allocation: .global)
    let plan = try PlanFixtures.plan(w.config, settings, dir: dir)
    let want = try Pruner.apply(plan: plan, to: w)
    #expect(want.layers.allSatisfy { $0.biasCount > 0 })
    for dtype in TensorDType.allCases {
        let out = dir.file("out-\(dtype)")
        let staging = try HFExport.createStaging(for: out, tag: "test", force: false)
        let blocks = [0..<1, 1..<2]
        var shards: [ShardFile] = []
        for (k, block) in blocks.enumerated() {
            let embedding = k == 0, head = k == blocks.count - 1
            let stage = try ModelLoader.loadStage(path: path, layers: block, embedding: embedding, head: head, tokenizer: false,
                                                  lowMemory: streamed)
            shards.append(streamed
                ? try HFExport.writeStreamedShard(plan: plan, stage: stage, embedding: embedding, head: head, dtype: dtype,
                                                  index: k, count: blocks.count, into: staging)
                : try HFExport.writeHeldShard(plan: plan, weights: stage.weights, layers: block, embedding: embedding,
                                              head: head, dtype: dtype, index: k, count: blocks.count, into: staging))
        }
        try HFExport.writeIndex(shards: shards, into: staging)
        try HFExport.writeModelFiles(config: want.config, dtype: dtype, tokenizerSource: .none, into: staging)
        try HFExport.commit(staging: staging, to: out, force: false)
        let back = try ModelLoader.load(path: out.path, tokenizer: false).weights
        #expect(back.config == want.config)
        let ta = back.huggingFaceTensors(), tb = want.huggingFaceTensors()
        #expect(ta.map(\.name) == tb.map(\.name) && ta.contains { $0.name.hasSuffix(".bias") })
        for (x, y) in zip(ta, tb) {
            #expect(x.shape == y.shape && x.values.map(\.bitPattern) == y.values.map { FloatEncoding.rounded($0, to: dtype).bitPattern },
                    "\(x.name) (\(dtype))")
        }
        let sharded = try ShardedSafetensors(indexPath: out.appendingPathComponent(HFExport.indexFileName).path)
        #expect(sharded.tensorNames.allSatisfy { sharded.dtype(of: $0) == dtype.safetensorsName }, "\(dtype)")
        let index = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent(HFExport.indexFileName))) as! [String: Any]
        #expect((index["metadata"] as! [String: Any])["total_size"] as? Int == dtype.byteCount * plan.parametersAfter)
    }
}
