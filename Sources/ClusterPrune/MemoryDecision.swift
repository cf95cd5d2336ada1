// The memory decision of a prune job, taken before anything is loaded: what the planner is told about the job,
// and, under a per-rank budget, whether layers mode runs its layers in fp32 or stays in the file's dtype.
// `cluster prune` acts on it and `cluster memory` prints it, so both reach the same verdict from the same flags.
import LlamaModel
import Pruning

extension MemoryPlanInputs {
    /// The planner's view of a prune job with these settings and `samples` calibration samples of `length` tokens.
    public init(config: LlamaConfig, shard: ShardMode, ranks: Int, lowMemory: Bool, fileBytesPerParameter: Double,
                settings: PruneSettings, samples: Int, length: Int, microBatches: Int, activationCache: Int?) {
        self.init(config: config, shard: shard, ranks: ranks, lowMemory: lowMemory,
                  fileBytesPerParameter: fileBytesPerParameter, samples: samples, sampleLength: length,
                  scored: settings.layerRange, needsGradient: settings.criterion.needsGradient,
                  needsFisher: settings.criterion.needsFisher, microBatches: microBatches, ratio: settings.ratio)
        self.activationCache = activationCache
    }
}

extension MemoryPlanner {
    /// The job's memory plan. Without a budget, the plan as asked. With one, layers mode switches to low memory
    /// (`inputs.lowMemory` becomes true) when the fp32 layers would exceed it, since mapped bf16 layers widened one
    /// at a time are the only thing that changes without a new launch; a job that still cannot fit throws
    /// `MemoryBudgetError` naming what would. Samples mode never switches: every rank holds the whole model in fp32.
    public static func decide(_ inputs: inout MemoryPlanInputs, budget: Int?) throws -> MemoryPlan {
        guard let budget else { return try plan(inputs) }
        inputs.budget = budget
        if inputs.shard == .layers, !inputs.lowMemory, try plan(inputs).largest > budget {
            inputs.lowMemory = true
        }
        return try check(inputs, budget: budget)
    }
}
