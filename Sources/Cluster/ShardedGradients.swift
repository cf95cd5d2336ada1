// Data-parallel calibration gradients: the samples are split across MPI ranks, every rank runs the gradient
// pass on its shard, and the element-wise gradient sums (and Fisher sums) are reduced with MPI_Allreduce
// BEFORE any score takes an absolute value — so the scores are exactly those of one process (peers.md §0.5).
// Weighting: the batch loss is the mean of per-sample means, so g = Σᵣ (nᵣ/N)·gᵣ, and likewise
// F = (1/N)·Σⱼ gⱼ² = Σᵣ (nᵣ/N)·Fᵣ with Fᵣ the shard's own Fisher.
import Foundation
import LlamaModel

public struct ShardedGradients {
    public let comm: Communicator

    public init(comm: Communicator) { self.comm = comm }

    /// The contiguous sample range of `rank` among `size` ranks for `n` samples (sizes differ by at most one).
    public static func shard(rank: Int, size: Int, samples n: Int) -> Range<Int> {
        let lo = rank * n / size, hi = (rank + 1) * n / size
        return lo..<hi
    }

    public func gradients(weights: LlamaWeights, tokens: [Int32], batch: Int, seqLen: Int, layers: Range<Int>,
                          fisher: Bool) throws -> GradientResult {
        let mine = Self.shard(rank: comm.rank, size: comm.size, samples: batch)
        var local: GradientResult
        if mine.isEmpty {
            let zeros = Dictionary(uniqueKeysWithValues: layers.map { ($0, LayerGradients(zerosLike: weights.layers[$0])) })
            local = GradientResult(loss: 0, gradients: zeros, fisher: fisher ? zeros : nil, peakActivationBytes: 0)
        } else {
            local = try GradientPass(weights: weights).gradients(
                tokens: Array(tokens[(mine.lowerBound * seqLen)..<(mine.upperBound * seqLen)]), batch: mine.count,
                seqLen: seqLen, layers: layers, fisher: fisher)
        }
        let weight = Float(mine.count) / Float(batch)
        // One flat buffer per reduction: [grads of every layer | fisher of every layer].
        var flat: [Float] = []
        for l in layers { append(local.gradients[l]!, scaled: weight, to: &flat) }
        if fisher { for l in layers { append(local.fisher![l]!, scaled: weight, to: &flat) } }
        comm.allReduceSum(&flat)
        var losses = [local.loss * Double(mine.count) / Double(batch), Double(local.peakActivationBytes)]
        comm.allReduceSum(&losses)
        var offset = 0
        var grads: [Int: LayerGradients] = [:], fishers: [Int: LayerGradients] = [:]
        for l in layers { grads[l] = take(like: weights.layers[l], from: flat, at: &offset) }
        if fisher { for l in layers { fishers[l] = take(like: weights.layers[l], from: flat, at: &offset) } }
        return GradientResult(loss: losses[0], gradients: grads, fisher: fisher ? fishers : nil,
                              peakActivationBytes: local.peakActivationBytes)
    }

    private func append(_ g: LayerGradients, scaled s: Float, to flat: inout [Float]) {
        for part in [g.wqkv, g.wo, g.wGateUp, g.wDown] { flat.append(contentsOf: part.map { $0 * s }) }
    }

    private func take(like w: LayerWeights, from flat: [Float], at offset: inout Int) -> LayerGradients {
        func next(_ n: Int) -> [Float] { defer { offset += n }; return Array(flat[offset..<offset + n]) }
        return LayerGradients(wqkv: next(w.wqkv.count), wo: next(w.wo.count), wGateUp: next(w.wGateUp.count),
                              wDown: next(w.wDown.count))
    }
}
