// Importance scores of attention units and MLP channels (LLM-Pruner's `TaylorImportance` /
// `MagnitudeImportance` / `RandomImportance`, LLMPruner/pruner/hf_llama_pruner.py), computed from a layer's
// fused weights and its calibration gradient g and Fisher diagonal F. Salience is evaluated per element in Double
// and summed in Double, in parallel over rows or column blocks of each matrix; no per-element allocation.
import Foundation
import LlamaModel

/// Why a layer cannot be scored; one line each.
public enum ImportanceError: Error, CustomStringConvertible, Equatable, Sendable {
    case missingGradient(layer: Int, criterion: Criterion)
    case missingFisher(layer: Int, criterion: Criterion)
    case missingActivations(layer: Int, criterion: Criterion)
    case layerOutOfRange(layer: Int, layerCount: Int)
    case shapeMismatch(layer: Int, tensor: String, expected: Int, got: Int)

    public var description: String {
        switch self {
        case .missingGradient(let l, let c):
            return "layer \(l): criterion \(c.rawValue) needs calibration gradients, but none were computed for this layer"
        case .missingFisher(let l, let c):
            return "layer \(l): criterion \(c.rawValue) needs the Fisher diagonal (per-sample gradients), but none was computed for this layer"
        case .missingActivations(let l, let c):
            return "layer \(l): criterion \(c.rawValue) needs calibration activation statistics, but none were collected for this layer"
        case .layerOutOfRange(let l, let n):
            return "layer \(l) is out of range: the model has \(n) layers"
        case .shapeMismatch(let l, let t, let e, let g):
            return "layer \(l): \(t) has \(g) elements, the config implies \(e)"
        }
    }
}

