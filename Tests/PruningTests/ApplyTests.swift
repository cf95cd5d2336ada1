// Applying a plan: the pruned model computes exactly what the original computes with the removed units masked
// (o columns of removed query heads, down columns of removed channels set to zero), and its parameter count is
// what its config and the plan say.
import Foundation
import Testing
@testable import Pruning
import LlamaModel

@Suite struct ApplyTests {
    /// The original model with the plan's removed units masked out of the residual stream.
    static func masked(_ w: LlamaWeights, _ plan: PrunePlan) -> LlamaWeights {
        let hd = w.config.headDim, d = w.config.hiddenSize
        var layers = w.layers
        for lp in plan.layers {
            var l = layers[lp.layer]
            let nq = l.shape.numHeads, inter = l.shape.intermediateSize
            for h in 0..<nq where !lp.keptQueryHeads.contains(h) {
                for r in 0..<d { for t in 0..<hd { l.wo[r * nq * hd + h * hd + t] = 0 } }
            }
            for c in 0..<inter where !lp.keptMLPChannels.contains(c) {
                for r in 0..<d { l.wDown[r * inter + c] = 0 }
            }
            layers[lp.layer] = l
        }
        return LlamaWeights(config: w.config, embed: w.embed, layers: layers, finalNorm: w.finalNorm, lmHead: w.lmHead)
    }

    static let settings: [PruneSettings] = [
        PruneSettings(ratio: 0.5, layerStart: 1, layerEnd: 5, criterion: .l1),
        PruneSettings(ratio: 0.5, layerStart: 0, layerEnd: 6, criterion: .l1, attentionUnit: .queryHead),
        PruneSettings(ratio: 0.3, layerStart: 2, layerEnd: 4, criterion: .l1, allocation: .global),
        PruneSettings(ratio: 0.3, layerStart: 1, layerEnd: 5, criterion: .l1, attentionUnit: .queryHead, allocation: .global, roundTo: 8),
    ]

    @Test(arguments: 0..<4)
    func prunedForwardEqualsMaskedOriginal(_ which: Int) throws {
        let dir = try PlanTempDir()
        let c = PlanFixtures.config(tied: which % 2 == 1)
        let w = LlamaWeights.random(config: c, seed: 11, scale: 0.2)
        let plan = try PlanFixtures.plan(c, Self.settings[which], dir: dir, seed: UInt64(which + 3))
        #expect(plan.parametersAfter < plan.parametersBefore)
        let pruned = try Pruner.apply(plan: plan, to: w)
        var rng = SplitMix64(seed: 5)
        let (batch, seq) = (2, 9)
        let tokens = (0..<(batch * seq)).map { _ in Int32(rng.next() % 64) }
        let want = try LlamaRunner(weights: Self.masked(w, plan)).logits(tokens: tokens, batch: batch, seqLen: seq)
        let got = try LlamaRunner(weights: pruned).logits(tokens: tokens, batch: batch, seqLen: seq)
        let full = try LlamaRunner(weights: w).logits(tokens: tokens, batch: batch, seqLen: seq)
        let diff = zip(want, got).map { abs($0 - $1) }.max()!
        #expect(diff <= 1e-4, "max |Δlogit| = \(diff)")
        #expect(zip(full, got).map { abs($0 - $1) }.max()! > 1e-3, "pruning changed nothing")
        // parameter counts: tensors = config = plan
        let stored = pruned.huggingFaceTensors().reduce(0) { $0 + $1.values.count }
        #expect(stored == pruned.config.parameterCount)
        #expect(stored == plan.parametersAfter)
        // untouched layers are copied, pruned ones have the planned shapes
        for i in 0..<c.numLayers {
            if let lp = plan.layers.first(where: { $0.layer == i }) {
                #expect(pruned.layers[i].shape == lp.pruned && pruned.config.layers[i] == lp.pruned)
            } else {
                #expect(pruned.layers[i].wqkv == w.layers[i].wqkv && pruned.layers[i].wDown == w.layers[i].wDown)
            }
        }
        #expect(pruned.embed == w.embed && pruned.finalNorm == w.finalNorm && pruned.lmHead == w.lmHead)
    }

