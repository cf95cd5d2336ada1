// A small flag parser (no outside packages): `--flag value`, `--flag=value` and boolean `--flag`.
// Unknown flags and malformed values are one-line errors naming the flag.
import Foundation

struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

struct Arguments {
    private var values: [String: String] = [:]
    private var flags: Set<String> = []
    private var consumed: Set<String> = []

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

    mutating func string(_ name: String) -> String? {
        consumed.insert(name)
        return values[name]
    }

    mutating func required(_ name: String) throws -> String {
        guard let v = string(name), !v.isEmpty else { throw UsageError("--\(name) is required") }
        return v
    }

    mutating func int(_ name: String, default d: Int? = nil, min lo: Int? = nil) throws -> Int? {
        guard let s = string(name) else { return d }
        guard let v = Int(s) else { throw UsageError("--\(name): \"\(s)\" is not an integer") }
        if let lo, v < lo { throw UsageError("--\(name): must be at least \(lo), got \(v)") }
        return v
    }

    /// Fails on any flag the command did not ask about.
    func finish() throws {
        let unknown = Set(values.keys).union(flags).subtracting(consumed)
        if let u = unknown.sorted().first { throw UsageError("unknown flag --\(u)") }
    }
}