public enum Importance {
    /// Scores one layer's attention units and MLP channels; higher = more important.
    ///
    /// Per element, the salience S of `criterion` (see `Criterion`) is computed for every weight of the layer's
    /// groups. Each member gets one value per channel (as `TaylorImportance.__call__`): rows of q, k, v, gate,
    /// up sum |S| over the input dimension, columns of o and down sum |S| over the output dimension (`vector`:
    /// |Σ S| instead; l1/l2: Σ|w| / Σw²). The member vectors are then combined per channel with `reduction`
    /// (reference `TaylorImportance._reduce`) and, for attention, the head_dim channels of each unit are summed:
    ///
    /// - `.kvGroup`: KV channel i = k·hd + e (KV head k, e < hd) first receives the **sum** of the q (and o)
    ///   channels (k·n_rep + j)·hd + e, j < n_rep, n_rep = nq/nkv, i.e. of the query heads h with
    ///   h / n_rep == k, the heads that read KV head k and are removed with it. The reference's alignment
    ///   (`imp.view(len/min, min).sum(0)`) instead folds query head h onto KV head h mod nkv; that is a bug
    ///   (in `TaylorImportance.__call__`: it attributes the q/o terms to the wrong group) and is deliberately
    ///   **not** reproduced.
    ///   With nkv = nq both mappings are the identity. The channel is reduced across [q, k, v, o]; `first`
    ///   takes k (the GQA root of `llama3.py`; `hf_prune.py` roots plain multi-head attention at q_proj).
    /// - `.queryHead`: channel c of query head h is reduced across [q, o] (`first` = q); K/V are kept.
    /// - MLP: channel c is reduced across [gate, up, down] (`first` = gate); no head sum.
    ///
    /// `random` ignores weights and gradients: every unit (attention units in head order, then MLP channels)
    /// gets a uniform [0, 1) draw from `SplitMix64(seed: seed ^ UInt64(layer))`, so scores are reproducible for
    /// a seed and independent across layers. (The reference draws per root channel and sums per head; the
    /// ranking it induces is equally uniform.)
    ///
    /// - Throws: `ImportanceError` when `criterion` needs a gradient or Fisher diagonal that is nil, or when the
    ///   arrays do not match `config.layers[layer]`.
    public static func scores(layer: Int, weights: LayerWeights, gradient: LayerGradients?, fisher: LayerGradients?,
                              config: LlamaConfig, criterion: Criterion, reduction: GroupReduction,
                              attentionUnit: AttentionUnit, seed: UInt64,
                              activations: LayerActivations? = nil) throws -> LayerScores {
        guard layer >= 0, layer < config.layers.count else {
            throw ImportanceError.layerOutOfRange(layer: layer, layerCount: config.layers.count)
        }
        let shape = config.layers[layer]
        let d = config.hiddenSize, hd = config.headDim
        let nq = shape.numHeads, nkv = shape.numKVHeads, inter = shape.intermediateSize
        let qkvCount = (nq + 2 * nkv) * hd * d, oCount = d * nq * hd
        let guCount = 2 * inter * d, downCount = d * inter

        func check(_ name: String, _ got: Int, _ expected: Int) throws {
            if got != expected { throw ImportanceError.shapeMismatch(layer: layer, tensor: name, expected: expected, got: got) }
        }
        func checkAll(_ prefix: String, _ qkv: [Float], _ o: [Float], _ gu: [Float], _ down: [Float]) throws {
            try check(prefix + "wqkv", qkv.count, qkvCount)
            try check(prefix + "wo", o.count, oCount)
            try check(prefix + "wGateUp", gu.count, guCount)
            try check(prefix + "wDown", down.count, downCount)
        }
        try checkAll("", weights.wqkv, weights.wo, weights.wGateUp, weights.wDown)

        if criterion == .random {
            var rng = SplitMix64(seed: seed ^ UInt64(layer))
            let att = (0..<attentionUnit.count(in: shape)).map { _ in rng.nextUniform() }
            let mlp = (0..<inter).map { _ in rng.nextUniform() }
            return LayerScores(layer: layer, attention: att, mlp: mlp)
        }
        if criterion == .obs {     // scored by its own sweep (Planner.layerScores → OBSCriterion), never here
            throw ImportanceError.missingActivations(layer: layer, criterion: criterion)
        }
        if criterion == .fluctuation {
            guard let a = activations else { throw ImportanceError.missingActivations(layer: layer, criterion: criterion) }
            try check("o_proj input statistics", a.oInput.sum.count, nq * hd)
            try check("down_proj input statistics", a.downInput.sum.count, inter)
            return fluctuation(layer: layer, weights: weights, activations: a, d: d, hd: hd, shape: shape,
                               attentionUnit: attentionUnit)
        }
        if criterion.needsGradient && gradient == nil { throw ImportanceError.missingGradient(layer: layer, criterion: criterion) }
        if criterion.needsFisher && fisher == nil { throw ImportanceError.missingFisher(layer: layer, criterion: criterion) }
        if criterion.needsGradient, let g = gradient { try checkAll("gradient ", g.wqkv, g.wo, g.wGateUp, g.wDown) }
        if criterion.needsFisher, let f = fisher { try checkAll("Fisher ", f.wqkv, f.wo, f.wGateUp, f.wDown) }
        // Biases: q/k/v and gate/up entries belong to their head / channel; o and down biases (over the hidden size)
        // belong to no unit and are never scored.
        let qkvBias = config.qkvBias ? (nq + 2 * nkv) * hd : 0, guBias = config.mlpBias ? 2 * inter : 0
        try check("bqkv", weights.bqkv.count, qkvBias)
        try check("bGateUp", weights.bGateUp.count, guBias)
        if criterion.needsGradient, let g = gradient {
            try check("gradient bqkv", g.bqkv.count, qkvBias)
            try check("gradient bGateUp", g.bGateUp.count, guBias)
        }
        if criterion.needsFisher, let f = fisher {
            try check("Fisher bqkv", f.bqkv.count, qkvBias)
            try check("Fisher bGateUp", f.bGateUp.count, guBias)
        }

        // Member vectors, one value per channel.
        var qkvRows = [Double](repeating: 0, count: (nq + 2 * nkv) * hd)   // q rows, k rows, v rows
        var oCols = [Double](repeating: 0, count: nq * hd)
        var guRows = [Double](repeating: 0, count: 2 * inter)             // gate rows, up rows
        var downCols = [Double](repeating: 0, count: inter)
        let g = criterion.needsGradient ? gradient : nil
        let f = criterion.needsFisher ? fisher : nil
        // A row's bias element is one more element of the row (LLM-Pruner counts it in the group).
        channelSums(criterion, weights.wqkv, g?.wqkv, f?.wqkv, rows: (nq + 2 * nkv) * hd, cols: d, byRow: true,
                    bias: .init(w: weights.bqkv, g: g?.bqkv, f: f?.bqkv), into: &qkvRows)
        channelSums(criterion, weights.wo, g?.wo, f?.wo, rows: d, cols: nq * hd, byRow: false, into: &oCols)
        channelSums(criterion, weights.wGateUp, g?.wGateUp, f?.wGateUp, rows: 2 * inter, cols: d, byRow: true,
                    bias: .init(w: weights.bGateUp, g: g?.bGateUp, f: f?.bGateUp), into: &guRows)
        channelSums(criterion, weights.wDown, g?.wDown, f?.wDown, rows: d, cols: inter, byRow: false, into: &downCols)

        // Attention (channels: KV channels of the group, or the head's q/o channels).
        var attention: [Double]
        var channels: [Double]
        switch attentionUnit {
        case .kvGroup:
            let nRep = nq / nkv
            attention = [Double](repeating: 0, count: nkv)
            channels = [Double](repeating: 0, count: nkv * hd)
            var members = [Double](repeating: 0, count: 4)
            for k in 0..<nkv {
                var unit = 0.0
                for e in 0..<hd {
                    var qa = 0.0, oa = 0.0
                    for j in 0..<nRep {
                        let c = (k * nRep + j) * hd + e
                        qa += qkvRows[c]
                        oa += oCols[c]
                    }
                    let i = k * hd + e
                    // Root first: k, then v, q, o.
                    members[0] = qkvRows[nq * hd + i]
                    members[1] = qkvRows[(nq + nkv) * hd + i]
                    members[2] = qa
                    members[3] = oa
                    channels[i] = reduce(members, reduction)
                    unit += channels[i]
                }
                attention[k] = unit
            }
        case .queryHead:
            attention = [Double](repeating: 0, count: nq)
            channels = [Double](repeating: 0, count: nq * hd)
            var members = [Double](repeating: 0, count: 2)
            for h in 0..<nq {
                var unit = 0.0
                for e in 0..<hd {
                    let c = h * hd + e
                    members[0] = qkvRows[c]
                    members[1] = oCols[c]
                    channels[c] = reduce(members, reduction)
                    unit += channels[c]
                }
                attention[h] = unit
            }
        }

        // MLP.
        var mlp = [Double](repeating: 0, count: inter)
        var members = [Double](repeating: 0, count: 3)
        for c in 0..<inter {
            members[0] = guRows[c]
            members[1] = guRows[inter + c]
            members[2] = downCols[c]
            mlp[c] = reduce(members, reduction)
        }
        return LayerScores(layer: layer, attention: attention, mlp: mlp, attentionChannels: channels)
    }