    @Test func slicesTheRightRowsAndColumns() throws {
        // one layer, explicit plan: keep KV group 1 (query heads 4..7 of 8), MLP channels 3 and 40
        let c = PlanFixtures.config(layers: 1)
        let w = LlamaWeights.random(config: c, seed: 3)
        let dir = try PlanTempDir()
        var plan = try PlanFixtures.plan(c, PruneSettings(ratio: 0.5, layerStart: 0, layerEnd: 1, criterion: .l1), dir: dir)
        plan.layers[0].keptKVHeads = [1]
        plan.layers[0].keptQueryHeads = [4, 5, 6, 7]
        plan.layers[0].keptMLPChannels = [3, 40]
        let p = try Pruner.apply(plan: plan, to: w).layers[0]
        let o = w.layers[0], d = 32, hd = 8
        #expect(Array(p.wqkv[0..<(4 * hd * d)]) == Array(o.wqkv[(4 * hd * d)..<(8 * hd * d)]))             // q heads 4..7
        #expect(Array(p.wqkv[(4 * hd * d)..<(5 * hd * d)]) == Array(o.wqkv[(9 * hd * d)..<(10 * hd * d)]))  // k head 1
        #expect(Array(p.wqkv[(5 * hd * d)..<(6 * hd * d)]) == Array(o.wqkv[(11 * hd * d)..<(12 * hd * d)])) // v head 1
        #expect(p.wo[5 * 32 + 3] == o.wo[5 * 64 + 32 + 3])                                                 // row 5, head 4 col 3
        #expect(Array(p.wGateUp[0..<d]) == Array(o.wGateUp[(3 * d)..<(4 * d)]))
        #expect(Array(p.wGateUp[(3 * d)..<(4 * d)]) == Array(o.wGateUp[((48 + 40) * d)..<((49 + 40) * d)]))
        #expect(p.wDown[7 * 2 + 1] == o.wDown[7 * 48 + 40])
    }

    @Test func refusesAPlanForOtherShapes() throws {
        let dir = try PlanTempDir()
        let c = PlanFixtures.config()
        let plan = try PlanFixtures.plan(c, PruneSettings(ratio: 0.5, layerStart: 1, layerEnd: 3, criterion: .l1), dir: dir)
        let other = LlamaWeights.random(config: PlanFixtures.config(inter: 40), seed: 1)
        let m = pruneMessage { _ = try Pruner.apply(plan: plan, to: other) }
        #expect(m?.hasPrefix("<plan>: invalid prune plan: layer 1 has shape") == true, "\(m ?? "no error")")
    }
}

/// The real SmolLM2-135M (9 query heads over 3 KV heads, 30 layers): plan on the default layer range, check the
/// plan against the file, apply, and run the pruned model. Skipped when the model is absent.
let smolLM2PruningPath = PlanFixtures.packageRoot.appendingPathComponent("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf").path

@Suite(.enabled(if: FileManager.default.fileExists(atPath: smolLM2PruningPath), "models/smollm2 is absent"))
struct ApplySmolLM2Tests {
    static let path = smolLM2PruningPath

    @Test func planApplyRun() throws {
        let m = try ModelLoader.load(path: Self.path, tokenizer: false)
        let c = m.config
        let range = PruneSettings.defaultLayerRange(numLayers: c.numLayers)
        #expect(range == (4, 28))
        // kv-group at r = 0.25 removes no group here (192 − Int(144) = 48 channels < head_dim 64): coarse
        #expect(Allocator.localRemovalCounts(shape: c.layers[5], headDim: c.headDim, ratio: 0.25, unit: .kvGroup) == (0, 384))
        let s = PruneSettings(ratio: 0.25, layerStart: range.start, layerEnd: range.end, criterion: .l1, attentionUnit: .queryHead)
        let id = try ModelIdentity(path: m.path, format: m.format, config: c)
        let plan = try PrunePlan.make(settings: s, config: c, model: id, calibration: nil, scores: PlanFixtures.randomScores(c, s))
        #expect(try plan.check(against: c, modelPath: Self.path).isEmpty)
        let pruned = try Pruner.apply(plan: plan, to: m.weights)
        #expect(pruned.config.layers[5] == LayerShape(numHeads: 6, numKVHeads: 3, intermediateSize: 1152))
        #expect(pruned.config.layers[3] == c.layers[3])
        #expect(pruned.config.parameterCount == plan.parametersAfter)
        let logits = try LlamaRunner(weights: pruned).logits(tokens: (0..<16).map { Int32($0 * 7) }, batch: 1, seqLen: 16)
        #expect(logits.count == 16 * c.vocabSize && logits.allSatisfy(\.isFinite))
    }
}
