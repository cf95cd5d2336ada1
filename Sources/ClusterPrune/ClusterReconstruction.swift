// Reconstruction after the cut in `cluster prune` (Pruning/Reconstruction.swift for the math), between the plan's
// broadcast and the write; each rank ends with the refit o_proj/down_proj of the layers it writes.
//   --shard samples: every rank sweeps its 1/N of the reconstruction windows through the whole model; each pruned
//       layer's Grams are summed over ranks (MPI_Allreduce, Float64) before the refit, so every rank solves the
//       same system as one process would.
//   --shard layers: the windows' residual stream [N × d] goes rank r → r+1 (every window crosses every stage,
//       nothing to reduce); each rank refits its own layers, widening one at a time in low-memory mode.
// The sweep holds one layer's Grams at a time. Only `lstsq` (inputs from the unpruned model) runs here.
import Cluster
import Foundation
import LlamaModel
import Pruning

extension ClusterPruneJob {
    /// This rank's refits (the layers it writes) and the reports of the layers it refit.
    func reconstruct(_ x: ClusterSession<PrunePhase>, _ held: HeldModel, plan: PrunePlan,
                     settings: ReconstructionSettings, data: CalibrationSet) throws
        -> (refits: [Int: RefitWeights], reports: [ReconstructionLayerReport])
    {
        let config = held.weights.config, len = data.sampleLength
        let byLayer = Dictionary(uniqueKeysWithValues: plan.layers.map { ($0.layer, $0) })
        guard let last = plan.layers.map(\.layer).max() else { return ([:], []) }
        var refits: [Int: RefitWeights] = [:], reports: [ReconstructionLayerReport] = []
        func progress(_ l: Int) { x.progress(.write, 0, 2, "reconstruction: layer \(l) of \(last + 1)") }
        switch options.shard {
        case .samples:
            let mine = ShardedGradients.shard(rank: comm.rank, size: comm.size, samples: data.samples.count)
            guard !mine.isEmpty else {
                throw PruneError.setting(.reconSamples, reason: "\(data.samples.count) windows for \(comm.size) ranks (each rank needs one)")
            }
            let tokens = Array(data.batchTokens[(mine.lowerBound * len)..<(mine.upperBound * len)])
            let sweep = try ReconstructionSweep(config: config, batch: mine.count, seqLen: len, method: settings.method,
                                                ridge: settings.ridge, bias: settings.bias,
                                                embedded: ReconstructionSweep.embedding(tokens, table: held.weights.embed,
                                                                                        config: config))
            for l in 0...last {
                progress(l)
                let step = try x.charge(.write) {
                    try sweep.step(layer: l, original: held.weights.layers[l], plan: byLayer[l]) { g in
                        var sum = g
                        try self.comm.allReduceSum(&sum)
                        return sum
                    }
                }
                if let (refit, report) = step {
                    if held.owned.contains(l) { refits[l] = refit }
                    reports.append(report)
                }
            }
        case .layers:
            let stage = held.stage!
            let r = comm.rank, block = held.owned, tag = 7301
            guard block.lowerBound <= last else { return ([:], []) }     // nothing pruned here or above
            let n = data.samples.count * len, d = config.hiddenSize
            let sweep = try ReconstructionSweep(config: config, batch: data.samples.count, seqLen: len,
                                                method: settings.method, ridge: settings.ridge,
                                                bias: settings.bias) { stream in
                if r == 0 {
                    if let streamed = stage.streamed {
                        try streamed.embed(tokens: data.batchTokens, into: stream)
                    } else {
                        try ReconstructionSweep.embedding(data.batchTokens, table: held.weights.embed, config: config)(stream)
                    }
                } else {
                    let got = try x.charge(.write) { try comm.receiveFloats(n * d, from: r - 1, tag: tag) }
                    stream.update(from: got, count: n * d)
                }
            }
            for l in block where l <= last {
                progress(l)
                let original = try stage.streamed?.widen(l) ?? held.weights.layers[l]
                if let (refit, report) = try sweep.step(layer: l, original: original, plan: byLayer[l]) {
                    refits[l] = refit
                    reports.append(report)
                }
            }
            if r + 1 < comm.size, block.upperBound <= last {
                try x.charge(.write) { try comm.send(sweep.denseStream(), to: r + 1, tag: tag) }
            }
        }
        return (refits, reports)
    }
}
