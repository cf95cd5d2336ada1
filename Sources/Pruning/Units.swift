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
    /// The per-channel scores the attention scores are sums of: `attention[u]` = Σ of the u-th block of
    /// `attentionChannels.count / attention.count` consecutive entries (KV channels of a group, or o_proj input
    /// channels of a head or group). Standardized global allocation reads their mean and spread, as FLAP
    /// standardizes channel scores before averaging them per head. nil when the criterion has none (random).
    public var attentionChannels: [Double]?

    public init(layer: Int, attention: [Double], mlp: [Double], attentionChannels: [Double]? = nil) {
        self.layer = layer
        self.attention = attention
        self.mlp = mlp
        self.attentionChannels = attentionChannels
    }
}
