// The importance pass end to end: calibration batch → one gradient pass over the scored layers (with the
// Fisher diagonal when the criterion needs it) → unit scores → allocation → a plan. Nothing is cut here.
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
    /// Scores the layers of `settings.layerRange` on `calibration` and allocates the cut.
    public static func plan(model: LoadedModel, settings: PruneSettings, calibration: CalibrationSet?) throws
        -> (PrunePlan, PlanTimings)
    {
        let config = model.config
        let settings = try settings.validated(numLayers: config.numLayers)
        let criterion = settings.criterion, reduction = settings.reduction
        var timings = PlanTimings()
        var gradients: GradientResult? = nil
        if criterion.needsGradient || criterion.needsFisher {
            guard let calibration else {
                throw PruneError.setting(.calibration, reason: "criterion \(criterion.rawValue) needs calibration data")
            }
            let t0 = Date()
            let n = calibration.samples.count, len = calibration.provenance.sampleLength
            gradients = try GradientPass(weights: model.weights).gradients(
                tokens: calibration.batchTokens, batch: n, seqLen: len, layers: settings.layerRange,
                fisher: criterion.needsFisher)
            timings.gradientSeconds = Date().timeIntervalSince(t0)
            timings.peakActivationBytes = gradients!.peakActivationBytes
            timings.loss = gradients!.loss
        }
        var t0 = Date()
        let scores = try Importance.scores(layers: Array(settings.layerRange), model: model.weights, gradients: gradients,
                                           criterion: criterion, reduction: reduction,
                                           attentionUnit: settings.attentionUnit, seed: settings.seed)
        timings.scoringSeconds = Date().timeIntervalSince(t0)
        t0 = Date()
        let identity = try ModelIdentity(path: model.path, format: model.format, config: config)
        let plan = try PrunePlan.make(settings: settings, config: config, model: identity,
                                      calibration: calibration?.provenance,
                                      scores: scores)
        timings.allocationSeconds = Date().timeIntervalSince(t0)
        return (plan, timings)
    }
}