    /// FLAP's WIFV (`metrics['WIFV']` and `prune_flap` in lib/prune.py, github.com/CASIA-IVA-Lab/FLAP):
    /// o_proj input channel c scores (Var(x_c)·Σᵣ Wo[r,c]²)² (FLAP squares the attention metric), a head the sum
    /// of its hd channels and a KV group the sum of its n_rep heads' channels (FLAP prunes plain multi-head
    /// attention; a KV group goes with all the heads that read it); MLP channel c scores Var(x_c)·Σᵣ Wdown[r,c]²
    /// with x the down_proj input silu(gate)·up.
    static func fluctuation(layer: Int, weights: LayerWeights, activations a: LayerActivations, d: Int, hd: Int,
                            shape: LayerShape, attentionUnit: AttentionUnit) -> LayerScores {
        let nq = shape.numHeads, nkv = shape.numKVHeads, inter = shape.intermediateSize
        var oNorms = [Double](repeating: 0, count: nq * hd), downNorms = [Double](repeating: 0, count: inter)
        channelSums(L2Op.self, weights.wo, nil, nil, rows: d, cols: nq * hd, byRow: false, into: &oNorms)
        channelSums(L2Op.self, weights.wDown, nil, nil, rows: d, cols: inter, byRow: false, into: &downNorms)
        let channels = zip(a.oInput.variance, oNorms).map { v, w in (v * w) * (v * w) }
        let block = attentionUnit == .kvGroup ? (nq / nkv) * hd : hd
        let attention = (0..<(nq * hd / block)).map { u in channels[(u * block)..<((u + 1) * block)].reduce(0, +) }
        let mlp = zip(a.downInput.variance, downNorms).map { $0 * $1 }
        return LayerScores(layer: layer, attention: attention, mlp: mlp, attentionChannels: channels)
    }

    /// Scores several layers of a model from one gradient pass (`gradients` may be nil for l1/l2/random).
    public static func scores(layers: [Int], model: LlamaWeights, gradients: GradientResult?, criterion: Criterion,
                              reduction: GroupReduction, attentionUnit: AttentionUnit, seed: UInt64,
                              activations: [Int: LayerActivations]? = nil) throws -> [LayerScores] {
        try layers.map { l in
            guard l >= 0, l < model.layers.count else {
                throw ImportanceError.layerOutOfRange(layer: l, layerCount: model.layers.count)
            }
            return try scores(layer: l, weights: model.layers[l], gradient: gradients?.gradients[l],
                              fisher: gradients?.fisher?[l], config: model.config, criterion: criterion,
                              reduction: reduction, attentionUnit: attentionUnit, seed: seed,
                              activations: activations?[l])
        }
    }

    /// Combines one channel's member values; `members[0]` is the root.
    @inline(__always)
    static func reduce(_ members: [Double], _ r: GroupReduction) -> Double {
        switch r {
        case .sum: return members.reduce(0, +)
        case .mean: return members.reduce(0, +) / Double(members.count)
        case .max: return members.max()!
        case .prod: return members.reduce(1, *)
        case .first: return members[0]
        }
    }
}
