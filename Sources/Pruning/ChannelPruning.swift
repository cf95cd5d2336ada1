// Channel-wise pruning (LLM-Pruner `hf_prune.py --channel_wise`: one dependency group rooted at the RMSNorms that
// spans the hidden dimension of the whole model): one set of kept hidden channels, shared by the embedding columns,
// every norm weight, the input columns of q/k/v/gate/up, the output rows of o/down (and their biases), the final
// norm and the LM head's columns (tied or not). head_dim and the head counts stay; hidden_size becomes the kept
// width, and RMSNorm then takes its mean over the kept channels only, as the physically cut model in LLM-Pruner
// and transformers do.
//
// Score of hidden channel j (reduction sum, as the reference's default `_reduce`):
//   Σ over layers of  Σ_rows S(q|k|v)[·, j] + Σ_rows S(gate|up)[·, j]   (input columns, one member per matrix)
//                   + Σ_cols S(o)[j, ·] + Σ_cols S(down)[j, ·]          (output rows, biases included)
//                   + S(input norm)[j] + S(post-attention norm)[j]
// with S the criterion's element salience (element1 |W⊙g|; vector |Σ W⊙g| per member; l1 |W|; l2 W²)
// (TaylorImportance.__call__ / MagnitudeImportance.__call__, LLMPruner/pruner/hf_llama_pruner.py).
// A norm weight's gradient needs no extra pass: the norm output h = x̂⊙γ reaches the loss only through the
// products that read it, so scaling γ_j is scaling column j of those weights, and
//   γ_j·∂L/∂γ_j = Σ_o W[o, j]·∂L/∂W[o, j]   over the rows of q|k|v (input norm) or gate|up (post norm).
// Deliberately missing against the reference: the embedding, final-norm and LM-head members of the group, whose
// gradients llmprune's gradient pass does not compute (Backward.swift computes only the linear products').
// Selection: width d' = Int(d·(1 − ratio)) (the reference's ch_sparsity), or with a parameter target the d' whose
// count is closest to ⌊targetParams·total⌋ (ties: the wider); the d − d' lowest-scoring channels go, ties to the
// lower index.
import Foundation
import LlamaModel

/// The hidden channels a channel-wise plan keeps (ORIGINAL indices, ascending) and every channel's score.
public struct ChannelPlan: Codable, Equatable, Sendable {
    public var keptChannels: [Int]
    /// One per original hidden channel.
    public var scores: [Double]

    public init(keptChannels: [Int], scores: [Double]) {
        self.keptChannels = keptChannels
        self.scores = scores
    }

    func validate(hiddenSize d: Int, source: String) throws {
        let k = keptChannels
        guard !k.isEmpty, zip(k, k.dropFirst()).allSatisfy({ $0 < $1 }), k.first! >= 0, k.last! < d, scores.count == d else {
            throw PruneError.invalidPlan(path: source, reason: "channels: kept hidden channels must be ascending, unique, non-empty and below \(d), one score per channel")
        }
    }
}

public enum ChannelPruning {
    /// The kept width at `ratio` (Python int(d·(1 − r)), the reference's ch_sparsity).
    public static func keptWidth(hidden d: Int, ratio: Double) -> Int { Int(Double(d) * (1 - ratio)) }

    /// The width whose parameter count is closest to ⌊fraction·total⌋ (ties: the wider).
    public static func width(for fraction: Double, config: LlamaConfig) -> Int {
        let target = Int((Double(config.parameterCount) * fraction).rounded(.down))
        var best = (width: 0, miss: Int.max)
        for w in stride(from: config.hiddenSize, through: 1, by: -1) {
            var c = config
            c.hiddenSize = w
            let miss = abs(c.parameterCount - target)
            if miss < best.miss { best = (w, miss) }
        }
        return best.width
    }

