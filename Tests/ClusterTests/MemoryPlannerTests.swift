// The memory planner's arithmetic and its verdicts (the measured side is in Tests/CLITests/LowMemoryTests.swift and
// scripts/bench/memory_planner.sh): sizes, the LLaMA-7B decision (one process refused, four ranks fit 6 GiB), and
// hints that really fit.
import ClusterPrune
import Foundation
import LlamaModel
import ModelExport
import Pruning
import Testing

struct MemoryPlannerTests {
    func inputs(_ c: LlamaConfig, ranks: Int, low: Bool = true, samples: Int = 10, length: Int = 64,
                shard: ShardMode = .layers) -> MemoryPlanInputs {
        MemoryPlanInputs(config: c, shard: shard, ranks: ranks, lowMemory: low, fileBytesPerParameter: 2, samples: samples,
                         sampleLength: length, scored: 4..<(c.numLayers - 2), needsGradient: true, needsFisher: false,
                         ratio: 0.2)
    }

    @Test func sizes() {
        #expect(MemoryPlanner.parseSize("6G") == 6 << 30)
        #expect(MemoryPlanner.parseSize("6GiB") == 6 << 30)
        #expect(MemoryPlanner.parseSize("512M") == 512 << 20)
        #expect(MemoryPlanner.parseSize("1.5G") == 3 << 29)
        #expect(MemoryPlanner.parseSize("4096") == 4096)
        for bad in ["", "G", "-1G", "lots", "0", "1e30G"] { #expect(MemoryPlanner.parseSize(bad) == nil, "\(bad)") }
    }

    @Test func llama7bNeedsFourRanksOfSixGiB() throws {
        let c = SyntheticShape.llama7b.config(), budget = 6 << 30
        #expect(c.parameterCount == 6_738_415_616)
        // One process, even streaming bf16 layers, holds 13.5 GB of mapped weights: refused, with the way out.
        do {
            _ = try MemoryPlanner.check(inputs(c, ranks: 1), budget: budget)
            Issue.record("one process was not refused")
        } catch let e as MemoryBudgetError {
            #expect(e.message.contains("per rank with 1 rank"), "\(e.message)")
            #expect(e.message.contains("use ≥ 4 ranks"), "\(e.message)")
            #expect(e.plan.largest > 13_000_000_000)
        }
        let four = try MemoryPlanner.check(inputs(c, ranks: 4), budget: budget)
        #expect(four.ranks.count == 4 && four.largest <= budget)
        for r in four.ranks {     // the bf16 block is about a quarter of 13.5 GB
            #expect(r.mappedBytes > 3_000_000_000 && r.mappedBytes < 3_800_000_000, "\(r)")
        }
        // fp32 layers on four ranks do not fit (6.5 GB of weights per rank): the low-memory mode is what fits.
        #expect(try MemoryPlanner.plan(inputs(c, ranks: 4, low: false)).largest > budget)
        // More ranks never need more per rank.
        var last = Int.max
        for n in [1, 2, 4, 8, 16] {
            let p = try MemoryPlanner.plan(inputs(c, ranks: n))
            #expect(p.largest <= last, "\(n) ranks")
            last = p.largest
        }
    }

    /// Biases (Qwen2's q/k/v; Llama's attention_bias + mlp_bias) are weights, mapped bytes and gradients too.
    @Test func biasesAreCounted() throws {
        let c = SyntheticShape.llama7b.config()
        var b = c
        (b.qkvBias, b.oBias, b.mlpBias) = (true, true, true)
        let s = c.layers[0], perLayer = (s.numHeads + 2 * s.numKVHeads) * c.headDim + c.hiddenSize
            + 2 * s.intermediateSize + c.hiddenSize
        #expect(b.layerBiasCount(s) == perLayer && b.parameterCount == c.parameterCount + c.numLayers * perLayer)
        let (pc, pb) = (try MemoryPlanner.plan(inputs(c, ranks: 4, low: false)), try MemoryPlanner.plan(inputs(b, ranks: 4, low: false)))
        let (lc, lb) = (try MemoryPlanner.plan(inputs(c, ranks: 4)), try MemoryPlanner.plan(inputs(b, ranks: 4)))
        for r in 0..<4 {
            let layers = pc.ranks[r].layerEnd - pc.ranks[r].layerStart
            #expect(pb.ranks[r].layerEnd - pb.ranks[r].layerStart == layers)
            #expect(pb.ranks[r].weightBytes - pc.ranks[r].weightBytes == 4 * layers * perLayer)
            #expect(lb.ranks[r].mappedBytes - lc.ranks[r].mappedBytes == 2 * layers * perLayer)
            #expect(lb.ranks[r].layerBytes - lc.ranks[r].layerBytes == 4 * perLayer)
            if pc.ranks[r].gradientBytes > 0 { #expect(pb.ranks[r].gradientBytes - pc.ranks[r].gradientBytes == 4 * perLayer) }
        }
    }

    @Test func theActivationCacheTakesOnlyTheRoomLeft() throws {
        let c = SyntheticShape.llama7b.config(), budget = 6 << 30
        var x = inputs(c, ranks: 4)
        x.activationCache = 0
        let none = try MemoryPlanner.plan(x)
        #expect(none.ranks.allSatisfy { $0.cachedLayers == 0 && $0.cacheBytes == 0 })
        x.activationCache = nil
        let auto = try MemoryPlanner.check(x, budget: budget)       // the budget's headroom, less 5 %
        #expect(auto.largest <= budget)
        #expect(auto.ranks.contains { $0.cachedLayers > 0 }, "ranks 0–2 have room for some layers")
        for (a, b) in zip(auto.ranks, none.ranks) {
            // the cache, less what a cached layer's backward does not allocate
            #expect(a.cachedLayers == 0 ? a.peakBytes == b.peakBytes : a.peakBytes > b.peakBytes && a.peakBytes - b.peakBytes <= a.cacheBytes)
            #expect(a.peakBytes <= Int(0.95 * Double(budget)) || a.cachedLayers == 0)
        }
        // Without a budget, up to 2 GiB; never more layers than the block has at or above the scored range.
        let free = try MemoryPlanner.plan(inputs(SyntheticShape.smollm2.config(), ranks: 2))
        #expect(free.ranks.map(\.cachedLayers) == [11, 15], "\(free.ranks.map(\.cachedLayers))")
        // An explicit cache larger than the budget allows is refused like any other excess.
        x.activationCache = 4 << 30
        #expect(throws: MemoryBudgetError.self) { try MemoryPlanner.check(x, budget: budget) }
    }

    @Test func theCalibrationHintFits() throws {
        let c = SyntheticShape.smollm2.config()
        let big = inputs(c, ranks: 1, samples: 64, length: 512)
        let need = try MemoryPlanner.plan(big).largest
        let small = try MemoryPlanner.plan(inputs(c, ranks: 1, samples: 8, length: 512)).largest
        let budget = (need + small) / 2
        do {
            _ = try MemoryPlanner.check(big, budget: budget)
            Issue.record("not refused")
        } catch let e as MemoryBudgetError {
            let m = e.message
            let hint = try #require(m.range(of: "--calib-samples ≤ "), "\(m)")
            let k = Int(m[hint.upperBound...].prefix { $0.isNumber })!
            #expect(k >= 8 && k < 64)
            func planned(_ s: Int) throws -> Int {      // as the check plans: the cache gets only the headroom
                var y = inputs(c, ranks: 1, samples: s, length: 512)
                y.budget = budget
                return try MemoryPlanner.plan(y).largest
            }
            #expect(try planned(k) <= budget)
            #expect(try planned(k + 1) > budget)
        }
    }

    @Test func samplesModeIsToldToShardLayers() throws {
        let c = SyntheticShape.tinyllama.config()
        do {
            _ = try MemoryPlanner.check(inputs(c, ranks: 2, low: false, shard: .samples), budget: 2 << 30)
            Issue.record("not refused")
        } catch let e as MemoryBudgetError {
            #expect(e.message.contains("--shard layers"), "\(e.message)")
        }
    }
}
