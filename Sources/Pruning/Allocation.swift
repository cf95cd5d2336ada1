// From unit scores to the units each pruned layer keeps.
//
// local (the reference: LLM-Pruner's `MetaPruner.prune_local`, LLMPruner/torch_pruning/pruner/algorithms/
// metapruner.py, with hf_prune.py's ch_sparsity = --pruning_ratio): every pruned layer loses the same share.
//   kv-group unit: C = nkv·hd channels of k_proj, n = C − Int(C·(1−r)) (Python int(): truncation), and
//   n / hd (floor) whole KV groups go, each with its n_rep query heads.
//   query-head unit: k = n_rep − Int(n_rep·(1−r)) query heads go from EVERY KV group (the lowest of each
//   group), so every kept group keeps the same number of heads. With n_rep = 1 (multi-head attention) a query
//   head is its own KV group and the kv-group rule applies.
//   MLP: I − Int(I·(1−r)) channels go.
// global: one ranking over all pruned layers and both modules. A unit's score is divided by the parameters
//   removing it saves, so heads and channels compare per parameter: KV group (2·n_rep + 2)·hd·d, MLP channel
//   3·d (plus their bias entries when the model has biases: (n_rep + 2)·hd q/k/v, 2 gate/up). With the query-head unit, one unit is "one head from every KV group" (the GQA ratio must stay
//   whole): its score is the sum of each group's lowest remaining head, its cost n_kv·2·hd·d. Units go in
//   ascending normalised score until the parameter count is at or below the target (so it may undershoot
//   by less than one unit). The target is the local plan's count at `ratio`, or `targetParams`·total.
// standardized global (FLAP, arXiv 2312.11983 §3.2): per layer, the attention channel scores and the MLP channel
//   scores are standardized separately (mean, unbiased std over that layer's channels of the module, as torch.std
//   in `prune_flap`); an attention unit's key is the mean of its channels' standardized scores
//   ((score / channels − mean) / std), an MLP channel's its own; units go in ascending key, costs only count
//   toward the target. Scores without channel detail (random) are standardized over the units themselves.
// attentionLayers / mlpLayers (LLM-Pruner's separate block_attention / block_mlp ranges): outside its span a
//   module loses nothing, in local and global allocation alike.
// ratioSchedule (local): layer i is cut at ratio·wᵢ/mean(w) instead of ratio (`PruneSettings.layerRatio`).
// Everywhere: at least one KV group, one query head per kept group and one MLP channel stay; among equal
//   scores the LOWER index is removed first (then lower layer, attention before MLP in global ranking).
// roundTo R: after allocation each pruned layer's kept MLP width is rounded to the nearest multiple of R
//   (halves up), at least R and at most the largest multiple of R ≤ I (left alone when I < R); the channels
//   kept are then the highest-scoring ones, i.e. units are taken back or removed further in score order.
// targetParams with local: the ratio is solved by bisection as the smallest r whose local plan has at most
//   targetParams·total parameters (the local count is a non-increasing step function of r), which is the
//   local plan with the largest count not above the target.
import Foundation
import LlamaModel

/// The allocator ranks exactly what the scorer produces.
public typealias AllocationScores = LayerScores

public struct AllocationResult: Equatable, Sendable {
    public var layers: [LayerPlan]
    /// Ratio of the local allocation (settings.ratio, or the one solved for targetParams).
    public var ratio: Double
    /// Parameter target of global allocation or of a solved ratio; nil for plain local.
    public var targetParameters: Int?
}

public enum Allocator {
    /// Allocates per the settings. `scores` lists the layers of `settings.layerRange`, one entry each.
    public static func allocate(config: LlamaConfig, settings s: PruneSettings, scores: [AllocationScores]) throws -> AllocationResult {
        let s = try s.validated(numLayers: config.numLayers)
        try checkScores(config: config, settings: s, scores: scores)
        let total = config.parameterCount
        var keep: [LayerKeep]
        var ratio = s.ratio
        var target: Int? = nil
        if s.allocation == .local {
            if let frac = s.targetParams {
                let t = Int((Double(total) * frac).rounded(.down))
                ratio = try solveRatio(config: config, settings: s, target: t)
                target = t
            }
            keep = scores.map { local(config: config, unit: s.attentionUnit,
                                      counts: removalCounts(config: config, settings: s, layer: $0.layer, ratio: ratio),
                                      scores: $0) }
        } else {
            let t: Int
            if let frac = s.targetParams {
                t = Int((Double(total) * frac).rounded(.down))
            } else {
                t = localParameterCount(config: config, settings: s, ratio: s.ratio)
            }
            target = t
            keep = try global(config: config, settings: s, scores: scores, target: t,
                              setting: s.targetParams == nil ? .ratio : .targetParams)
        }
        if let r = s.roundTo {
            keep = zip(keep, scores).map { k, sc in roundMLP(k, to: r, scores: sc.mlp) }
        }
        let plans = zip(keep, scores).map { k, sc in k.plan(scores: sc) }
        return AllocationResult(layers: plans, ratio: ratio, targetParameters: target)
    }

