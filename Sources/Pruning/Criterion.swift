// Importance criteria and group reductions of LLM-Pruner (`TaylorImportance`, `MagnitudeImportance` in
// LLMPruner/pruner/hf_llama_pruner.py; arXiv 2305.11627 §3.2), as the CLI and plan files name them.

/// How a weight element's salience is computed (arXiv 2305.11627 §3.2: vector-wise and element-wise importance,
/// first order and the Fisher approximation of the second). Raw values are the names used on the
/// command line and in plan files.
///
/// | case          | element salience S            | reference name (`--taylor` / `--pruner_type`) |
/// |---------------|-------------------------------|-----------------------------------------------|
/// | `element1`    | W⊙g                           | `param_first` (Element¹, the reference default) |
/// | `element2`    | W⊙g − ½·W⊙F⊙W                 | `param_mix` (Element²)                         |
/// | `paramSecond` | W⊙F⊙W (no ½)                  | `param_second`                                 |
/// | `vector`      | W⊙g, abs taken after summing  | `vectorize` (Vector)                           |
/// | `l1`          | \|W\|                         | `l1` magnitude                                 |
/// | `l2`          | W² (sum of squares, no sqrt)  | `l2` magnitude                                 |
/// | `random`      | uniform random score per unit | `random`                                       |
/// | `fluctuation` | per input channel c of o/down: Var(x_c)·‖W[:,c]‖² | FLAP's `WIFV` (not LLM-Pruner's) |
/// | `obs`         | per unit of o/down: its greedy OBS error after refit (OBSCriterion.swift) | SlimGPT's (not LLM-Pruner's) |
///
/// g is the calibration-batch gradient, F the empirical Fisher diagonal (1/N)·Σⱼ gⱼ². `fluctuation` is FLAP's
/// gradient-free "weighted input feature variance" (arXiv 2312.11983 §3.1, `metrics['WIFV']` in lib/prune.py of
/// github.com/CASIA-IVA-Lab/FLAP): the variance of a channel's input over the calibration tokens times the squared
/// norm of the weight column it multiplies, i.e. how much the output moves when the channel is replaced by its mean.
public enum Criterion: String, Codable, CaseIterable, Sendable {
    case element1, element2, paramSecond = "param_second", vector, l1, l2, random, fluctuation, obs

    /// Whether the first-order gradient g enters the salience.
    public var needsGradient: Bool {
        switch self {
        case .element1, .element2, .vector: return true
        case .paramSecond, .l1, .l2, .random, .fluctuation, .obs: return false
        }
    }

    /// Whether the criterion reads calibration activations (a forward pass, no gradient): statistics for
    /// `fluctuation`, the inputs' Grams for `obs`.
    public var needsActivations: Bool { self == .fluctuation || self == .obs }

    /// Whether the Fisher diagonal F (per-sample gradient passes) enters the salience.
    public var needsFisher: Bool {
        switch self {
        case .element2, .paramSecond: return true
        case .element1, .vector, .l1, .l2, .random, .fluctuation, .obs: return false
        }
    }
}

/// How the per-channel vectors of a group's members are combined into one vector (reference `_reduce`,
/// hf_prune.py's `--grouping_strategy`). `first` keeps only the root's vector: `k_proj` rows for attention
/// (the GQA root of `llama3.py`), `q_proj` rows for the query-head unit, `gate_proj` rows for the MLP.
/// The reference scores taylor criteria with `sum` and the l1/l2 baselines with `mean` by default.
public enum GroupReduction: String, Codable, CaseIterable, Sendable {
    case sum, mean, max, prod, first
}
