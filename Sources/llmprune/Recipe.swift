// `prune --recipe NAME` (and `cluster prune`): a named combination of pruning, calibration and reconstruction
// flags, so the combination measured best (docs/pruning.md, "Recipes"; scripts/bench/quality.sh) is one flag. The
// recipe only supplies defaults: a flag also given on the command line keeps its given value.
import Foundation
import LlamaModel
import Pruning

enum Recipe: String, CaseIterable, Sendable {
    /// LLM-Pruner's own recipe: the defaults (local element1 Taylor scores, no reconstruction).
    case llmPruner = "llm-pruner"
    /// The best combination measured on SmolLM2 at the r = 0.25 and r = 0.5 counts (docs/pruning.md, "Recipes").
    case best

    /// The flags the recipe stands for, in command-line form (nil value: a switch).
    var flags: [(name: String, value: String?)] {
        switch self {
        case .llmPruner: []
        case .best: Self.bestFlags
        }
    }

    /// Measured on SmolLM2-135M at the r = 0.25 and r = 0.5 counts (docs/pruning.md, "Recipes"): structured OBS
    /// selection on 128 × 128 calibration tokens, then the least-squares refit with ridge 0.3, at LLM-Pruner's
    /// parameter count over layers 6:L-4 (`innerLayerBudget`). The best combination at both counts; iterative
    /// Taylor rounds with the refit came level at r = 0.25 for seed 42 only and far behind at r = 0.5.
    static let bestFlags: [(name: String, value: String?)] = [
        ("criterion", "obs"), ("calib-samples", "128"), ("calib-len", "128"), ("reconstruct", "lstsq"), ("ridge", "0.3"),
    ]

    /// Flags that choose where or how much is cut; given any of them, `--recipe best` keeps LLM-Pruner's layers and
    /// the ratio as they say (`innerLayerBudget` does nothing).
    static let placementFlags = ["layers", "attention-layers", "mlp-layers", "target-params", "allocation",
                                 "ratio-schedule", "strategy", "iterative-steps"]

    /// `--recipe best`'s placement: the parameter count LLM-Pruner's recipe reaches at `--ratio` over its layers
    /// (4:L-2, what `s` holds when no placement flag is given) becomes the target (`targetParams`), reached by
    /// one uniform ratio over layers 6:L-4 — two more layers kept whole at each end, the inner ones cut deeper.
    /// Measured on SmolLM2-135M (30 layers) at LLM-Pruner's r = 0.25 count, WikiText-2 first 128 windows
    /// (docs/pruning.md, "Recipes"): layers 2:30 86.74, 4:28 71.27, 5:27 69.84, 6:26 69.23 (seed 42); 4:28 71.22,
    /// 5:27 69.63, 6:26 68.60 (seed 7); 8:24 could not reach the count (a KV group per layer then goes: 115.8 M).
    /// Models of fewer than 12 layers keep `s`.
    static func innerLayerBudget(_ s: PruneSettings, config: LlamaConfig, argv: [String]) throws -> PruneSettings {
        let given = placementFlags.contains { f in argv.contains { $0 == "--\(f)" || $0.hasPrefix("--\(f)=") } }
        let n = config.numLayers
        guard !given, n >= 12, s.layerStart == 4, s.layerEnd == n - 2 else { return s }
        let kept = Allocator.localParameterCount(config: config, settings: s, ratio: s.ratio)
        var t = s
        t.layerStart = 6
        t.layerEnd = n - 4
        // Allocation floors targetParams·total: half a parameter above the count lands exactly on it.
        t.targetParams = (Double(kept) + 0.5) / Double(config.parameterCount)
        return try t.validated(config: config)
    }

    static let flag = Flag<Recipe>("recipe", "NAME",
        help: "llm-pruner (the defaults) | best: " + bestFlags.map { "--\($0.name)" + ($0.value.map { " \($0)" } ?? "") }
            .joined(separator: " ") + ",\nLLM-Pruner's parameter count at --ratio over layers 6:L-4 (flags given on the\ncommand line win)",
        parse: Parse.choice(Recipe.self))

    /// `argv` without `--recipe NAME`, and with the recipe's flags that `argv` does not give appended. Throws a
    /// usage error for an unknown recipe or a missing name.
    static func expand(_ argv: [String]) throws -> (argv: [String], recipe: Recipe?) {
        var rest: [String] = [], name: String? = nil
        var i = 0
        while i < argv.count {
            let a = argv[i]
            if a == "--\(flag.info.name)" {
                guard i + 1 < argv.count else { throw UsageError("--\(flag.info.name) needs a value") }
                name = argv[i + 1]
                i += 2
                continue
            }
            if a.hasPrefix("--\(flag.info.name)=") {
                name = String(a.dropFirst(flag.info.name.count + 3))
                i += 1
                continue
            }
            rest.append(a)
            i += 1
        }
        guard let name else { return (argv, nil) }
        let recipe: Recipe
        do { recipe = try flag.parse(name) } catch let e as FlagValueError { throw UsageError("--\(flag.info.name): \(e.reason)") }
        func given(_ f: String) -> Bool { rest.contains { $0 == "--\(f)" || $0.hasPrefix("--\(f)=") } }
        for (f, v) in recipe.flags where !given(f) {
            rest.append("--\(f)")
            if let v { rest.append(v) }
        }
        return (rest, recipe)
    }
}