    // MARK: - local

    /// How many attention units and MLP channels the reference removes from a layer at ratio r. The attention
    /// count is KV groups (kv-group unit, or n_rep = 1) or query heads per KV group (query-head unit).
    public static func localRemovalCounts(shape l: LayerShape, headDim hd: Int, ratio r: Double,
                                          unit: AttentionUnit) -> (attention: Int, mlp: Int) {
        let rep = l.numHeads / l.numKVHeads
        let att: Int
        if unit == .kvGroup || rep == 1 {
            let c = l.numKVHeads * hd
            att = min((c - Int(Double(c) * (1 - r))) / hd, l.numKVHeads - 1)
        } else {
            att = min(rep - Int(Double(rep) * (1 - r)), rep - 1)
        }
        let i = l.intermediateSize
        return (att, min(i - Int(Double(i) * (1 - r)), i - 1))
    }

    /// `localRemovalCounts` of one scored layer under the settings: its scheduled ratio, and nothing removed from
    /// a module outside its layer span.
    static func removalCounts(config: LlamaConfig, settings s: PruneSettings, layer: Int, ratio: Double)
        -> (attention: Int, mlp: Int)
    {
        let (a, m) = localRemovalCounts(shape: config.layers[layer], headDim: config.headDim,
                                        ratio: s.layerRatio(layer, base: ratio), unit: s.attentionUnit)
        return (s.prunesAttention(layer) ? a : 0, s.prunesMLP(layer) ? m : 0)
    }

    /// Parameter count after local pruning at `ratio` (does not depend on the scores).
    public static func localParameterCount(config: LlamaConfig, settings s: PruneSettings, ratio: Double) -> Int {
        var c = config
        for i in s.layerRange {
            let l = c.layers[i]
            let (a, m) = removalCounts(config: config, settings: s, layer: i, ratio: ratio)
            let rep = l.numHeads / l.numKVHeads
            if s.attentionUnit == .kvGroup || rep == 1 {
                c.layers[i] = LayerShape(numHeads: (l.numKVHeads - a) * rep, numKVHeads: l.numKVHeads - a,
                                         intermediateSize: l.intermediateSize - m)
            } else {
                c.layers[i] = LayerShape(numHeads: (rep - a) * l.numKVHeads, numKVHeads: l.numKVHeads,
                                         intermediateSize: l.intermediateSize - m)
            }
        }
        return c.parameterCount
    }

    /// Smallest ratio whose local plan has at most `target` parameters (bisection over [0, 1)).
    static func solveRatio(config: LlamaConfig, settings s: PruneSettings, target: Int) throws -> Double {
        func count(_ r: Double) -> Int { localParameterCount(config: config, settings: s, ratio: r) }
        if count(0) <= target { return 0 }
        var lo = 0.0, hi = (1.0).nextDown
        let least = count(hi)
        guard least <= target else {
            throw PruneError.setting(.targetParams, reason: unreachable(target: target, least: least, total: config.parameterCount, s))
        }
        for _ in 0..<200 where lo.nextUp < hi {
            let mid = lo + (hi - lo) / 2
            if count(mid) <= target { hi = mid } else { lo = mid }
        }
        return hi
    }

    static func unreachable(target: Int, least: Int, total: Int, _ s: PruneSettings) -> String {
        String(format: "keeping %d of %d parameters (%.2f%%) is not reachable by pruning layers %d..<%d: at least %d (%.2f%%) remain",
               target, total, 100 * Double(target) / Double(total), s.layerStart, s.layerEnd, least,
               100 * Double(least) / Double(total))
    }

    /// Removes the `counts` lowest-scoring attention units (KV groups, or query heads from every group) and MLP
    /// channels of one layer.
    static func local(config: LlamaConfig, unit: AttentionUnit, counts: (attention: Int, mlp: Int),
                      scores sc: AllocationScores) -> LayerKeep {
        let l = config.layers[sc.layer]
        let (a, m) = counts
        var k = LayerKeep(layer: sc.layer, shape: l, unit: unit)
        let rep = l.numHeads / l.numKVHeads
        if k.groupUnit {
            for g in ascending(sc.attention).prefix(a) { k.keptKV[g] = false }
        } else {
            for g in 0..<l.numKVHeads {
                let heads = Array(sc.attention[(g * rep)..<((g + 1) * rep)])
                for h in ascending(heads).prefix(a) { k.keptQ[g * rep + h] = false }
            }
        }
        for c in ascending(sc.mlp).prefix(m) { k.keptMLP[c] = false }
        return k
    }

