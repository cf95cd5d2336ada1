// Allocation: the reference's local arithmetic (LLaMA-7B at LLM-Pruner's README setting), tie-breaking, the
// query-head unit, global per-parameter ranking, rounding, and ratio solving for a parameter target.
import Foundation
import Testing
@testable import Pruning
import LlamaModel

@Suite struct AllocationTests {
    static func llama(vocab: Int, heads: Int, kv: Int, inter: Int) -> LlamaConfig {
        LlamaConfig(vocabSize: vocab, hiddenSize: 4096, headDim: 128,
                    layers: Array(repeating: LayerShape(numHeads: heads, numKVHeads: kv, intermediateSize: inter), count: 32),
                    rmsNormEps: 1e-5, ropeTheta: 10000, maxPositionEmbeddings: 2048, tieWordEmbeddings: false)
    }

    @Test func referenceParameterCounts() {
        // LLaMA-7B, r = 0.25, layers 4..<30: 8 of 32 heads and 2752 MLP channels per layer, 6,738,415,616 → 5,422,977,024
        let l7 = Self.llama(vocab: 32000, heads: 32, kv: 32, inter: 11008)
        #expect(l7.parameterCount == 6_738_415_616)
        let s = PruneSettings(ratio: 0.25, layerStart: 4, layerEnd: 30, criterion: .element1)
        #expect(Allocator.localRemovalCounts(shape: l7.layers[0], headDim: 128, ratio: 0.25, unit: .kvGroup) == (8, 2752))
        #expect(Allocator.localRemovalCounts(shape: l7.layers[0], headDim: 128, ratio: 0.6, unit: .kvGroup) == (19, 6605))
        #expect(Allocator.localParameterCount(config: l7, settings: s, ratio: 0.25) == 5_422_977_024)
        // "Block 50%": r = 0.6 on layers 3..<31
        let s50 = PruneSettings(ratio: 0.6, layerStart: 3, layerEnd: 31, criterion: .element1)
        #expect(Allocator.localParameterCount(config: l7, settings: s50, ratio: 0.6) == 3_350_188_032)
        // Llama-3-8B: 2 of 8 KV groups (8 query heads) and 3584 channels, 8,030,261,248 → 6,612,586,496
        let l3 = Self.llama(vocab: 128256, heads: 32, kv: 8, inter: 14336)
        #expect(l3.parameterCount == 8_030_261_248)
        #expect(Allocator.localRemovalCounts(shape: l3.layers[0], headDim: 128, ratio: 0.25, unit: .kvGroup) == (2, 3584))
        #expect(Allocator.localRemovalCounts(shape: l3.layers[0], headDim: 128, ratio: 0.20, unit: .kvGroup) == (1, 2868))
        #expect(Allocator.localParameterCount(config: l3, settings: s, ratio: 0.25) == 6_612_586_496)
    }

    @Test func localKVGroupRemovesLowestAndLowerIndexOnTies() throws {
        let c = PlanFixtures.config(heads: 8, kv: 4)                 // n_rep 2
        let s = PruneSettings(ratio: 0.25, layerStart: 2, layerEnd: 3, criterion: .l1)
        let mlp = (0..<48).map { Double($0 % 12) }                   // channels 0, 12, 24, 36 score 0; 1, 13, 25, 37 score 1; ...
        let r = try Allocator.allocate(config: c, settings: s, scores: [AllocationScores(layer: 2, attention: [3, 1, 1, 5], mlp: mlp)])
        let l = r.layers[0]
        #expect(l.keptKVHeads == [0, 2, 3])                          // 32 − Int(32·0.75) = 8 channels = 1 group; tie 1/2 → 1 goes
        #expect(l.keptQueryHeads == [0, 1, 4, 5, 6, 7])
        #expect(l.keptMLPChannels.count == 36)                       // 48 − Int(48·0.75) = 12 go
        // the 12 lowest: scores 0, 1 and 2, four channels each
        #expect(Set(0..<48).subtracting(l.keptMLPChannels) == Set((0..<48).filter { $0 % 12 < 3 }))
        // ties inside the cut: 5 channels to remove from four 0s and four 1s → the 1 with the lowest index goes
        let s2 = PruneSettings(ratio: 0.11, layerStart: 2, layerEnd: 3, criterion: .l1)   // 48 − Int(42.72) = 6
        let r2 = try Allocator.allocate(config: c, settings: s2, scores: [AllocationScores(layer: 2, attention: [3, 1, 1, 5], mlp: mlp)])
        #expect(Set(0..<48).subtracting(r2.layers[0].keptMLPChannels) == [0, 12, 24, 36, 1, 13])
        #expect(r.ratio == 0.25 && r.targetParameters == nil)
    }

