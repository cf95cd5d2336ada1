// Pruning units of one layer and their scores.
import LlamaModel

/// What one attention score covers.
public enum AttentionUnit: String, Codable, CaseIterable, Sendable {
    /// One KV head with the n_rep = nq/nkv query heads that read it: query heads k·n_rep ..< (k+1)·n_rep
    /// (the reference `llama3.py` unit; with nkv = nq it is one head, as in `hf_prune.py --block_wise`).
    case kvGroup = "kv-group"
    /// One query head (q rows and o columns); K/V heads are kept. Finer than the reference, which never prunes
    /// query heads inside a group: `llama3.py` roots attention at k_proj, so a KV head's query heads go with it
    /// (asked in github.com/horseee/LLM-Pruner/issues/64).
    case queryHead = "query-head"

    /// Number of units of this kind in a layer of the given shape.
    public func count(in shape: LayerShape) -> Int {
        switch self {
        case .kvGroup: return shape.numKVHeads
        case .queryHead: return shape.numHeads
        }
    }
}

/// Importance scores of one layer's prunable units; higher means more important (the lowest are pruned).
public struct LayerScores: Codable, Equatable, Sendable {
    public var layer: Int
    /// One score per KV group (`AttentionUnit.kvGroup`) or per query head (`.queryHead`), in head order.
    public var attention: [Double]
    /// One score per intermediate (SwiGLU) channel.
    public var mlp: [Double]

    public init(layer: Int, attention: [Double], mlp: [Double]) {
        self.layer = layer
        self.attention = attention
        self.mlp = mlp
    }
}
