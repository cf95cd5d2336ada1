// Errors of planning and applying a pruning (writing the model throws ModelExport's ExportError): one line each,
// naming the flag or file at fault. Only the CLI prints and exits; the library throws these.
import Foundation
import Support

/// A prune setting, as `PruneError.setting` names it; the command line maps each to its flag.
public enum PruneSetting: String, CaseIterable, Sendable {
    case ratio, layers, criterion, reduction, attentionUnit, allocation, globalNormalization, targetParams, roundTo, seed
    case iterativeSteps, attentionLayers, mlpLayers, ratioSchedule
    /// The pruning strategy and, for depth pruning, how blocks are ranked (Strategy.swift).
    case strategy, blockImportance
    /// The calibration text, its number of samples and their length in tokens.
    case calibration, calibrationSamples, calibrationLength
    /// The reconstruction's ridge, sample count and sample length (Reconstruction.swift).
    case ridge, reconSamples, reconLength, biasCompensation, iterativeRefit
}

public enum PruneError: Error, CustomStringConvertible, Equatable {
    /// A prune setting out of range or inconsistent with the model; `reason` says how.
    case setting(PruneSetting, reason: String)
    /// The calibration text has fewer tokens than one sample.
    case calibrationTooShort(path: String, tokens: Int, sampleLength: Int)
    /// The calibration text cannot hold `samples` non-overlapping windows.
    case calibrationTooFewWindows(path: String, tokens: Int, samples: Int, sampleLength: Int)
    /// A plan made for a different model (what differs is in `reason`).
    case planForAnotherModel(plan: String, reason: String)
    /// A plan file that cannot be read, or whose content is inconsistent.
    case invalidPlan(path: String, reason: String)
    /// Another option out of range (`flag` names it, e.g. `--dtype`).
    case invalidSetting(flag: String, reason: String)
    /// Scores that do not fit the model (count, layer, or non-finite values).
    case invalidScores(String)
    /// A file-system failure reading the model or writing the plan.
    case io(path: String, reason: String)

    /// One line (control characters from untrusted names escaped, length capped), starting with the file.
    public var description: String { oneLineMessage(rawDescription) }

    private var rawDescription: String {
        switch self {
        case .setting(let s, let r):
            return "prune setting \(s.rawValue): \(r)"
        case .calibrationTooShort(let p, let t, let l):
            return "\(p): calibration file shorter than one sample (\(t) tokens, a sample needs \(l))"
        case .calibrationTooFewWindows(let p, let t, let n, let l):
            return "\(p): calibration file too short for \(n) non-overlapping samples of \(l) tokens (\(t) tokens hold at most \(t / max(l, 1)))"
        case .planForAnotherModel(let plan, let reason):
            return "\(plan): plan was made for another model: \(reason)"
        case .invalidPlan(let p, let r):
            return "\(p): invalid prune plan: \(r)"
        case .invalidSetting(let flag, let r):
            return "\(flag): \(r)"
        case .invalidScores(let r):
            return "invalid importance scores: \(r)"
        case .io(let p, let r):
            return "\(p): \(r)"
        }
    }
}
