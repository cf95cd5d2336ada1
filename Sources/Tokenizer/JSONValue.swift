// A JSON value decoded with JSONDecoder. (Linux JSONSerialization drops a raw U+FEFF that follows a quote, which
// would silently change tokens; JSONDecoder keeps every scalar.)
import Foundation

enum JSONValue: Decodable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    static func parse(_ data: Data) throws -> JSONValue {
        do { return try JSONDecoder().decode(JSONValue.self, from: data) } catch {
            throw TokenizerError.malformed("not JSON (\(String(describing: error).prefix(120).replacingOccurrences(of: "\n", with: " ")))")
        }
    }

    subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] } else { return nil }
    }
    var isNull: Bool { if case .null = self { return true } else { return false } }
    var string: String? { if case .string(let s) = self { return s } else { return nil } }
    var array: [JSONValue]? { if case .array(let a) = self { return a } else { return nil } }
    var object: [String: JSONValue]? { if case .object(let o) = self { return o } else { return nil } }
    var number: Double? { if case .number(let n) = self { return n } else { return nil } }
    var int32: Int32? { number.flatMap { Int32(exactly: $0) } }
    func bool(default d: Bool = false) -> Bool {
        switch self {
        case .bool(let b): return b
        case .number(let n): return n != 0
        default: return d
        }
    }
}

extension Optional where Wrapped == JSONValue {
    func bool(default d: Bool = false) -> Bool { self?.bool(default: d) ?? d }
    var isAbsentOrNull: Bool { self?.isNull ?? true }
}
