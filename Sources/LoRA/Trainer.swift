// One optimizer step of LoRA recovery, as the reference's HF Trainer takes it: the examples of a step go
// through in micro-batches whose gradients accumulate; the loss is normalised by the number of scored
// predictions of the whole step (transformers ≥ 4.46 `num_items_in_batch`); then clipping, AdamW with the
// scheduled learning rate, and zeroed gradients. `accumulate` and `applyUpdate` are separate so a
// data-parallel caller can sum the flat gradients across ranks in between.
import Foundation
import LlamaModel

public struct TrainingOptions: Sendable, Equatable {
    public var learningRate: Double = 1e-4      // LLM-Pruner README/script
    public var warmupSteps: Int = 100
    public var weightDecay: Double = 0          // HF TrainingArguments default
    public var maxGradNorm: Double = 1.0        // HF TrainingArguments default
    public var batchSize: Int = 64              // examples per optimizer step
    public var microBatchSize: Int = 4
    public var seed: UInt64 = 42
    public init() {}

    public var accumulationSteps: Int { max(1, batchSize / max(microBatchSize, 1)) }

    public func validate() throws {
        guard learningRate >= 0, learningRate.isFinite else { throw LoRAError.invalidConfig("learning rate must be ≥ 0") }
        guard warmupSteps >= 0 else { throw LoRAError.invalidConfig("warm-up steps must be ≥ 0") }
        guard weightDecay >= 0 else { throw LoRAError.invalidConfig("weight decay must be ≥ 0") }
        guard maxGradNorm > 0 else { throw LoRAError.invalidConfig("max gradient norm must be positive") }
        guard microBatchSize > 0, batchSize >= microBatchSize else {
            throw LoRAError.invalidConfig("need 0 < micro-batch (\(microBatchSize)) ≤ batch (\(batchSize))")
        }
    }
}

public struct StepReport: Sendable {
    public var step: Int                 // 1-based count of optimizer steps taken
    public var loss: LossSum
    public var tokens: Int               // tokens run forward (padding included)
    public var gradNorm: Double          // before clipping
    public var learningRate: Double
    public var seconds: Double
}

public final class LoRATrainer {
    public let pass: LoRAPass
    public let options: TrainingOptions
    public var optimizer: AdamW
    public var schedule: LinearWarmupSchedule
    /// Padding id for right-padded micro-batches (any valid id: padded positions are never attended to or scored).
    public var padId: Int32 = 0
    /// With a teacher every micro-batch's loss is the KD mix of Distillation.swift (nil: cross-entropy only).
    public var teacher: Teacher?
    public private(set) var step = 0

    public init(pass: LoRAPass, options: TrainingOptions, totalSteps: Int) throws {
        try options.validate()
        self.pass = pass
        self.options = options
        optimizer = AdamW(parameterCount: pass.adapters.parameterCount, weightDecay: options.weightDecay)
        schedule = LinearWarmupSchedule(peak: options.learningRate, warmupSteps: options.warmupSteps, totalSteps: totalSteps)
    }

    /// Micro-batches of `options.microBatchSize` examples, in order.
    public func microBatches(_ examples: [TokenizedExample]) throws -> [TokenBatch] {
        try TokenBatch.microBatches(examples, size: options.microBatchSize, padId: padId)
    }

    /// The key of the dropout masks of micro-batch `i` (step-wide index) of optimizer step `step`: a mask depends
    /// on seed, step, micro-batch (and layer and target), never on which rank or stage draws it.
    public static func dropoutSeed(_ seed: UInt64, step: Int, microBatch i: Int) -> UInt64 {
        DropoutMask.mix(DropoutMask.mix(seed, UInt64(step)), UInt64(i))
    }

    /// Adds the gradient of (Σ NLL over `examples`) / lossDivisor to the flat gradients; the divisor defaults to
    /// the examples' own scored predictions. Returns the NLL sum and the tokens run. `firstMicroBatch` is the
    /// step-wide index of the first micro-batch: a data-parallel rank that runs micro-batches k… of a step draws
    /// the dropout masks one process would draw for them (a mask depends on seed, step and micro-batch only).
    public func accumulate(_ examples: [TokenizedExample], lossDivisor: Double? = nil, firstMicroBatch: Int = 0) throws
        -> (loss: LossSum, tokens: Int)
    {
        let batches = try microBatches(examples)
        let divisor = lossDivisor ?? Double(examples.reduce(0) { $0 + $1.predictionCount })
        var total = LossSum(nll: 0, predictions: 0), tokens = 0
        guard divisor > 0 else { return (total, 0) }     // nothing scored: no gradient (as a 0/0-free no-op)
        for (j, b) in batches.enumerated() {
            let i = firstMicroBatch + j
            let seed = Self.dropoutSeed(options.seed, step: step, microBatch: i)
            total = total + (try pass.accumulateGradients(b, lossDivisor: divisor, dropoutSeed: seed, teacher: teacher))
            tokens += b.batch * b.seqLen
        }
        return (total, tokens)
    }