    @Test func localQueryHeadRemovesTheSameNumberFromEveryGroup() throws {
        let c = PlanFixtures.config(heads: 8, kv: 2)                 // n_rep 4
        let s = PruneSettings(ratio: 0.5, layerStart: 1, layerEnd: 2, criterion: .l1, attentionUnit: .queryHead)
        let att: [Double] = [5, 1, 2, 9,   0.5, 0.4, 7, 8]
        let r = try Allocator.allocate(config: c, settings: s, scores: [AllocationScores(layer: 1, attention: att, mlp: Array(repeating: 1, count: 48))])
        #expect(r.layers[0].keptKVHeads == [0, 1])
        #expect(r.layers[0].keptQueryHeads == [0, 3, 6, 7])          // 4 − Int(4·0.5) = 2 per group
        #expect(r.layers[0].pruned == LayerShape(numHeads: 4, numKVHeads: 2, intermediateSize: 24))
        // multi-head attention: a query head is its own group; the kv-group rule applies
        let mha = PlanFixtures.config(heads: 4, kv: 4)
        let r2 = try Allocator.allocate(config: mha, settings: s, scores: [AllocationScores(layer: 1, attention: [4, 3, 2, 1], mlp: Array(repeating: 1, count: 48))])
        #expect(r2.layers[0].keptQueryHeads == [0, 1] && r2.layers[0].keptKVHeads == [0, 1])
    }

    /// `parameters` ranks raw score per parameter, so a layer whose scores are uniformly small loses the most;
    /// `layer` ranks relative to the layer's own mean, so two layers with the same score shape lose alike.
    @Test func globalLayerNormalizationComparesWithinLayers() throws {
        let c = PlanFixtures.config(heads: 4, kv: 4)
        let shape = (0..<48).map { Double($0 % 8) + 1 }
        let scores = [AllocationScores(layer: 1, attention: [9, 9, 9, 9], mlp: shape.map { $0 * 0.01 }),
                      AllocationScores(layer: 2, attention: [9, 9, 9, 9], mlp: shape)]
        var s = PruneSettings(ratio: 0.25, layerStart: 1, layerEnd: 3, criterion: .l1, allocation: .global)
        let byParams = try Allocator.allocate(config: c, settings: s, scores: scores)
        s.globalNormalization = .layer
        let byLayer = try Allocator.allocate(config: c, settings: s, scores: scores)
        let kept = { (r: AllocationResult) in r.layers.map(\.keptMLPChannels.count) }
        #expect(kept(byParams)[0] < kept(byParams)[1])       // the small-scored layer takes the whole cut
        #expect(abs(kept(byLayer)[0] - kept(byLayer)[1]) <= 6)   // same shape, same cut (up to one tied score level)
    }