    /// Indices sorted by ascending score; equal scores: lower index first (so it is removed first).
    static func ascending(_ s: [Double]) -> [Int] {
        s.indices.sorted { s[$0] != s[$1] ? s[$0] < s[$1] : $0 < $1 }
    }

    // MARK: - global

    struct Unit {
        enum Kind { case kvGroup(Int), headRound(Int), mlp(Int) }
        var slot: Int          // index into the scores / keep arrays
        var kind: Kind
        var score: Double
        var cost: Int
        var key = 0.0          // what units are ranked by (ascending), per `GlobalNormalization`
        var order: Int {       // attention before MLP among ties
            if case .mlp = kind { return 1 } else { return 0 }
        }
        var index: Int {
            switch kind { case .kvGroup(let i), .headRound(let i), .mlp(let i): return i }
        }
    }

    static func global(config: LlamaConfig, settings st: PruneSettings, scores: [AllocationScores], target: Int,
                       setting: PruneSetting) throws -> [LayerKeep] {
        let unit = st.attentionUnit, normalization = st.globalNormalization ?? .parameters
        let d = config.hiddenSize, hd = config.headDim
        let qkvBias = config.qkvBias ? 1 : 0, mlpBias = config.mlpBias ? 2 : 0     // bias entries that go with a unit
        var keep = scores.map { LayerKeep(layer: $0.layer, shape: config.layers[$0.layer], unit: unit) }
        var units: [Unit] = []
        // per layer, for the query-head unit: each group's heads in ascending score order
        var headOrder: [[[Int]]] = Array(repeating: [], count: scores.count)
        for (slot, sc) in scores.enumerated() {
            let l = config.layers[sc.layer]
            let rep = l.numHeads / l.numKVHeads
            if !st.prunesAttention(sc.layer) {
                // this layer's attention is outside --attention-layers: no attention unit to rank
            } else if keep[slot].groupUnit {
                for g in 0..<l.numKVHeads {
                    units.append(Unit(slot: slot, kind: .kvGroup(g), score: sc.attention[g],
                                      cost: (2 * rep + 2) * hd * d + qkvBias * (rep + 2) * hd))
                }
            } else {
                headOrder[slot] = (0..<l.numKVHeads).map { g in ascending(Array(sc.attention[(g * rep)..<((g + 1) * rep)])) }
                for j in 0..<(rep - 1) {
                    let s = (0..<l.numKVHeads).reduce(0.0) { $0 + sc.attention[$1 * rep + headOrder[slot][$1][j]] }
                    units.append(Unit(slot: slot, kind: .headRound(j), score: s,
                                      cost: l.numKVHeads * (2 * hd * d + qkvBias * hd)))
                }
            }
            for c in 0..<l.intermediateSize where st.prunesMLP(sc.layer) {
                units.append(Unit(slot: slot, kind: .mlp(c), score: sc.mlp[c], cost: 3 * d + mlpBias))
            }
        }
        switch normalization {
        case .parameters:
            for i in units.indices { units[i].key = units[i].score / Double(units[i].cost) }
        case .layer:
            // mean of score/cost per (layer slot, attention or MLP)
            var sum: [Int: Double] = [:], count: [Int: Int] = [:]
            for u in units { let k = 2 * u.slot + u.order; sum[k, default: 0] += u.score / Double(u.cost); count[k, default: 0] += 1 }
            for i in units.indices {
                let k = 2 * units[i].slot + units[i].order
                let mean = sum[k]! / Double(count[k]!)
                units[i].key = units[i].score / Double(units[i].cost) / (mean > 0 ? mean : 1)
            }
        case .standardized:
            let stats = scores.map { sc in
                (attention: moments(sc.attentionChannels ?? sc.attention), mlp: moments(sc.mlp),
                 block: Double((sc.attentionChannels ?? sc.attention).count) / Double(max(sc.attention.count, 1)))
            }
            for i in units.indices {
                let u = units[i], st = stats[u.slot]
                switch u.kind {
                case .mlp: units[i].key = standardize(u.score, st.mlp)
                case .kvGroup: units[i].key = standardize(u.score / st.block, st.attention)
                case .headRound:
                    // one head from each of the layer's KV groups: the mean over their channels
                    let groups = Double(config.layers[scores[u.slot].layer].numKVHeads)
                    units[i].key = standardize(u.score / (st.block * groups), st.attention)
                }
            }
        }
        units.sort { a, b in
            if a.key != b.key { return a.key < b.key }
            if a.slot != b.slot { return a.slot < b.slot }
            if a.order != b.order { return a.order < b.order }
            return a.index < b.index
        }
        var current = config.parameterCount
        var removedKV = Array(repeating: 0, count: scores.count), removedMLP = removedKV
        for u in units {
            if current <= target { break }
            let l = config.layers[scores[u.slot].layer]
            switch u.kind {
            case .kvGroup(let g):
                guard removedKV[u.slot] < l.numKVHeads - 1 else { continue }
                keep[u.slot].keptKV[g] = false
                removedKV[u.slot] += 1
            case .headRound(let j):
                let rep = l.numHeads / l.numKVHeads
                for g in 0..<l.numKVHeads { keep[u.slot].keptQ[g * rep + headOrder[u.slot][g][j]] = false }
            case .mlp(let c):
                guard removedMLP[u.slot] < l.intermediateSize - 1 else { continue }
                keep[u.slot].keptMLP[c] = false
                removedMLP[u.slot] += 1
            }
            current -= u.cost
        }
        if current > target {
            let s = PruneSettings(ratio: 0, layerStart: scores.first!.layer, layerEnd: scores.last!.layer + 1, criterion: .element1)
            throw PruneError.setting(setting, reason: unreachable(target: target, least: current,
                                                                            total: config.parameterCount, s))
        }
        return keep
    }

