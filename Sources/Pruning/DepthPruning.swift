// Depth (layer-wise) pruning: whole transformer blocks are ranked and the least important removed; the residual
// stream then goes straight from the block below to the block above (a Llama block is x + attn(x) + mlp(·), so
// removing it is exact identity, nothing else changes shape).
//
// Ranking (`BlockImportance`):
//   taylor:    Σ over the block's q|k|v, o, gate|up, down weights and their biases of the criterion's element
//              salience (element1: |W⊙g|; vector: |Σ W⊙g| per output row; l1/l2: |W|, W²; random: one uniform
//              draw per block from SplitMix64(seed ^ layer)). The per-row / per-column sums are the block-wise
//              scorer's (`Importance.channelSums`), so a block's score is the sum of its channel scores. The norm
//              weights are not counted: the gradient pass computes no norm gradients (Backward.swift).
//   influence: ShortGPT (arXiv 2403.03853, eq. 1) BI_i = 1 − mean over the N·L calibration tokens t of
//              cos(x_{i,t}, x_{i+1,t}), x_i the residual stream entering block i, x_{i+1} the one leaving it (the
//              block's own output, before any final norm; transformers' output_hidden_states applies the final
//              norm to the last entry, which would make the top block look influential for the wrong reason).
// Selection: candidates are the `--layers` range (default: every layer), ascending score, ties to the lower index.
//   With a parameter target the number k of removed blocks is the one whose count is closest to
//   target = ⌊targetParams·total⌋ (ties: fewer blocks); otherwise k = n − Int(n·(1 − ratio)) of the n candidates
//   (Python int(), as the block-wise allocation). Removing every layer is refused.
import Foundation
import LlamaModel

/// What depth pruning removes, with the scores it ranked (indices are the ORIGINAL layers).
public struct DepthPlan: Codable, Equatable, Sendable {
    public var importance: BlockImportance
    /// The layers ranked, ascending; `scores[i]` belongs to `candidates[i]`.
    public var candidates: [Int]
    public var scores: [Double]
    /// Removed layers, ascending.
    public var removedLayers: [Int]

    public init(importance: BlockImportance, candidates: [Int], scores: [Double], removedLayers: [Int]) {
        self.importance = importance
        self.candidates = candidates
        self.scores = scores
        self.removedLayers = removedLayers
    }

    /// The config without the removed layers (their per-layer attributes go with them).
    func config(_ c: LlamaConfig) -> LlamaConfig {
        var c = c
        let removed = Set(removedLayers)
        let keep = (0..<c.numLayers).filter { !removed.contains($0) }
        c.layers = keep.map { c.layers[$0] }
        if !c.windowedLayers.isEmpty { c.windowedLayers = keep.map { c.windowedLayers[$0] } }
        if !c.ropeLayers.isEmpty { c.ropeLayers = keep.map { c.ropeLayers[$0] } }
        return c
    }

    func validate(numLayers: Int, source: String) throws {
        func fail(_ r: String) -> PruneError { .invalidPlan(path: source, reason: "depth: \(r)") }
        func ascending(_ a: [Int]) -> Bool {
            zip(a, a.dropFirst()).allSatisfy { $0 < $1 } && (a.first ?? 0) >= 0 && (a.last ?? 0) < numLayers
        }
        guard ascending(candidates), ascending(removedLayers), scores.count == candidates.count else {
            throw fail("candidates and removed layers must be ascending, unique and inside the model's \(numLayers) layers, one score per candidate")
        }
        guard Set(removedLayers).isSubset(of: candidates) else { throw fail("a removed layer is not a candidate") }
        guard removedLayers.count < numLayers else { throw fail("removes all \(numLayers) layers") }
    }
}

public enum DepthPruning {
    /// Blocks removed at `ratio` out of `n` candidates (Python int(), as the block-wise allocation).
    public static func blocksToRemove(candidates n: Int, ratio: Double) -> Int { n - Int(Double(n) * (1 - ratio)) }

