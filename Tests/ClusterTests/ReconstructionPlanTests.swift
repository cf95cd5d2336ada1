// The memory planner with a reconstruction: the extra moment is the sweep plus one layer's Grams and solve plus the
// refits kept for the write, and it grows with the reconstruction windows by exactly their stream.
import ClusterPrune
import Foundation
import LlamaModel
import ModelExport
import Pruning
import Testing

struct ReconstructionPlanTests {
    func inputs(_ c: LlamaConfig, shard: ShardMode, ranks: Int, recon: ReconstructionSettings?) -> MemoryPlanInputs {
        // samples mode: an l1 plan (no gradient pass), as measured on SmolLM2 in docs/pruning.md
        var x = MemoryPlanInputs(config: c, shard: shard, ranks: ranks, lowMemory: shard == .layers, fileBytesPerParameter: 2,
                                 samples: 10, sampleLength: 64, scored: 4..<(c.numLayers - 2), needsGradient: shard == .layers,
                                 needsFisher: false, ratio: 0.25)
        x.reconstruction = recon
        return x
    }

    @Test(arguments: [ShardMode.samples, .layers])
    func reconstructionMomentCountsStreamsGramsAndRefits(shard: ShardMode) throws {
        let c = (shard == .samples ? SyntheticShape.smollm2 : .llama7b).config()
        let ranks = shard == .samples ? 2 : 4, inter = c.layers[0].intermediateSize
        let none = try MemoryPlanner.plan(inputs(c, shard: shard, ranks: ranks, recon: nil))
        let small = try MemoryPlanner.plan(inputs(c, shard: shard, ranks: ranks,
                                                  recon: ReconstructionSettings(method: .lstsq, samples: 64, sampleLength: 128)))
        let large = try MemoryPlanner.plan(inputs(c, shard: shard, ranks: ranks,
                                                  recon: ReconstructionSettings(method: .lstsq, samples: 512, sampleLength: 128)))
        // The down_proj Gram alone is I² Float64 (LLaMA-7B: 969 MB): the reconstruction is the peak of a rank that
        // holds a pruned layer, and it is above the plan without it.
        for (a, b) in zip(none.ranks, small.ranks) where b.layerStart < c.numLayers - 2 {
            #expect(b.peakBytes > a.peakBytes, "rank \(b.rank)")
            #expect(b.peakPhase == "reconstruction", "rank \(b.rank): \(b.peakPhase)")
            #expect(b.peakBytes - a.peakBytes > 8 * inter * inter)
        }
        // 448 more windows of 128 tokens: the streams grow by 448·128·d·4 bytes over the ranks that share them
        // (samples: split over the ranks; layers: every stage holds them all, plus the received and sent copies).
        let d = c.hiddenSize
        let extra = shard == .samples ? 4 * d * 128 * (512 / ranks - 64 / ranks) : 3 * 4 * d * 128 * (512 - 64)
        for (a, b) in zip(small.ranks, large.ranks) where b.peakPhase == "reconstruction" && a.peakPhase == "reconstruction" {
            #expect(b.peakBytes - a.peakBytes == extra, "rank \(b.rank)")
        }
    }
}
