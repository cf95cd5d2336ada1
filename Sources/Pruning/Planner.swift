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

/// Computes calibration gradients: (tokens [batch × seqLen], batch, seqLen, scored layers, with Fisher?).
/// The default runs one local `GradientPass`; the cluster substitutes a sample-sharded MPI reduction.
public typealias GradientProvider = (_ tokens: [Int32], _ batch: Int, _ seqLen: Int, _ layers: Range<Int>,
                                     _ fisher: Bool) throws -> GradientResult

public enum Planner {
    /// Parses criterion and reduction names with one-line errors listing the valid values.
    public static func parse(criterion: String, reduction: String) throws -> (Criterion, GroupReduction) {
        guard let c = Criterion(rawValue: criterion) else {
            throw PruneError.unknownCriterion(criterion, valid: Criterion.allCases.map(\.rawValue))
        }
        guard let r = GroupReduction(rawValue: reduction) else {
            throw PruneError.invalidSetting(flag: "--reduction", reason: "unknown reduction \"\(reduction)\" (use "
                + GroupReduction.allCases.map(\.rawValue).joined(separator: ", ") + ")")
        }
        return (c, r)
    }

    /// Scores the layers of `settings.layerRange` on `calibration` and allocates the cut.
    public static func plan(model: LoadedModel, settings: PruneSettings, calibration: CalibrationSet?,
                            gradientProvider: GradientProvider? = nil) throws -> (PrunePlan, PlanTimings)
    {
        let config = model.config
        try settings.validate(numLayers: config.numLayers, validCriteria: Criterion.allCases.map(\.rawValue))
        let (criterion, reduction) = try parse(criterion: settings.criterion, reduction: settings.reduction)
        var timings = PlanTimings()
        var gradients: GradientResult? = nil
        if criterion.needsGradient || criterion.needsFisher {
            guard let calibration else {
                throw PruneError.invalidSetting(flag: "--calib", reason: "criterion \(criterion.rawValue) needs calibration data")
            }
            let t0 = Date()
            let n = calibration.samples.count, len = calibration.provenance.sampleLength
            let provider = gradientProvider ?? { tokens, batch, seqLen, layers, fisher in
                try GradientPass(weights: model.weights).gradients(tokens: tokens, batch: batch, seqLen: seqLen,
                                                                   layers: layers, fisher: fisher)
            }
            gradients = try provider(calibration.batchTokens, n, len, settings.layerRange, criterion.needsFisher)
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
