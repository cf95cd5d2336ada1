// Errors of chat templates: one line, naming the template line and the construct at fault.
import Support

public enum TemplateError: Error, CustomStringConvertible, Equatable {
    /// The template cannot be read (syntax), at a line.
    case syntax(line: Int, String)
    /// A construct of Jinja this interpreter does not implement (named as written), at a line.
    case unsupported(line: Int, String)
    /// Evaluation failed (a type error, an undefined value used as an object), at a line.
    case render(line: Int, String)
    /// The template called raise_exception(message).
    case raised(line: Int, String)

    public var description: String {
        switch self {
        case .syntax(let l, let m): return oneLineMessage("chat template line \(l): \(m)")
        case .unsupported(let l, let m): return oneLineMessage("chat template line \(l): unsupported construct \(m)")
        case .render(let l, let m): return oneLineMessage("chat template line \(l): \(m)")
        case .raised(let l, let m): return oneLineMessage("chat template line \(l): raise_exception: \(m)")
        }
    }
}
