import ClusterPrune
import Foundation
import LlamaModel
import ModelExport

/// `llmprune cluster memory`: the memory planner on its own, for a checkpoint (headers only) or a published shape
/// (no file at all): each rank's predicted peak, by component, and whether a budget fits.
enum MemoryCommand {
    static func run(_ argv: [String]) throws {
        var a = try Arguments(argv, booleans: ["json", "low-memory"])
        let config: LlamaConfig, bytesPerParameter: Double, what: String
        if let shapeText = a.string("shape") {
            guard let shape = SyntheticShape(rawValue: shapeText) else {
                throw UsageError("--shape: \"\(shapeText)\" is not one of " + SyntheticShape.allCases.map(\.rawValue).joined(separator: ", "))
            }
            let dtype = (a.string("dtype") ?? "bf16").lowercased()
            guard let b = ["bf16": 2.0, "f16": 2.0, "f32": 4.0][dtype] else { throw UsageError("--dtype: \"\(dtype)\" is not bf16, f16 or f32") }
            config = shape.config()
            bytesPerParameter = b
            what = "\(shapeText) (\(dtype))"
        } else {
            let path = try a.required("model")
            config = try ModelLoader.config(path: path)
            bytesPerParameter = try ModelLoader.layerBytesPerParameter(path: path)
            what = path
        }
        let ranks = try a.int("ranks", default: 1, min: 1)!
        let shardText = a.string("shard") ?? "layers"
        guard let shard = ShardMode(rawValue: shardText) else { throw UsageError("--shard: \"\(shardText)\" is not samples or layers") }
        let low = a.flag("low-memory"), json = a.flag("json")
        let settings = try PruneCommand.settings(&a, numLayers: config.numLayers)
        let samples = try a.int("calib-samples", default: 10, min: 1)!, length = try a.int("calib-len", default: 64, min: 2)!
        let micro = try a.int("micro-batches", default: 1, min: 1)!
        let cache = try ClusterCommand.activationCache(&a)
        let budget = try ClusterCommand.memoryBudget(&a)
        try a.finish()
        guard ranks <= config.numLayers else { throw UsageError("--ranks: \(ranks) ranks for \(config.numLayers) layers") }
        var inputs = try ClusterCommand.memoryInputs(config: config, shard: shard, ranks: ranks, lowMemory: low,
                                                     fileBytesPerParameter: bytesPerParameter, settings: settings,
                                                     samples: samples, length: length, microBatches: micro,
                                                     activationCache: cache)
        // As `cluster prune` decides: low memory when only that fits the budget; a refusal is printed after the table.
        var refusal: Error? = nil
        do { _ = try ClusterCommand.planMemory(&inputs, budget: budget) } catch let e as MemoryBudgetError { refusal = e }
        let plan = try MemoryPlanner.plan(inputs)
        if json { try CLI.printJSON(plan) } else {
            print("\(what): \(config.parameterCount) parameters, \(ranks) rank(s), --shard \(shard.rawValue)"
                  + (plan.lowMemory ? ", low memory" : "") + ", calibration \(samples) × \(length)")
            print("rank  layers      mapped GB  fp32 held GB  layer GB  gradient GB  activations GB  cached layers  peak GB  phase")
            for r in plan.ranks {
                print(String(format: "%4d  %3d..<%-4d %10.2f %13.2f %9.2f %12.2f %15.2f %7d %6.2f %8.2f  %@", r.rank,
                             r.layerStart, r.layerEnd, Double(r.mappedBytes) / 1e9, Double(r.weightBytes) / 1e9,
                             Double(r.layerBytes) / 1e9, Double(r.gradientBytes) / 1e9, Double(r.activationBytes) / 1e9,
                             r.cachedLayers, Double(r.cacheBytes) / 1e9, Double(r.peakBytes) / 1e9, r.peakPhase))
            }
        }
        if let refusal { throw refusal }                            // exit 2, one line
        if let budget, !json {
            print("fits --mem-per-rank \(MemoryPlanner.formatGiB(budget)): largest rank \(MemoryPlanner.formatGiB(plan.largest))"
                  + (plan.lowMemory && !low ? " (with --low-memory)" : ""))
        }
    }
}
