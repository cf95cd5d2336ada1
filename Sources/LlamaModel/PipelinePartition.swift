// How a pipeline cuts a model: contiguous layer blocks, one per stage, balanced by the parameters each stage
// holds. Shared by the layer-sharded importance pass (ClusterPrune) and the layer-sharded LoRA tune (ClusterTune).
import Foundation

/// Contiguous layer blocks, one per stage.
public enum PipelinePartition {
    /// Parameters a stage holds: its layers, plus the embedding on the first stage, plus the final norm and the
    /// LM head on the last (a tied head is the embedding, held again by the last stage).
    public static func parameters(config c: LlamaConfig, layers: Range<Int>, first: Bool, last: Bool) -> Int {
        var n = layers.reduce(0) { $0 + c.layerParameterCount(c.layers[$1]) }
        if first { n += c.vocabSize * c.hiddenSize }
        if last { n += c.hiddenSize + c.vocabSize * c.hiddenSize }
        return n
    }

    /// `stages` contiguous non-empty blocks covering all layers, minimising the largest stage's parameters
    /// (ties: the earliest split). Throws when there are more stages than layers.
    public static func balanced(config c: LlamaConfig, stages p: Int) throws -> [Range<Int>] {
        let L = c.numLayers
        guard p >= 1, p <= L else {
            throw ModelError.invalidInput("pipeline: \(p) stages for \(L) layers (every stage needs at least one layer)")
        }
        // best[s][j]: smallest max-stage cost splitting layers 0..<j into stages 0..<s (stage s−1 ends at j).
        let inf = Int.max
        var best = Array(repeating: Array(repeating: inf, count: L + 1), count: p + 1)
        var cut = Array(repeating: Array(repeating: 0, count: L + 1), count: p + 1)
        best[0][0] = 0
        for s in 1...p {
            for j in s...L {
                for i in (s - 1)..<j where best[s - 1][i] != inf {
                    let cost = parameters(config: c, layers: i..<j, first: s == 1, last: s == p && j == L)
                    let v = max(best[s - 1][i], cost)
                    if v < best[s][j] { best[s][j] = v; cut[s][j] = i }
                }
            }
        }
        var ranges: [Range<Int>] = []
        var j = L
        for s in stride(from: p, through: 1, by: -1) {
            let i = cut[s][j]
            ranges.append(i..<j)
            j = i
        }
        return ranges.reversed()
    }
}
