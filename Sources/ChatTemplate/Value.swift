// The values a chat template computes with, as Python and Jinja2 see them: what is true, how a value prints
// (`{{ x }}` gives Python's str(), a list inside it Python's repr()), equality and order, and json.dumps (the
// `tojson` filter transformers installs: ensure_ascii=False, Python's separators and indentation).
import Foundation
import Support

/// A mapping that keeps insertion order, as a Python dict does (templates print and serialise in that order).
public struct OrderedDict: Equatable {
    public private(set) var keys: [String] = []
    private var storage: [String: Value] = [:]

    public init() {}
    public init(_ pairs: [(String, Value)]) {
        for (k, v) in pairs { self[k] = v }
    }

    public subscript(key: String) -> Value? {
        get { storage[key] }
        set {
            if let v = newValue {
                if storage[key] == nil { keys.append(key) }
                storage[key] = v
            } else if storage.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    public var count: Int { keys.count }
    public var pairs: [(String, Value)] { keys.map { ($0, storage[$0]!) } }
}

/// Jinja2's namespace(): the one mutable object a template may change from inside a loop.
public final class Namespace: Equatable {
    var attributes: OrderedDict
    init(_ a: OrderedDict) { attributes = a }
    public static func == (a: Namespace, b: Namespace) -> Bool { a === b }
}

public indirect enum Value: Equatable {
    /// A name or key that has no value; it prints as nothing and is false. The name is kept for error messages.
    case undefined(String)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case list([Value])
    case dict(OrderedDict)
    case namespace(Namespace)
    /// A global function (raise_exception, namespace, range, dict, strftime_now).
    case function(String)
    /// A method of a value (`s.strip`, `d.items`), called later.
    case method(Value, String)

    public static func == (a: Value, b: Value) -> Bool { a.equals(b) }

    /// Python's truth value (an undefined value is false, as Jinja2's Undefined is).
    public var isTrue: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .double(let d): return d != 0
        case .string(let s): return !s.isEmpty
        case .list(let l): return !l.isEmpty
        case .dict(let d): return d.count > 0
        case .namespace, .function, .method: return true
        }
    }

    public var isDefined: Bool { if case .undefined = self { return false } else { return true } }

    /// Python's type name, for error messages.
    var typeName: String {
        switch self {
        case .undefined: return "undefined"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "str"
        case .list: return "list"
        case .dict: return "dict"
        case .namespace: return "Namespace"
        case .function, .method: return "function"
        }
    }

    /// What `{{ value }}` prints: Python's str() (an undefined value prints nothing).
    public var text: String {
        switch self {
        case .undefined: return ""
        case .string(let s): return s
        default: return repr
        }
    }

    /// Python's repr().
    var repr: String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .double(let d): return Self.pythonFloat(d)
        case .string(let s): return Self.pythonStringRepr(s)
        case .list(let l): return "[" + l.map(\.repr).joined(separator: ", ") + "]"
        case .dict(let d): return "{" + d.pairs.map { Self.pythonStringRepr($0.0) + ": " + $0.1.repr }.joined(separator: ", ") + "}"
        case .namespace(let n): return "<Namespace " + Value.dict(n.attributes).repr + ">"
        case .function(let f): return "<function \(f)>"
        case .method(_, let m): return "<method \(m)>"
        }
    }

    /// Python's repr of a float: the shortest round-trip digits, exponent form outside [1e-4, 1e16).
    static func pythonFloat(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d < 0 ? "-inf" : "inf" }
        return d.description   // Swift's description is the same shortest repr with Python's switch points
    }

    /// Python's repr of a string: single quotes unless the text has one and no double quote.
    static func pythonStringRepr(_ s: String) -> String {
        let quote: Character = s.contains("'") && !s.contains("\"") ? "\"" : "'"
        var out = String(quote)
        for u in s.unicodeScalars {
            switch u {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if Character(u) == quote { out += "\\" + String(quote) }
                else if u.value < 0x20 || u.value == 0x7f { out += String(format: "\\x%02x", u.value) }
                else { out.unicodeScalars.append(u) }
            }
        }
        return out + String(quote)
    }

    // MARK: equality and order (Python's)

    func equals(_ o: Value) -> Bool {
        switch (self, o) {
        case (.undefined, .undefined), (.none, .none): return true
        case (.string(let a), .string(let b)): return a == b
        case (.list(let a), .list(let b)): return a.count == b.count && zip(a, b).allSatisfy { $0.equals($1) }
        case (.dict(let a), .dict(let b)):
            return a.count == b.count && a.keys.allSatisfy { k in b[k].map { a[k]!.equals($0) } ?? false }
        case (.namespace(let a), .namespace(let b)): return a === b
        case (.function(let a), .function(let b)): return a == b
        default:
            if let x = number, let y = o.number { return x == y }
            return false
        }
    }

    /// The value as a number (bool counts as 0/1, as in Python).
    var number: Double? {
        switch self {
        case .bool(let b): return b ? 1 : 0
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    // MARK: json.dumps

    /// json.dumps(self, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sortKeys).
    func json(indent: Int?, separators: (String, String)?, sortKeys: Bool, level: Int = 0) throws -> String {
        let (itemSep, keySep) = separators ?? (indent == nil ? (", ", ": ") : (",", ": "))
        func newline(_ l: Int) -> String { indent.map { "\n" + String(repeating: " ", count: $0 * l) } ?? "" }
        switch self {
        case .none: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d):
            if d.isNaN { return "NaN" }
            if d.isInfinite { return d < 0 ? "-Infinity" : "Infinity" }
            return Self.pythonFloat(d)
        case .string(let s): return jsonString(s)
        case .list(let l):
            if l.isEmpty { return "[]" }
            let items = try l.map { try $0.json(indent: indent, separators: separators, sortKeys: sortKeys, level: level + 1) }
            return "[" + newline(level + 1) + items.joined(separator: itemSep + newline(level + 1)) + newline(level) + "]"
        case .dict(let d):
            if d.count == 0 { return "{}" }
            let keys = sortKeys ? d.keys.sorted() : d.keys
            let items = try keys.map {
                jsonString($0) + keySep
                    + (try d[$0]!.json(indent: indent, separators: separators, sortKeys: sortKeys, level: level + 1))
            }
            return "{" + newline(level + 1) + items.joined(separator: itemSep + newline(level + 1)) + newline(level) + "}"
        default:
            throw ValueError("Object of type \(typeName) is not JSON serializable")
        }
    }
}

/// A failure inside a value operation; the interpreter adds the line.
struct ValueError: Error {
    let message: String
    init(_ m: String) { message = m }
}