    /// Taylor block scores of `layers` (see the file comment); `gradients` may be nil for l1/l2/random.
    public static func taylorScores(layers: [Int], model: LlamaWeights, gradients: GradientResult?,
                                    criterion: Criterion, seed: UInt64) throws -> [Double] {
        let c = model.config, d = c.hiddenSize, hd = c.headDim
        return try layers.map { l in
            guard l >= 0, l < c.numLayers else { throw ImportanceError.layerOutOfRange(layer: l, layerCount: c.numLayers) }
            if criterion == .random {
                var rng = SplitMix64(seed: seed ^ UInt64(l))
                return rng.nextUniform()
            }
            let g = criterion.needsGradient ? gradients?.gradients[l] : nil
            let f = criterion.needsFisher ? gradients?.fisher?[l] : nil
            if criterion.needsGradient && g == nil { throw ImportanceError.missingGradient(layer: l, criterion: criterion) }
            if criterion.needsFisher && f == nil { throw ImportanceError.missingFisher(layer: l, criterion: criterion) }
            let w = model.layers[l], s = w.shape
            let qkvRows = (s.numHeads + 2 * s.numKVHeads) * hd, q = s.numHeads * hd, inter = s.intermediateSize
            // Every matrix summed by rows (the block's total does not depend on the direction, except for `vector`,
            // whose abs is taken per output row, the unit LLM-Pruner's vectorize sums over for out-channels).
            var total = 0.0
            func add(_ w: [Float], _ g: [Float]?, _ f: [Float]?, rows: Int, cols: Int,
                     bias: Importance.BiasSalience = .none) {
                guard rows > 0, cols > 0 else { return }
                var out = [Double](repeating: 0, count: rows)
                Importance.channelSums(criterion, w, g, f, rows: rows, cols: cols, byRow: true, bias: bias, into: &out)
                total += out.reduce(0, +)
            }
            add(w.wqkv, g?.wqkv, f?.wqkv, rows: qkvRows, cols: d, bias: .init(w: w.bqkv, g: g?.bqkv, f: f?.bqkv))
            add(w.wo, g?.wo, f?.wo, rows: d, cols: q, bias: .init(w: w.bo, g: g?.bo, f: f?.bo))
            add(w.wGateUp, g?.wGateUp, f?.wGateUp, rows: 2 * inter, cols: d,
                bias: .init(w: w.bGateUp, g: g?.bGateUp, f: f?.bGateUp))
            add(w.wDown, g?.wDown, f?.wDown, rows: d, cols: inter, bias: .init(w: w.bDown, g: g?.bDown, f: f?.bDown))
            return total
        }
    }

    /// ShortGPT Block Influence of `layers` over [batch × seqLen] calibration tokens (see the file comment).
    public static func influenceScores(layers: [Int], model: LlamaWeights, tokens: [Int32], batch: Int,
                                       seqLen: Int) throws -> [Double] {
        let c = model.config, d = c.hiddenSize, n = batch * seqLen
        guard let top = layers.max() else { return [] }
        var bi = [Int: Double]()
        let wanted = Set(layers)
        try LlamaRunner(weights: model).visitResidualStream(tokens: tokens, batch: batch, seqLen: seqLen,
                                                            through: top + 1) { l, x, y in
            guard wanted.contains(l) else { return }
            var cosines = [Double](repeating: 0, count: n)
            cosines.withUnsafeMutableBufferPointer { out in
                let o = out.baseAddress!
                DispatchQueue.concurrentPerform(iterations: min(n, 8)) { chunk in
                    for t in (chunk * n / min(n, 8))..<((chunk + 1) * n / min(n, 8)) {
                        var xy = 0.0, xx = 0.0, yy = 0.0
                        for j in 0..<d {
                            let a = Double(x[t * d + j]), b = Double(y[t * d + j])
                            xy += a * b; xx += a * a; yy += b * b
                        }
                        // torch.nn.functional.cosine_similarity's guard against a zero norm (eps 1e-8)
                        o[t] = xy / max(xx.squareRoot() * yy.squareRoot(), 1e-8)
                    }
                }
            }
            bi[l] = 1 - cosines.reduce(0, +) / Double(n)
        }
        return layers.map { bi[$0]! }
    }

    /// The removed layers (ascending) for `scores` of `candidates` under the settings' target or ratio.
    public static func select(scores: [Double], candidates: [Int], config: LlamaConfig,
                              settings s: PruneSettings) throws -> [Int] {
        precondition(scores.count == candidates.count)
        let order = candidates.indices.sorted { scores[$0] != scores[$1] ? scores[$0] < scores[$1] : candidates[$0] < candidates[$1] }
        let total = config.parameterCount
        var k: Int
        if let frac = s.targetParams {
            let target = Int((Double(total) * frac).rounded(.down))
            var count = total, best = (k: 0, miss: abs(total - target))
            for (i, idx) in order.enumerated() {
                count -= config.layerParameterCount(config.layers[candidates[idx]])
                if abs(count - target) < best.miss { best = (i + 1, abs(count - target)) }
            }
            k = best.k
            if k >= config.numLayers {
                throw PruneError.setting(.targetParams, reason: "\(frac) of \(total) parameters is closest to removing all \(config.numLayers) layers")
            }
        } else {
            k = blocksToRemove(candidates: candidates.count, ratio: s.ratio)
            if k >= config.numLayers {
                throw PruneError.setting(.ratio, reason: "\(s.ratio) removes all \(config.numLayers) layers")
            }
        }
        return order.prefix(k).map { candidates[$0] }.sorted()
    }

    /// The model without `removed` layers (arrays are shared, not copied).
    static func cut(_ w: LlamaWeights, plan: DepthPlan) -> LlamaWeights {
        let removed = Set(plan.removedLayers)
        let layers = w.layers.indices.filter { !removed.contains($0) }.map { w.layers[$0] }
        return LlamaWeights(config: plan.config(w.config), embed: w.embed, layers: layers, finalNorm: w.finalNorm,
                            lmHead: w.lmHead)
    }
}