    @Test func atLeastOneUnitStays() throws {
        let c = PlanFixtures.config(heads: 8, kv: 2)
        for unit in AttentionUnit.allCases {
            let s = PruneSettings(ratio: 0.99, layerStart: 0, layerEnd: 6, criterion: .l1, attentionUnit: unit)
            let r = try Allocator.allocate(config: c, settings: s, scores: PlanFixtures.randomScores(c, s))
            for l in r.layers {
                #expect(l.keptMLPChannels.count == 1)
                #expect(unit == .kvGroup ? l.pruned.numKVHeads == 1 && l.pruned.numHeads == 4
                                         : l.pruned.numKVHeads == 2 && l.pruned.numHeads == 2)
            }
        }
        // r = 0 keeps everything
        let s0 = PruneSettings(ratio: 0, layerStart: 0, layerEnd: 6, criterion: .l1)
        let r0 = try Allocator.allocate(config: c, settings: s0, scores: PlanFixtures.randomScores(c, s0))
        #expect(r0.layers.allSatisfy { $0.pruned == $0.original })
    }

    @Test func globalRanksPerParameter() throws {
        // n_rep 2: a KV group saves (2·2+2)·8·32 = 1536 parameters, an MLP channel 3·32 = 96.
        let c = PlanFixtures.config(layers: 2, heads: 4, kv: 2, inter: 16)
        let total = c.parameterCount
        let frac = Double(total - 2976 + 50) / Double(total)         // 15 MLP channels of B + group 0 of A
        let s = PruneSettings(ratio: 0, layerStart: 0, layerEnd: 2, criterion: .l1, allocation: .global, targetParams: frac)
        let a = AllocationScores(layer: 0, attention: [16, 100], mlp: Array(repeating: 2, count: 16))      // 0.0104, 0.065 | 0.0208
        let b = AllocationScores(layer: 1, attention: [1000, 1000], mlp: Array(repeating: 0.5, count: 16)) // 0.65 | 0.0052
        let r = try Allocator.allocate(config: c, settings: s, scores: [a, b])
        // raw scores would take A's MLP (2) before A's group 0 (16); per parameter the group is cheaper
        #expect(r.layers[0].keptKVHeads == [1])
        #expect(r.layers[0].keptMLPChannels.count == 16)
        #expect(r.layers[1].keptKVHeads == [0, 1])
        #expect(r.layers[1].keptMLPChannels == [15])                 // the last channel is never removed; ties: lower index first
        #expect(r.targetParameters == Int((Double(total) * frac).rounded(.down)))
    }

    /// With biases a unit saves its bias entries too (MLP channel: 3·d + 2 with gate/up biases; KV group:
    /// (2·n_rep + 2)·hd·d + (n_rep + 2)·hd with q/k/v biases): a target exactly five biased channels below the total
    /// removes exactly five.
    @Test func globalCountsTheBiasesAUnitTakes() throws {
        var c = PlanFixtures.config(layers: 2, heads: 4, kv: 2, inter: 16)
        (c.qkvBias, c.oBias, c.mlpBias) = (true, true, true)
        let total = c.parameterCount
        for (unitCost, attention) in [(3 * 32 + 2, false), ((2 * 2 + 2) * 8 * 32 + (2 + 2) * 8, true)] {
            let frac = (Double(total - unitCost * (attention ? 1 : 5)) + 0.5) / Double(total)
            let s = PruneSettings(ratio: 0, layerStart: 0, layerEnd: 2, criterion: .l1, allocation: .global, targetParams: frac)
            let a = AllocationScores(layer: 0, attention: attention ? [1, 1e9] : [1e9, 1e9],
                                     mlp: (1...16).map { attention ? 1e9 : Double($0) })
            let b = AllocationScores(layer: 1, attention: [1e9, 1e9], mlp: Array(repeating: 1e9, count: 16))
            let r = try Allocator.allocate(config: c, settings: s, scores: [a, b])
            #expect(r.layers[0].keptMLPChannels.count == (attention ? 16 : 11))
            #expect(r.layers[0].keptKVHeads == (attention ? [1] : [0, 1]))
            var after = c
            for l in r.layers { after.layers[l.layer] = l.pruned }
            #expect(after.parameterCount == r.targetParameters)
        }
    }

    @Test func globalMeetsTheLocalTargetWithinOneUnit() throws {
        let c = PlanFixtures.config(layers: 8, heads: 8, kv: 2, inter: 48)
        for unit in AttentionUnit.allCases {
            for seed in 1...5 as ClosedRange<UInt64> {
                let s = PruneSettings(ratio: 0.4, layerStart: 2, layerEnd: 7, criterion: .l1, attentionUnit: unit, allocation: .global)
                let r = try Allocator.allocate(config: c, settings: s, scores: PlanFixtures.randomScores(c, s, seed: seed))
                let target = Allocator.localParameterCount(config: c, settings: s, ratio: 0.4)
                #expect(r.targetParameters == target)
                var after = c
                for l in r.layers { after.layers[l.layer] = l.pruned }
                let maxCost = unit == .kvGroup ? 10 * 8 * 32 : 2 * 2 * 8 * 32
                #expect(after.parameterCount <= target && after.parameterCount > target - maxCost)
                for l in r.layers {
                    // GQA stays whole: the same number of heads in every kept group
                    #expect(l.pruned.numHeads % l.pruned.numKVHeads == 0 && l.pruned.numHeads >= l.pruned.numKVHeads)
                    if unit == .queryHead {
                        // removed heads are the lowest of each group
                        let rep = 4
                        for g in 0..<2 {
                            let heads = Array(g * rep..<(g + 1) * rep)
                            let kept = heads.filter { l.keptQueryHeads.contains($0) }
                            let removed = heads.filter { !l.keptQueryHeads.contains($0) }
                            #expect(kept.count == l.pruned.numHeads / 2)
                            for x in removed { for y in kept { #expect(l.attentionScores[x] <= l.attentionScores[y]) } }
                        }
                    }
                }
            }
        }
    }

    @Test func roundToRoundsKeptMLPWidthsInScoreOrder() throws {
        let c = PlanFixtures.config(heads: 8, kv: 2, inter: 48)
        let mlp = (0..<48).map { Double(($0 * 17) % 48) }           // a permutation of 0..<48
        func kept(_ r: Double, _ to: Int, _ allocation: AllocationMode = .local) throws -> [Int] {
            let s = PruneSettings(ratio: r, layerStart: 1, layerEnd: 2, criterion: .l1, allocation: allocation, roundTo: to)
            return try Allocator.allocate(config: c, settings: s, scores: [AllocationScores(layer: 1, attention: [1, 2], mlp: mlp)]).layers[0].keptMLPChannels
        }
        func best(_ n: Int) -> [Int] { (0..<48).filter { mlp[$0] >= Double(48 - n) } }
        #expect(try kept(0.3, 8) == best(32))                        // 33 kept → 32 (one more removed)
        #expect(try kept(0.2, 8) == best(40))                        // 38 kept → 40 (two taken back)
        #expect(try kept(0.25, 8) == best(40))                       // 36 kept → halfway rounds up to 40
        #expect(try kept(0.95, 8) == best(8))                        // 2 kept → at least 8
        #expect(try kept(0.1, 64) == best(43))                       // I < roundTo: left alone
        #expect(try kept(0.3, 8, .global).count % 8 == 0)
        let big = PlanFixtures.config(inter: 100)
        let s = PruneSettings(ratio: 0.02, layerStart: 0, layerEnd: 1, criterion: .l1, roundTo: 64)
        let r = try Allocator.allocate(config: big, settings: s, scores: PlanFixtures.randomScores(big, s))
        #expect(r.layers[0].keptMLPChannels.count == 64)             // 98 → 128 would exceed 100: largest multiple ≤ I
    }

    @Test func targetParamsSolvesTheLocalRatio() throws {
        let c = PlanFixtures.config(layers: 8, heads: 8, kv: 2, inter: 48)
        for frac in [0.95, 0.9, 0.8, 0.7] {
            let s = PruneSettings(ratio: 0, layerStart: 2, layerEnd: 7, criterion: .l1, targetParams: frac)
            let r = try Allocator.allocate(config: c, settings: s, scores: PlanFixtures.randomScores(c, s))
            let target = Int((Double(c.parameterCount) * frac).rounded(.down))
            #expect(r.targetParameters == target)
            #expect(Allocator.localParameterCount(config: c, settings: s, ratio: r.ratio) <= target)
            #expect(Allocator.localParameterCount(config: c, settings: s, ratio: r.ratio.nextDown) > target)
            var after = c
            for l in r.layers { after.layers[l.layer] = l.pruned }
            #expect(after.parameterCount == Allocator.localParameterCount(config: c, settings: s, ratio: r.ratio))
        }
        // keep everything: ratio 0
        let all = PruneSettings(ratio: 0.5, layerStart: 2, layerEnd: 7, criterion: .l1, targetParams: 1)
        #expect(try Allocator.allocate(config: c, settings: all, scores: PlanFixtures.randomScores(c, all)).ratio == 0)
    }

    @Test func unreachableTargetIsOneLine() {
        let c = PlanFixtures.config()
        for mode in AllocationMode.allCases {
            let s = PruneSettings(ratio: 0, layerStart: 2, layerEnd: 4, criterion: .l1, allocation: mode, targetParams: 0.1)
            let m = pruneMessage { _ = try Allocator.allocate(config: c, settings: s, scores: PlanFixtures.randomScores(c, s)) }
            #expect(m?.hasPrefix("prune setting targetParams: keeping") == true, "\(m ?? "no error")")
            #expect(m?.contains("is not reachable by pruning layers 2..<4") == true)
        }
    }

    @Test func scoresMustFitTheModel() {
        let c = PlanFixtures.config()
        let s = PruneSettings(ratio: 0.2, layerStart: 1, layerEnd: 3, criterion: .l1, attentionUnit: .queryHead)
        var sc = PlanFixtures.randomScores(c, s)
        sc[1].attention.removeLast()
        #expect(pruneMessage { _ = try Allocator.allocate(config: c, settings: s, scores: sc) }
                == "invalid importance scores: layer 2: 7 attention scores, expected 8 (one per query head)")
        #expect(pruneMessage { _ = try Allocator.allocate(config: c, settings: s, scores: Array(sc.prefix(1))) }
                == "invalid importance scores: scores cover layers [1], settings prune 1..<3")
        sc = PlanFixtures.randomScores(c, s)
        sc[0].mlp[3] = .nan
        #expect(pruneMessage { _ = try Allocator.allocate(config: c, settings: s, scores: sc) }
                == "invalid importance scores: layer 1 has a NaN or infinite score")
    }
}
