// Errors of planning and applying a pruning (writing the model throws ModelExport's ExportError): one line each,
// naming the flag or file at fault. Only the CLI prints and exits; the library throws these.
import Foundation
import Support

public enum PruneError: Error, CustomStringConvertible, Equatable {
    /// `--ratio` outside [0, 1).
    case ratioOutOfRange(Double)
    /// `--layers start:end` empty, inverted or beyond the model (end exclusive).
    case invalidLayerRange(start: Int, end: Int, numLayers: Int)
    /// The calibration text has fewer tokens than one sample.
    case calibrationTooShort(path: String, tokens: Int, sampleLength: Int)
    /// The calibration text cannot hold `samples` non-overlapping windows.
    case calibrationTooFewWindows(path: String, tokens: Int, samples: Int, sampleLength: Int)
    /// `--criterion` not among the known ones.
    case unknownCriterion(String, valid: [String])
    /// A plan made for a different model (what differs is in `reason`).
    case planForAnotherModel(plan: String, reason: String)
    /// The output directory exists and `--force` was not given.
    case outputExists(path: String)
    /// A plan file that cannot be read, or whose content is inconsistent.
    case invalidPlan(path: String, reason: String)
    /// Another setting out of range (`flag` names it, e.g. `--target-params`).
    case invalidSetting(flag: String, reason: String)
    /// Scores that do not fit the model (count, layer, or non-finite values).
    case invalidScores(String)
    /// A file-system failure while writing output.
    case io(path: String, reason: String)

    /// One line (control characters from untrusted names escaped, length capped), starting with the file.
    public var description: String { oneLineMessage(rawDescription) }

    private var rawDescription: String {
        switch self {
        case .ratioOutOfRange(let r):
            return "--ratio \(r) is outside [0, 1): it is the fraction of heads and MLP channels removed per pruned layer"
        case .invalidLayerRange(let s, let e, let n):
            return "--layers \(s):\(e) is an empty or inverted layer range (need 0 ≤ start < end ≤ \(n); end is exclusive)"
        case .calibrationTooShort(let p, let t, let l):
            return "\(p): calibration file shorter than one sample (\(t) tokens, a sample needs \(l))"
        case .calibrationTooFewWindows(let p, let t, let n, let l):
            return "\(p): calibration file too short for \(n) non-overlapping samples of \(l) tokens (\(t) tokens hold at most \(t / max(l, 1)))"
        case .unknownCriterion(let c, let valid):
            return "--criterion \"\(c)\" is unknown; valid criteria: \(valid.joined(separator: ", "))"
        case .planForAnotherModel(let plan, let reason):
            return "\(plan): plan was made for another model: \(reason)"
        case .outputExists(let p):
            return "\(p): output directory exists; pass --force to replace it"
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
