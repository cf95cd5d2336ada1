// The optimizer side of one pipeline stage: `LoRATrainer.applyUpdate` restricted to the stage's adapters.
// Equality with one process needs the global gradient norm for clipping (torch's clip_grad_norm_ is over all
// parameters): each stage computes Σ g² of its own adapters, the caller sums them across stages, and every stage
// clips with the same total. AdamW is element-wise, so the stage's moments are the one-process moments of its
// range; the learning-rate schedule and step counter are the same on every stage.
import Foundation

public final class LoRAStageTrainer {
    public let stagePass: LoRAStagePass
    public let options: TrainingOptions
    /// AdamW over the stage's parameters only (moments: 2 × 4 bytes per stage adapter parameter).
    public var optimizer: AdamW
    public let schedule: LinearWarmupSchedule
    public var padId: Int32 = 0
    public private(set) var step = 0

    public init(stagePass: LoRAStagePass, options: TrainingOptions, totalSteps: Int) throws {
        try options.validate()
        self.stagePass = stagePass
        self.options = options
        optimizer = AdamW(parameterCount: stagePass.parameterRange.count, weightDecay: options.weightDecay)
        schedule = LinearWarmupSchedule(peak: options.learningRate, warmupSteps: options.warmupSteps, totalSteps: totalSteps)
    }

    var range: Range<Int> { stagePass.parameterRange }
    var pass: LoRAPass { stagePass.pass }

    /// The key of the dropout masks of step-wide micro-batch `i` of the current step (as `LoRATrainer` draws it).
    public func dropoutSeed(microBatch i: Int) -> UInt64 {
        LoRATrainer.dropoutSeed(options.seed, step: step, microBatch: i)
    }

    /// In-place access to the stage's slice of the flat gradients (e.g. for an all-reduce over the stage's group).
    public func withStageGradients<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        try pass.withFlatGradients { try body(UnsafeMutableBufferPointer(rebasing: $0[range])) }
    }

    /// Σ g² over the stage's adapter gradients: its share of the global squared norm.
    public func squaredGradientNorm() -> Double {
        withStageGradients { GradientClipping.squaredNorm(UnsafeBufferPointer($0)) }
    }

    /// Clips with the global norm `totalNorm` (over every stage), takes one AdamW step on the stage's adapters and
    /// zeroes the gradients. Returns the learning rate used.
    @discardableResult
    public func applyUpdate(totalNorm: Double) -> Double {
        let lr = schedule.learningRate(step: step)
        var slice = Array(pass.adapters.parameters[range])
        withStageGradients { g in
            GradientClipping.clip(g, total: totalNorm, maxNorm: options.maxGradNorm)
            optimizer.update(&slice, gradients: UnsafeBufferPointer(g), lr: lr)
        }
        pass.adapters.parameters.replaceSubrange(range, with: slice)
        pass.zeroGradients()
        step += 1
        return lr
    }

    /// The stage's adapter values (its slice of the flat layout).
    public var stageParameters: [Float] { Array(pass.adapters.parameters[range]) }

    /// Continues from a checkpoint of this stage: `step` optimizer steps taken, the stage's adapter values and moments.
    public func restore(step: Int, parameters: [Float], optimizerStep: Int, m: [Float], v: [Float]) throws {
        guard parameters.count == range.count, m.count == range.count, v.count == range.count else {
            throw LoRAError.shapeMismatch("stage checkpoint has \(parameters.count) parameters, the stage has \(range.count)")
        }
        self.step = step
        pass.adapters.parameters.replaceSubrange(range, with: parameters)
        optimizer.restore(step: optimizerStep, m: m, v: v)
        pass.zeroGradients()
    }
}
