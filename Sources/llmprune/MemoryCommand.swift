import ClusterPrune
import Foundation
import LlamaModel
import ModelExport

/// `llmprune cluster memory`: the memory planner on its own, for a checkpoint (headers only) or a published shape
/// (no file at all): each rank's predicted peak, by component, and whether a budget fits.
enum MemoryCommand {
    static let shape = Flag<SyntheticShape>("shape", "NAME", help: "a published shape instead of --model (the shapes of synth)", parse: Parse.choice(SyntheticShape.self))
    static let dtype = Flag<String>("dtype", "D", default: "bf16", help: "with --shape: the checkpoint's dtype, bf16|f16|f32",
                                    parse: { s in
                                        guard ["bf16", "f16", "f32"].contains(s.lowercased()) else { throw FlagValueError("\"\(s)\" is not bf16, f16 or f32") }
                                        return s.lowercased()
                                    })
    static let ranks = Flag<Int>("ranks", "N", default: "1", help: "ranks of the job", parse: Parse.int(min: 1))

    /// The same pruning, calibration and job flags as `cluster prune`, so a plan printed here is the one it acts on.
    static let flags = CommandFlags(
        own: [CommonFlags.model.info, shape.info, dtype.info, ranks.info, CommonFlags.json.info],
        groups: [PruningFlags.group, CalibrationFlags.group, ReconstructionFlags.group, JobFlags.group])

    static func run(_ argv: [String]) throws {
        var a = try Arguments(argv, accepting: flags.all)
        let config: LlamaConfig, bytesPerParameter: Double, what: String
        if let shape = try a.optional(Self.shape) {
            let dtype = try a.value(Self.dtype)
            config = shape.config()
            bytesPerParameter = dtype == "f32" ? 4 : 2
            what = "\(shape.rawValue) (\(dtype))"
        } else {
            let path = try a.required("model")
            config = try ModelLoader.config(path: path)
            bytesPerParameter = try ModelLoader.layerBytesPerParameter(path: path)
            what = path
        }
        let ranks = try a.value(Self.ranks)
        let json = a.flag("json")
        let calib = try CalibrationFlags(&a)
        let settings = try PruningFlags.settings(&a, numLayers: config.numLayers, seed: calib.seed)
        try PruningFlags.refuseInCluster(settings)
        try calib.check(config)
        let recon = try ReconstructionFlags.settings(&a, config: config)
        _ = try ReconstructionFlags.windows(&a, calibration: calib, settings: recon)   // the windows' size is in `recon`
        let job = try JobFlags(&a)
        try a.finish()
        try CLI.printParsedFlagsIfAsked(settings, calib, job: job)
        let shard = job.shard, low = job.lowMemory, samples = calib.sampleCount, length = calib.sampleLength
        let budget = job.budget
        guard ranks <= config.numLayers else { throw UsageError("--ranks: \(ranks) ranks for \(config.numLayers) layers") }
        var inputs = MemoryPlanInputs(config: config, shard: shard, ranks: ranks, lowMemory: low,
                                      fileBytesPerParameter: bytesPerParameter, settings: settings, samples: samples,
                                      length: length, microBatches: job.microBatches, activationCache: job.activationCache)
        inputs.reconstruction = recon
        // As `cluster prune` decides: low memory when only that fits the budget; a refusal is printed after the table.
        var refusal: Error? = nil
        do { _ = try MemoryPlanner.decide(&inputs, budget: budget) } catch let e as MemoryBudgetError { refusal = e }
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
