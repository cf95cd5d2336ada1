// Data-parallel calibration gradients: the samples are split across MPI ranks, every rank runs the gradient
// pass on its shard, and, layer by layer as the backward produces them, the element-wise gradient sums (and
// Fisher sums) are MPI_Reduce'd to the rank that owns the layer BEFORE any score takes an absolute value (the sum
// of per-rank |W⊙g| is not |W⊙Σg|) — so the scores are exactly those of one process, and each layer's sums exist
// on one rank only.
// Weighting: the batch loss is the mean of per-sample means, so g = Σᵣ (nᵣ/N)·gᵣ, and likewise
// F = (1/N)·Σⱼ gⱼ² = Σᵣ (nᵣ/N)·Fᵣ with Fᵣ the shard's own Fisher.
import Cluster
import Foundation
import LlamaModel

public enum ShardedGradients {
    /// The contiguous sample range of `rank` among `size` ranks for `n` samples (sizes differ by at most one).
    public static func shard(rank: Int, size: Int, samples n: Int) -> Range<Int> {
        let lo = rank * n / size, hi = (rank + 1) * n / size
        return lo..<hi
    }

    /// Reduces layer `layer`'s gradient (and Fisher) to `owner`, each rank's share weighted by `weight` = nᵣ/N.
    /// Returns the sums on `owner`, nil elsewhere. Every rank calls it for the same layers in the same order.
    public static func reduce(layer: Int, gradient: LayerGradients, fisher: LayerGradients?, weight: Float,
                              like w: LayerWeights, owner: Int, comm: Communicator) throws
        -> (gradient: LayerGradients, fisher: LayerGradients?)?
    {
        var flat: [Float] = []
        flat.reserveCapacity(gradient.count * (fisher == nil ? 1 : 2))
        append(gradient, scaled: weight, to: &flat)
        if let fisher { append(fisher, scaled: weight, to: &flat) }
        try comm.reduceSum(&flat, root: owner)
        guard comm.rank == owner else { return nil }
        var offset = 0
        let g = take(like: w, from: flat, at: &offset)
        let f = fisher == nil ? nil : take(like: w, from: flat, at: &offset)
        return (g, f)
    }

    private static func append(_ g: LayerGradients, scaled s: Float, to flat: inout [Float]) {
        for part in g.parts { flat.append(contentsOf: part.map { $0 * s }) }
    }

    private static func take(like w: LayerWeights, from flat: [Float], at offset: inout Int) -> LayerGradients {
        func next(_ n: Int) -> [Float] { defer { offset += n }; return Array(flat[offset..<offset + n]) }
        return LayerGradients(parts: LayerGradients(zerosLike: w).parts.map { next($0.count) })
    }
}

extension LayerGradients {
    /// Elements over the four weight matrices.
    var count: Int { parts.reduce(0) { $0 + $1.count } }

    /// Every element times `s`.
    func scaled(by s: Float) -> LayerGradients {
        LayerGradients(parts: parts.map { $0.map { $0 * s } })
    }

    /// self + s·other, element-wise.
    func adding(_ other: LayerGradients, scaledBy s: Float) -> LayerGradients {
        func add(_ a: [Float], _ b: [Float]) -> [Float] { zip(a, b).map { $0 + s * $1 } }
        return LayerGradients(parts: zip(parts, other.parts).map { add($0, $1) })
    }
}