    /// Per hidden channel scores (see the file comment). `gradients` must hold every layer unless the criterion
    /// reads none.
    public static func scores(model: LlamaWeights, gradients: GradientResult?, criterion: Criterion) throws -> [Double] {
        let c = model.config, d = c.hiddenSize, hd = c.headDim
        var total = [Double](repeating: 0, count: d)
        var column = [Double](repeating: 0, count: d)
        for (l, w) in model.layers.enumerated() {
            let g = criterion.needsGradient ? gradients?.gradients[l] : nil
            if criterion.needsGradient && g == nil { throw ImportanceError.missingGradient(layer: l, criterion: criterion) }
            let s = w.shape, inter = s.intermediateSize
            // Members whose input is the hidden size: rows [r0, r1) of a [rows × d] matrix, one member each.
            func inputColumns(_ w: [Float], _ g: [Float]?, rows r0: Int, _ r1: Int) {
                guard r1 > r0 else { return }
                let slice = Array(w[(r0 * d)..<(r1 * d)]), gs = g.map { Array($0[(r0 * d)..<(r1 * d)]) }
                Importance.channelSums(criterion, slice, gs, nil, rows: r1 - r0, cols: d, byRow: false, into: &column)
                for j in 0..<d { total[j] += column[j] }
            }
            /// The norm weight γ read by the [rows × d] `consumer`: |γ_j·g_γj| = |Σ_o W[o, j]·g[o, j]| (see the
            /// file comment), |γ_j| or γ_j².
            func addNorm(_ gamma: [Float], consumer w: [Float], _ g: [Float]?, rows: Int) {
                for j in 0..<d {
                    switch criterion {
                    case .l1: total[j] += abs(Double(gamma[j]))
                    case .l2: total[j] += Double(gamma[j]) * Double(gamma[j])
                    default:
                        var acc = 0.0
                        for o in 0..<rows { acc += Double(w[o * d + j]) * Double(g![o * d + j]) }
                        total[j] += abs(acc)
                    }
                }
            }
            let nq = s.numHeads * hd, nkv = s.numKVHeads * hd
            inputColumns(w.wqkv, g?.wqkv, rows: 0, nq)
            inputColumns(w.wqkv, g?.wqkv, rows: nq, nq + nkv)
            inputColumns(w.wqkv, g?.wqkv, rows: nq + nkv, nq + 2 * nkv)
            inputColumns(w.wGateUp, g?.wGateUp, rows: 0, inter)
            inputColumns(w.wGateUp, g?.wGateUp, rows: inter, 2 * inter)
            addNorm(w.inputNorm, consumer: w.wqkv, g?.wqkv, rows: nq + 2 * nkv)
            addNorm(w.postNorm, consumer: w.wGateUp, g?.wGateUp, rows: 2 * inter)
            // Members whose output is the hidden size: rows of o and down, bias entries with them.
            Importance.channelSums(criterion, w.wo, g?.wo, nil, rows: d, cols: nq, byRow: true,
                                   bias: .init(w: w.bo, g: g?.bo, f: nil), into: &column)
            for j in 0..<d { total[j] += column[j] }
            Importance.channelSums(criterion, w.wDown, g?.wDown, nil, rows: d, cols: inter, byRow: true,
                                   bias: .init(w: w.bDown, g: g?.bDown, f: nil), into: &column)
            for j in 0..<d { total[j] += column[j] }
        }
        return total
    }

    /// The kept channels (ascending) for `scores` under the settings' target or ratio.
    public static func select(scores: [Double], config: LlamaConfig, settings s: PruneSettings) throws -> [Int] {
        let d = config.hiddenSize
        let kept = s.targetParams.map { width(for: $0, config: config) } ?? keptWidth(hidden: d, ratio: s.ratio)
        guard kept >= 1 else {
            throw PruneError.setting(s.targetParams == nil ? .ratio : .targetParams, reason: "leaves no hidden channel of \(d)")
        }
        let order = (0..<d).sorted { scores[$0] != scores[$1] ? scores[$0] < scores[$1] : $0 < $1 }
        return order.suffix(kept).sorted()
    }

    /// The model with only the `kept` hidden channels (see the file comment).
    static func cut(_ w: LlamaWeights, kept: [Int]) -> LlamaWeights {
        let c = w.config, d = c.hiddenSize, n = kept.count
        /// Columns `kept` of a [rows × d] matrix.
        func columns(_ a: [Float], rows: Int) -> [Float] {
            var out = [Float](repeating: 0, count: rows * n)
            for r in 0..<rows { for (j, k) in kept.enumerated() { out[r * n + j] = a[r * d + k] } }
            return out
        }
        /// Rows `kept` of a [d × cols] matrix (or entries of a [d] vector, cols = 1; empty stays empty).
        func rows(_ a: [Float], cols: Int) -> [Float] {
            guard !a.isEmpty else { return a }
            var out: [Float] = []
            out.reserveCapacity(n * cols)
            for k in kept { out += a[(k * cols)..<((k + 1) * cols)] }
            return out
        }
        let layers = w.layers.map { lw -> LayerWeights in
            let s = lw.shape, q = s.numHeads * c.headDim, inter = s.intermediateSize
            return LayerWeights(shape: s, inputNorm: rows(lw.inputNorm, cols: 1),
                                wqkv: columns(lw.wqkv, rows: (s.numHeads + 2 * s.numKVHeads) * c.headDim),
                                wo: rows(lw.wo, cols: q), postNorm: rows(lw.postNorm, cols: 1),
                                wGateUp: columns(lw.wGateUp, rows: 2 * inter), wDown: rows(lw.wDown, cols: inter),
                                bqkv: lw.bqkv, bo: rows(lw.bo, cols: 1), bGateUp: lw.bGateUp, bDown: rows(lw.bDown, cols: 1))
        }
        var config = c
        config.hiddenSize = n
        return LlamaWeights(config: config, embed: columns(w.embed, rows: c.vocabSize), layers: layers,
                            finalNorm: rows(w.finalNorm, cols: 1), lmHead: w.lmHead.map { columns($0, rows: c.vocabSize) })
    }
}