    /// Mean and unbiased standard deviation (torch.std's default, as FLAP's standardization).
    static func moments(_ x: [Double]) -> (mean: Double, std: Double) {
        guard !x.isEmpty else { return (0, 0) }
        let n = Double(x.count), mean = x.reduce(0, +) / n
        guard x.count > 1 else { return (mean, 0) }
        let ss = x.reduce(0) { $0 + ($1 - mean) * ($1 - mean) }
        return (mean, (ss / (n - 1)).squareRoot())
    }

    /// (x − mean) / std; 0 when the layer's scores do not spread (std 0).
    static func standardize(_ x: Double, _ m: (mean: Double, std: Double)) -> Double {
        m.std > 0 ? (x - m.mean) / m.std : 0
    }

    // MARK: - rounding

    static func roundMLP(_ k: LayerKeep, to r: Int, scores: [Double]) -> LayerKeep {
        let i = k.shape.intermediateSize
        guard i >= r else { return k }
        let kept = k.keptMLP.filter { $0 }.count
        let m = min(max((kept + r / 2) / r * r, r), i / r * r)
        var out = k
        out.keptMLP = Array(repeating: true, count: i)
        for c in ascending(scores).prefix(i - m) { out.keptMLP[c] = false }
        return out
    }

    // MARK: - checks

    static func checkScores(config: LlamaConfig, settings s: PruneSettings, scores: [AllocationScores]) throws {
        guard scores.map(\.layer) == Array(s.layerRange) else {
            throw PruneError.invalidScores("scores cover layers \(scores.map(\.layer)), settings prune \(s.layerStart)..<\(s.layerEnd)")
        }
        for sc in scores {
            let l = config.layers[sc.layer]
            let rep = l.numHeads / l.numKVHeads
            let units = (s.attentionUnit == .kvGroup || rep == 1) ? l.numKVHeads : l.numHeads
            guard sc.attention.count == units else {
                throw PruneError.invalidScores("layer \(sc.layer): \(sc.attention.count) attention scores, expected \(units) (one per \(s.attentionUnit == .kvGroup ? "KV group" : "query head"))")
            }
            guard sc.mlp.count == l.intermediateSize else {
                throw PruneError.invalidScores("layer \(sc.layer): \(sc.mlp.count) MLP scores, expected \(l.intermediateSize)")
            }
            guard (sc.attention + sc.mlp).allSatisfy(\.isFinite) else {
                throw PruneError.invalidScores("layer \(sc.layer) has a NaN or infinite score")
            }
        }
    }
}

/// Kept flags of one layer during allocation.
struct LayerKeep {
    var layer: Int
    var shape: LayerShape
    /// Whole KV groups are the attention unit (kv-group unit, or multi-head attention).
    var groupUnit: Bool
    var keptKV: [Bool]
    var keptQ: [Bool]
    var keptMLP: [Bool]

    init(layer: Int, shape: LayerShape, unit: AttentionUnit) {
        self.layer = layer
        self.shape = shape
        groupUnit = unit == .kvGroup || shape.numHeads == shape.numKVHeads
        keptKV = Array(repeating: true, count: shape.numKVHeads)
        keptQ = Array(repeating: true, count: shape.numHeads)
        keptMLP = Array(repeating: true, count: shape.intermediateSize)
    }

    func plan(scores: AllocationScores) -> LayerPlan {
        let rep = shape.numHeads / shape.numKVHeads
        let kv = keptKV.indices.filter { keptKV[$0] }
        let q = keptQ.indices.filter { keptQ[$0] && keptKV[$0 / rep] }
        return LayerPlan(layer: layer, original: shape, keptKVHeads: kv, keptQueryHeads: q,
                         keptMLPChannels: keptMLP.indices.filter { keptMLP[$0] },
                         attentionScores: scores.attention, mlpScores: scores.mlp)
    }
}
