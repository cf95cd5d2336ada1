// The importance pass end to end: calibration batch → one gradient pass over the scored layers (with the
// Fisher diagonal when the criterion needs it) or, for `fluctuation`, one forward pass collecting activation
// statistics → unit scores → allocation → a plan. Nothing is cut here. With `iterativeSteps` K > 1 the cut is
// made in K rounds, each re-scoring the partly pruned model (Iterative.swift).
import Foundation
import LlamaModel

public struct PlanTimings: Codable, Sendable {
    public var gradientSeconds = 0.0
    public var scoringSeconds = 0.0
    public var allocationSeconds = 0.0
    public var peakActivationBytes = 0
    public var loss: Double? = nil
}

public enum Planner {
    /// Scores the layers of `settings.layerRange` on `calibration` and allocates the cut. The calibration batch
    /// goes through the model in `microBatches` parts (sizes differing by at most one sample): gradients and
    /// Fisher diagonals are accumulated weighted by each part's share of the samples (the batch loss is the mean
    /// over samples), activation statistics summed, so activation memory is that of one part.
    /// `refit`: with iterative rounds, the reconstruction (and its windows) to run on the partly pruned model
    /// between rounds (ReconstructionSettings.eachRound).
    public static func plan(model: LoadedModel, settings: PruneSettings, calibration: CalibrationSet?,
                            microBatches: Int = 1, refit: (ReconstructionSettings, CalibrationSet)? = nil)
        throws -> (PrunePlan, PlanTimings)
    {
        let config = model.config
        let settings = try settings.validated(config: config)
        if settings.resolvedStrategy != .block {
            return try StrategyPlanner.plan(model: model, settings: settings, calibration: calibration)
        }
        if let k = settings.iterativeSteps, k > 1 {
            return try iterativePlan(model: model, settings: settings, calibration: calibration, steps: k,
                                     microBatches: microBatches, refit: refit)
        }
        var timings = PlanTimings()
        let scores = try layerScores(weights: model.weights, settings: settings, calibration: calibration,
                                     microBatches: microBatches, timings: &timings)
        let t0 = Date()
        let identity = try ModelIdentity(path: model.path, format: model.format, config: config)
        let plan = try PrunePlan.make(settings: settings, config: config, model: identity,
                                      calibration: calibration?.provenance,
                                      scores: scores)
        timings.allocationSeconds = Date().timeIntervalSince(t0)
        return (plan, timings)
    }

    /// Unit scores of `settings.layerRange` in `weights` (the original model or a partly pruned one); adds the
    /// pass's seconds, peak activation bytes and loss to `timings`.
    static func layerScores(weights: LlamaWeights, settings: PruneSettings, calibration: CalibrationSet?,
                            microBatches: Int, timings: inout PlanTimings) throws -> [LayerScores] {
        let criterion = settings.criterion
        var gradients: GradientResult? = nil
        var activations: [Int: LayerActivations]? = nil
        if criterion.needsGradient || criterion.needsFisher || criterion.needsActivations {
            guard let calibration else {
                throw PruneError.setting(.calibration, reason: "criterion \(criterion.rawValue) needs calibration data")
            }
            guard microBatches >= 1 else {
                throw PruneError.setting(.calibrationSamples, reason: "\(microBatches) micro-batches (need at least 1)")
            }
            let t0 = Date()
            let n = calibration.samples.count, len = calibration.provenance.sampleLength
            if criterion == .obs {
                let scores = try OBSCriterion.scores(weights: weights, layers: Array(settings.layerRange),
                                                     tokens: calibration.batchTokens, batch: n, seqLen: len,
                                                     attentionUnit: settings.attentionUnit)
                timings.scoringSeconds += Date().timeIntervalSince(t0)
                return scores
            }
            if criterion.needsActivations {
                let per = (n + microBatches - 1) / microBatches
                activations = try LlamaRunner(weights: weights).activationStatistics(
                    tokens: calibration.batchTokens, batch: n, seqLen: len, layers: Array(settings.layerRange),
                    microBatch: per)
            } else {
                let g = try accumulatedGradients(weights: weights, tokens: calibration.batchTokens, batch: n, seqLen: len,
                                                 layers: settings.layerRange, fisher: criterion.needsFisher,
                                                 parts: min(microBatches, n))
                timings.peakActivationBytes = max(timings.peakActivationBytes, g.peakActivationBytes)
                timings.loss = timings.loss ?? g.loss
                gradients = g
            }
            timings.gradientSeconds += Date().timeIntervalSince(t0)
        }
        let t0 = Date()
        let scores = try Importance.scores(layers: Array(settings.layerRange), model: weights, gradients: gradients,
                                           criterion: criterion, reduction: settings.reduction,
                                           attentionUnit: settings.attentionUnit, seed: settings.seed,
                                           activations: activations)
        timings.scoringSeconds += Date().timeIntervalSince(t0)
        return scores
    }

    /// The gradient (and Fisher diagonal) of the batch-mean loss over [batch × seqLen] tokens, computed in
    /// `parts` micro-batches: part p of b_p samples contributes (b_p / batch) of its own batch-mean gradient and
    /// Fisher diagonal (both are means over samples). One part is the plain pass, unscaled.
    static func accumulatedGradients(weights: LlamaWeights, tokens: [Int32], batch: Int, seqLen: Int, layers: Range<Int>,
                                     fisher: Bool, parts: Int) throws -> GradientResult {
        let pass = GradientPass(weights: weights)
        if parts <= 1 {
            return try pass.gradients(tokens: tokens, batch: batch, seqLen: seqLen, layers: layers, fisher: fisher)
        }
        var total: GradientResult? = nil
        var first = 0
        for p in 0..<parts {
            let b = batch / parts + (p < batch % parts ? 1 : 0)
            let r = try pass.gradients(tokens: Array(tokens[(first * seqLen)..<((first + b) * seqLen)]), batch: b,
                                       seqLen: seqLen, layers: layers, fisher: fisher)
            let w = Float(b) / Float(batch)
            if var t = total {
                t.loss += Double(w) * r.loss
                for (l, g) in r.gradients { t.gradients[l]!.add(g, scaledBy: w) }
                if let f = r.fisher { for (l, g) in f { t.fisher![l]!.add(g, scaledBy: w) } }
                t.peakActivationBytes = max(t.peakActivationBytes, r.peakActivationBytes)
                total = t
            } else {
                var t = r
                t.loss *= Double(w)
                for l in t.gradients.keys { t.gradients[l]!.scale(by: w) }
                if t.fisher != nil { for l in t.fisher!.keys { t.fisher![l]!.scale(by: w) } }
                total = t
            }
            first += b
        }
        return total!
    }
}

extension LayerGradients {
    /// self *= a, every array.
    mutating func scale(by a: Float) {
        for k in Self.arrays { self[keyPath: k] = self[keyPath: k].map { $0 * a } }
    }

    /// self += a·x, every array (same shapes).
    mutating func add(_ x: LayerGradients, scaledBy a: Float) {
        for k in Self.arrays {
            let xs = x[keyPath: k]
            self[keyPath: k].withUnsafeMutableBufferPointer { y in
                for i in y.indices { y[i] += a * xs[i] }
            }
        }
    }

    static var arrays: [WritableKeyPath<LayerGradients, [Float]>] {
        [\.wqkv, \.wo, \.wGateUp, \.wDown, \.bqkv, \.bo, \.bGateUp, \.bDown]
    }
}
