// The one error type of the Tokenizer module: every bad input ends here, with a one-line description.
import Foundation

public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    /// A file could not be read.
    case io(path: String, reason: String)
    /// The tokenizer.json is not JSON, or is missing a field it must have, or a field has the wrong shape.
    case malformed(String)
    /// A component (model type, pre-tokenizer, decoder...) this module does not implement.
    case unsupported(String)
    /// A merge rule that is not two space-separated tokens, or names a token missing from the vocabulary.
    case badMerge(index: Int, reason: String)
    /// A regular expression of a Split pre-tokenizer that does not compile.
    case badRegex(pattern: String, reason: String)
    /// Inconsistent arguments (empty vocabulary, token type count mismatch, id out of range...).
    case invalidArgument(String)
    /// Any of the above, found in this file (tokenizer.json read from disk).
    indirect case inFile(path: String, TokenizerError)

    /// This error, naming the file it was found in.
    public func `in`(_ path: String) -> TokenizerError {
        if case .inFile = self { return self }
        if case .io = self { return self }
        return .inFile(path: path, self)
    }

    public var description: String {
        switch self {
        case .io(let path, let reason): return "tokenizer: cannot read \(path): \(reason)"
        case .malformed(let what): return "tokenizer.json malformed: \(what)"
        case .unsupported(let what): return "tokenizer: unsupported \(what)"
        case .badMerge(let index, let reason): return "tokenizer: bad merge #\(index): \(reason)"
        case .badRegex(let pattern, let reason): return "tokenizer: bad split regex \(pattern.debugDescription): \(reason)"
        case .invalidArgument(let what): return "tokenizer: \(what)"
        case .inFile(let path, let e): return "\(path): \(e.description)"
        }
    }
}
