// Executes a plan: physically slices the kept rows and columns out of the fused layouts.
//   q rows of kept query heads, k and v rows of kept KV heads (wqkv), o columns of kept query heads (wo),
//   gate and up rows of kept channels (wGateUp), down columns of kept channels (wDown).
// head_dim, hidden size, norms, embeddings and the LM head are untouched; layers not in the plan are copied.
// Kept heads stay in their original order, so kept query head i still reads kept KV head i / n_rep'.
// A pipeline stage cuts only its own block of layers (`apply(plan:to:layers:)`); the other layers are
// placeholders that only take the pruned shape, so every stage ends with the same pruned config.
import Foundation
import LlamaModel
import ModelExport

public enum Pruner {
    /// The pruned model. Throws if the plan does not fit `weights` (check identity first with `PrunePlan.check`).
    public static func apply(plan: PrunePlan, to weights: LlamaWeights) throws -> LlamaWeights {
        try apply(plan: plan, to: weights, layers: 0..<weights.config.numLayers)
    }

    /// The pruned model as one pipeline stage sees it: the plan's layers inside `layers` are cut; every other
    /// layer keeps its arrays, and a planned one outside `layers` (which must be a placeholder: empty arrays)
    /// takes the pruned shape, so the result's config is the pruned config. Embedding, norm and head are kept.
    public static func apply(plan: PrunePlan, to weights: LlamaWeights, layers range: Range<Int>) throws -> LlamaWeights {
        if let whole = try applyStrategy(plan: plan, to: weights, layers: range) { return whole }
        let c = weights.config
        let source = plan.sourcePath ?? "<plan>"
        guard range.lowerBound >= 0, range.upperBound <= c.numLayers else {
            throw PruneError.invalidSetting(flag: "stage layers", reason: "\(range) is outside the model's \(c.numLayers) layers")
        }
        var layers = weights.layers
        var seen = Set<Int>()
        for lp in plan.layers {
            try lp.validate(source: source)
            guard lp.layer >= 0, lp.layer < c.numLayers, seen.insert(lp.layer).inserted else {
                throw PruneError.invalidPlan(path: source, reason: "layer \(lp.layer) is repeated or outside the model's \(c.numLayers) layers")
            }
            let w = weights.layers[lp.layer]
            guard w.shape == lp.original else {
                throw PruneError.invalidPlan(path: source, reason: "layer \(lp.layer) has shape \(w.shape), the plan expects \(lp.original)")
            }
            if range.contains(lp.layer) {
                guard w.holdsWeights(config: c) else {
                    throw PruneError.invalidSetting(flag: "stage layers", reason: "layer \(lp.layer) is to be cut but its weights are not loaded")
                }
                layers[lp.layer] = cut(w, by: lp, headDim: c.headDim, hiddenSize: c.hiddenSize)
            } else {
                // Arrays of the original widths under the pruned shape would be inconsistent: only placeholders.
                guard isPlaceholder(w) else {
                    throw PruneError.invalidSetting(flag: "stage layers", reason: "layer \(lp.layer) lies outside \(range) but holds weights; it would stay uncut")
                }
                layers[lp.layer].shape = lp.pruned
            }
        }
        let config = try plan.prunedConfig(c)
        try config.validate(source: source)
        return LlamaWeights(config: config, embed: weights.embed, layers: layers, finalNorm: weights.finalNorm,
                            lmHead: weights.lmHead)
    }

    /// One layer cut by its plan; unchecked (`w.shape` is `lp.original` and `w.holdsWeights`), hence internal.
    static func cut(_ w: LayerWeights, by lp: LayerPlan, headDim hd: Int, hiddenSize d: Int) -> LayerWeights {
        let nq = w.shape.numHeads, nkv = w.shape.numKVHeads, inter = w.shape.intermediateSize
        // wqkv: row blocks of hd rows (one head) × d
        var qkv: [Float] = []
        qkv.reserveCapacity((lp.keptQueryHeads.count + 2 * lp.keptKVHeads.count) * hd * d)
        let headRows = hd * d
        for h in lp.keptQueryHeads { qkv += w.wqkv[(h * headRows)..<((h + 1) * headRows)] }
        for base in [nq, nq + nkv] {
            for h in lp.keptKVHeads { qkv += w.wqkv[((base + h) * headRows)..<((base + h + 1) * headRows)] }
        }
        // wo: d rows of nq·hd columns; keep the column blocks of kept query heads
        let newQ = lp.keptQueryHeads.count * hd
        var wo = [Float](repeating: 0, count: d * newQ)
        for r in 0..<d {
            for (j, h) in lp.keptQueryHeads.enumerated() {
                let src = r * nq * hd + h * hd, dst = r * newQ + j * hd
                for t in 0..<hd { wo[dst + t] = w.wo[src + t] }
            }
        }
        // gate and up rows
        let keptC = lp.keptMLPChannels
        var gu: [Float] = []
        gu.reserveCapacity(2 * keptC.count * d)
        for base in [0, inter] {
            for ch in keptC { gu += w.wGateUp[((base + ch) * d)..<((base + ch + 1) * d)] }
        }
        // down: d rows of I columns
        var down = [Float](repeating: 0, count: d * keptC.count)
        for r in 0..<d {
            for (j, ch) in keptC.enumerated() { down[r * keptC.count + j] = w.wDown[r * inter + ch] }
        }
        // Biases: q entries of kept query heads, k and v entries of kept KV heads, gate and up entries of kept
        // channels; o and down biases are over the hidden size and stay whole.
        var bqkv: [Float] = []
        if !w.bqkv.isEmpty {
            for h in lp.keptQueryHeads { bqkv += w.bqkv[(h * hd)..<((h + 1) * hd)] }
            for base in [nq, nq + nkv] {
                for h in lp.keptKVHeads { bqkv += w.bqkv[((base + h) * hd)..<((base + h + 1) * hd)] }
            }
        }
        var bgu: [Float] = []
        if !w.bGateUp.isEmpty {
            for base in [0, inter] { for ch in keptC { bgu.append(w.bGateUp[base + ch]) } }
        }
        return LayerWeights(shape: lp.pruned, inputNorm: w.inputNorm, wqkv: qkv, wo: wo, postNorm: w.postNorm,
                            wGateUp: gu, wDown: down, bqkv: bqkv, bo: w.bo, bGateUp: bgu, bDown: w.bDown)
    }

    /// A stage's stand-in for a layer it does not hold (see `StageWeights`).
    static func isPlaceholder(_ w: LayerWeights) -> Bool {
        w.inputNorm.isEmpty && w.wqkv.isEmpty && w.wo.isEmpty && w.postNorm.isEmpty && w.wGateUp.isEmpty && w.wDown.isEmpty
            && w.biasCount == 0
    }
}