    /// Clips the accumulated gradients, takes one AdamW step at the scheduled learning rate and zeroes them.
    @discardableResult
    public func applyUpdate() -> (gradNorm: Double, learningRate: Double) {
        let lr = schedule.learningRate(step: step)
        let norm = pass.withFlatGradients { g -> Double in
            let norm = GradientClipping.clipGlobalNorm(g, maxNorm: options.maxGradNorm)
            optimizer.update(&pass.adapters.parameters, gradients: UnsafeBufferPointer(g), lr: lr)
            return norm
        }
        pass.zeroGradients()
        step += 1
        return (norm, lr)
    }

    /// Continues from a checkpoint: `step` optimizer steps taken, with these adapter values and AdamW moments.
    public func restore(step: Int, parameters: [Float], optimizerStep: Int, m: [Float], v: [Float]) {
        precondition(parameters.count == pass.adapters.parameters.count)
        self.step = step
        pass.adapters.parameters = parameters
        optimizer.restore(step: optimizerStep, m: m, v: v)
        pass.zeroGradients()
    }

    /// accumulate + applyUpdate over the examples of one optimizer step.
    public func trainStep(_ examples: [TokenizedExample]) throws -> StepReport {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let (loss, tokens) = try accumulate(examples)
        let (norm, lr) = applyUpdate()
        return StepReport(step: step, loss: loss, tokens: tokens, gradNorm: norm, learningRate: lr,
                          seconds: Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
    }

    /// Loss over `examples` without dropout or gradients.
    public func evaluate(_ examples: [TokenizedExample]) throws -> LossSum {
        try microBatches(examples).reduce(LossSum(nll: 0, predictions: 0)) { $0 + (try pass.evaluate($1)) }
    }
}

/// Which examples each optimizer step sees: per epoch a seeded permutation, cut into micro-batches, grouped
/// `accumulationSteps` to a step (the last step of an epoch may be short), as HF Trainer groups its dataloader.
public enum TrainingPlan {
    public static func stepsPerEpoch(examples n: Int, options o: TrainingOptions) -> Int {
        let micro = (n + o.microBatchSize - 1) / o.microBatchSize
        return (micro + o.accumulationSteps - 1) / o.accumulationSteps
    }

    /// Example indices of every step of `epoch`.
    public static func steps(examples n: Int, epoch: Int, options o: TrainingOptions) -> [[Int]] {
        var rng = NumpyRandom(seed: o.seed &+ UInt64(epoch))
        let order = rng.permutation(n)
        let per = o.microBatchSize * o.accumulationSteps
        return stride(from: 0, to: n, by: per).map { Array(order[$0..<min($0 + per, n)]) }
    }
}

extension TrainingPlan {
    /// Every optimizer step of a run: `epochs` epochs, or exactly `maxSteps` steps when given (running into
    /// further epochs if needed, as HF's max_steps does).
    public static func run(examples n: Int, epochs: Int, maxSteps: Int?, options o: TrainingOptions) -> [(epoch: Int, indices: [Int])] {
        guard n > 0 else { return [] }
        var out: [(epoch: Int, indices: [Int])] = []
        var epoch = 0
        while maxSteps.map({ out.count < $0 }) ?? (epoch < epochs) {
            out += steps(examples: n, epoch: epoch, options: o).map { (epoch, $0) }
            epoch += 1
        }
        if let maxSteps { out = Array(out.prefix(maxSteps)) }
        return out
    }

    /// Tokens the micro-batches of one step run forward (right padding included).
    public static func tokens(_ examples: [TokenizedExample], microBatchSize m: Int) -> Int {
        stride(from: 0, to: examples.count, by: m).reduce(0) { total, i in
            let mb = examples[i..<min(i + m, examples.count)]
            return total + mb.count * (mb.map(\.ids.count).max() ?? 0)
        }
    }
}
