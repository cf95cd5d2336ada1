// Errors of model loading and running: one line each, naming the file or setting at fault.
import Support

public enum ModelError: Error, CustomStringConvertible {
    case invalidConfig(source: String, reason: String)
    case missingFile(path: String, what: String)
    case missingTensor(source: String, name: String)
    case shapeMismatch(source: String, name: String, expected: [Int], got: [Int])
    case invalidInput(String)

    /// One line (control characters from untrusted names escaped, length capped), starting with the file.
    public var description: String { oneLineMessage(rawDescription) }

    private var rawDescription: String {
        switch self {
        case .invalidConfig(let s, let r): return "\(s): invalid model config: \(r)"
        case .missingFile(let p, let w): return "\(p): missing \(w)"
        case .missingTensor(let s, let n): return "\(s): missing tensor \(n)"
        case .shapeMismatch(let s, let n, let e, let g): return "\(s): tensor \(n) has shape \(g), expected \(e)"
        case .invalidInput(let m): return m
        }
    }
}
