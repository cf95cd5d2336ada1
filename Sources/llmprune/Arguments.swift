// A small flag parser (no outside packages): `--flag value`, `--flag=value` and boolean `--flag`.
// Unknown flags and malformed values are one-line errors naming the flag. What a command accepts is a table of
// `FlagInfo` (Flags.swift); the same table prints its help page, so a flag's default is written once.
import Foundation

struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Why a flag's value was refused, without the flag's name (the parser adds it: `--NAME: reason`).
struct FlagValueError: Error {
    let reason: String
    init(_ r: String) { reason = r }
}

/// One flag: its name, the placeholder of its value (nil: a switch, which takes none), its default as it would be
/// written on the command line (nil: none), its help text (lines after the first are continuations), whether its
/// value is a path (made absolute when a job records it; `orName`: unless no such file exists, the value then being a
/// dataset name) and whether it only steers this run (a resumed job takes everything else from what it recorded).
struct FlagInfo: Sendable {
    let name: String
    let metavar: String?
    let defaultText: String?
    let help: String
    var isPath = false
    var orName = false
    var runtime = false
    var isSwitch: Bool { metavar == nil }
}

/// A flag with a value of type `Value`: its description and the parser of its text. The default, when there is
/// one, goes through the same parser as a given value.
struct Flag<Value> {
    let info: FlagInfo
    let parse: @Sendable (String) throws -> Value

    init(_ name: String, _ metavar: String, default d: String? = nil, path: Bool = false, orName: Bool = false,
         runtime: Bool = false, help: String, parse: @escaping @Sendable (String) throws -> Value) {
        info = FlagInfo(name: name, metavar: metavar, defaultText: d, help: help, isPath: path || orName,
                        orName: orName, runtime: runtime)
        self.parse = parse
    }
}

/// A flag that takes no value.
struct Switch {
    let info: FlagInfo
    init(_ name: String, runtime: Bool = false, help: String) {
        info = FlagInfo(name: name, metavar: nil, defaultText: nil, help: help, runtime: runtime)
    }
}

/// An interval of accepted numbers, written as it reads in an error ("in [0, 1)", "positive").
struct NumberRange: Sendable {
    var lower: Double, upper: Double, lowerInclusive: Bool, upperInclusive: Bool
    static let positive = NumberRange(lower: 0, upper: .infinity, lowerInclusive: false, upperInclusive: false)
    static let nonNegative = NumberRange(lower: 0, upper: .infinity, lowerInclusive: true, upperInclusive: false)
    static let any = NumberRange(lower: -.infinity, upper: .infinity, lowerInclusive: false, upperInclusive: false)
    static func closed(_ a: Double, _ b: Double) -> NumberRange { .init(lower: a, upper: b, lowerInclusive: true, upperInclusive: true) }
    static func halfOpen(_ a: Double, _ b: Double) -> NumberRange { .init(lower: a, upper: b, lowerInclusive: true, upperInclusive: false) }

    func contains(_ v: Double) -> Bool {
        v.isFinite && (lowerInclusive ? v >= lower : v > lower) && (upperInclusive ? v <= upper : v < upper)
    }

    var text: String {
        if upper == .infinity { return lower == -.infinity ? "a finite number" : lowerInclusive ? "at least \(fmt(lower))" : "greater than \(fmt(lower))" }
        return (lowerInclusive ? "[" : "(") + fmt(lower) + ", " + fmt(upper) + (upperInclusive ? "]" : ")")
    }

    private func fmt(_ v: Double) -> String { v == v.rounded() && abs(v) < 1e15 ? String(Int(v)) : String(v) }
}

/// Parsers of flag values, for the tables.
enum Parse {
    static func int(min lo: Int? = nil) -> @Sendable (String) throws -> Int {
        { s in
            guard let v = Int(s) else { throw FlagValueError("\"\(s)\" is not an integer") }
            if let lo, v < lo { throw FlagValueError("must be at least \(lo), got \(v)") }
            return v
        }
    }

    static func double(_ range: NumberRange = .any) -> @Sendable (String) throws -> Double {
        { s in
            guard let v = Double(s) else { throw FlagValueError("\"\(s)\" is not a number") }
            guard range.contains(v) else {
                throw FlagValueError(range.lowerInclusive || range.upper != .infinity
                    ? "\(s) is not in \(range.text)" : "\(s) is not \(range.text)")
            }
            return v
        }
    }

