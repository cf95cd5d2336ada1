// Errors of writing a model directory: one line each, naming the file at fault. Only the CLI prints and exits;
// the library throws these.
import Foundation
import Support

public enum ExportError: Error, CustomStringConvertible, Equatable {
    /// The output directory exists and `--force` was not given.
    case outputExists(path: String)
    /// A file-system failure while writing output.
    case io(path: String, reason: String)
    /// Shards of a sharded export that do not fit together (a tensor in two shards, a bad shard number).
    case invalidShards(String)
    /// A setting out of range (`flag` names it, e.g. `--dtype`).
    case invalidSetting(flag: String, reason: String)

    /// One line (control characters from untrusted names escaped, length capped), starting with the file.
    public var description: String { oneLineMessage(rawDescription) }

    private var rawDescription: String {
        switch self {
        case .outputExists(let p):
            return "\(p): output directory exists; pass --force to replace it"
        case .io(let p, let r):
            return "\(p): \(r)"
        case .invalidShards(let r):
            return "sharded export: \(r)"
        case .invalidSetting(let flag, let r):
            return "\(flag): \(r)"
        }
    }
}
