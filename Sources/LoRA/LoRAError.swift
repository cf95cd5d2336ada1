// Errors of the LoRA module: each is one line naming the file (where there is one) and what is wrong.
public enum LoRAError: Error, CustomStringConvertible, Equatable {
    case invalidConfig(String)
    case malformedData(path: String, reason: String)
    case malformedAdapter(path: String, reason: String)
    case shapeMismatch(String)
    case invalidInput(String)

    public var description: String {
        switch self {
        case .invalidConfig(let r): return "LoRA config: \(r)"
        case .malformedData(let p, let r): return "\(p): \(r)"
        case .malformedAdapter(let p, let r): return "\(p): \(r)"
        case .shapeMismatch(let r): return "LoRA adapters do not fit the model: \(r)"
        case .invalidInput(let r): return "LoRA: \(r)"
        }
    }
}