    static func choice<E: RawRepresentable & CaseIterable>(_: E.Type) -> @Sendable (String) throws -> E
        where E.RawValue == String
    {
        { s in
            guard let v = E(rawValue: s) else { throw FlagValueError("\"\(s)\" is not \(names(E.self))") }
            return v
        }
    }

    /// "a, b or c".
    static func names<E: RawRepresentable & CaseIterable>(_: E.Type, separator: String = ", ") -> String where E.RawValue == String {
        let all = E.allCases.map(\.rawValue)
        return all.count < 2 ? all.joined() : all.dropLast().joined(separator: separator) + " or " + all.last!
    }

    static let text: @Sendable (String) throws -> String = { $0 }
}

struct Arguments {
    private var values: [String: String] = [:]
    private var flags: Set<String> = []
    private var consumed: Set<String> = []

    /// Parses `args` against the flags a command accepts: anything else is an unknown flag.
    init(_ args: [String], accepting table: [FlagInfo]) throws {
        let known = Set(table.map(\.name))
        try self.init(args, booleans: Set(table.filter(\.isSwitch).map(\.name)))
        if let u = Set(values.keys).union(flags).subtracting(known).sorted().first { throw UsageError("unknown flag --\(u)") }
    }

    /// Parses `args`; `booleans` are the flags that take no value.
    init(_ args: [String], booleans: Set<String>) throws {
        var i = 0
        while i < args.count {
            let a = args[i]
            guard a.hasPrefix("--"), a.count > 2 else { throw UsageError("unexpected argument \"\(a)\"") }
            var name = String(a.dropFirst(2)), value: String? = nil
            if let eq = name.firstIndex(of: "=") {
                value = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            }
            if booleans.contains(name) {
                guard value == nil else { throw UsageError("--\(name) takes no value") }
                flags.insert(name)
            } else {
                if value == nil {
                    i += 1
                    guard i < args.count else { throw UsageError("--\(name) needs a value") }
                    value = args[i]
                }
                values[name] = value
            }
            i += 1
        }
    }

    mutating func flag(_ name: String) -> Bool {
        consumed.insert(name)
        return flags.contains(name)
    }

    mutating func flag(_ s: Switch) -> Bool { flag(s.info.name) }

    mutating func string(_ name: String) -> String? {
        consumed.insert(name)
        return values[name]
    }

    /// Whether the flag was given (a value or a switch), without consuming it.
    func given(_ name: String) -> Bool { values[name] != nil || flags.contains(name) }

    mutating func required(_ name: String) throws -> String {
        guard let v = string(name), !v.isEmpty else { throw UsageError("--\(name) is required") }
        return v
    }

    /// The flag's value, or its default; nil when it has neither.
    mutating func optional<T>(_ f: Flag<T>) throws -> T? {
        guard let s = string(f.info.name) ?? f.info.defaultText else { return nil }
        do { return try f.parse(s) } catch let e as FlagValueError { throw UsageError("--\(f.info.name): \(e.reason)") }
    }

    /// The flag's value, or its default (the flag must have one).
    mutating func value<T>(_ f: Flag<T>) throws -> T {
        guard let v = try optional(f) else { throw UsageError("--\(f.info.name) is required") }
        return v
    }

    mutating func int(_ name: String, default d: Int? = nil, min lo: Int? = nil) throws -> Int? {
        guard let s = string(name) else { return d }
        do { return try Parse.int(min: lo)(s) } catch let e as FlagValueError { throw UsageError("--\(name): \(e.reason)") }
    }

    /// A number in `range`, or `d` when the flag is absent.
    mutating func double(_ name: String, default d: Double? = nil, range: NumberRange = .any) throws -> Double? {
        guard let s = string(name) else { return d }
        do { return try Parse.double(range)(s) } catch let e as FlagValueError { throw UsageError("--\(name): \(e.reason)") }
    }

    /// Fails on any flag the command did not ask about.
    func finish() throws {
        let unknown = Set(values.keys).union(flags).subtracting(consumed)
        if let u = unknown.sorted().first { throw UsageError("unknown flag --\(u)") }
    }
}
