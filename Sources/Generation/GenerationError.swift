// Errors of generation: one line each, naming the setting or file at fault.
import Support

public enum GenerationError: Error, CustomStringConvertible, Equatable {
    /// A sampling or length setting out of range: the setting's name (as the CLI flag is named) and why.
    case setting(String, String)
    /// The prompt does not fit the model's context.
    case promptTooLong(tokens: Int, context: Int)
    case emptyPrompt
    /// A model file generation reads (config.json, generation_config.json, tokenizer_config.json) is malformed.
    case malformedFile(path: String, reason: String)

    public var description: String {
        switch self {
        case .setting(let name, let reason): return oneLineMessage("--\(name): \(reason)")
        case .promptTooLong(let n, let c): return "the prompt is \(n) tokens, longer than the model's context of \(c) tokens"
        case .emptyPrompt: return "the prompt is empty (no tokens to start from)"
        case .malformedFile(let p, let r): return oneLineMessage("\(p): \(r)")
        }
    }
}
