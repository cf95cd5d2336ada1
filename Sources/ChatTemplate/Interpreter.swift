// Rendering a parsed template: Jinja2's scoping (a for loop's body has its own scope, so `set` inside it does not
// leak out, which is why templates use namespace(); if blocks do not), its `loop` variable, break/continue, and
// Python's semantics for the operators (and/or return an operand; `+` on str, list and numbers; `/` is true
// division; `//` and `%` floor; `in` on str, list and dict keys). Attribute access is Jinja2's: `x.name` is a
// method or else a key, `x['name']` a key or else an attribute; a missing key is undefined, while reading anything
// from an undefined value is an error, as with Jinja2's default Undefined.
import Foundation

enum Flow { case normal, breakLoop, continueLoop }

final class Interpreter {
    private var frames: [[String: Value]]
    private var out = ""

    init(globals: [String: Value]) {
        frames = [globals]
    }

    func render(_ nodes: [Node]) throws -> String {
        _ = try run(nodes)
        return out
    }

    // MARK: - statements

    private func run(_ nodes: [Node]) throws -> Flow {
        for node in nodes {
            let flow = try run(node)
            if flow != .normal { return flow }
        }
        return .normal
    }

    private func run(_ node: Node) throws -> Flow {
        switch node {
        case .text(let t):
            out += t
        case .output(let e, let line):
            out += try eval(e, line).text
        case .conditional(let branches, let otherwise, let line):
            for (cond, body) in branches where try eval(cond, line).isTrue { return try run(body) }
            return try run(otherwise)
        case .loop(let targets, let iterable, let filter, let body, let otherwise, let line):
            var items = try wrap(line) { try Builtins.iterate(try eval(iterable, line)) }
            if let filter {
                items = try items.filter { item in
                    frames.append([:])
                    defer { frames.removeLast() }
                    try bind(targets, item, line)
                    return try eval(filter, line).isTrue
                }
            }
            if items.isEmpty { return try run(otherwise) }
            for (i, item) in items.enumerated() {
                frames.append([:])
                defer { frames.removeLast() }
                try bind(targets, item, line)
                let n = items.count
                frames[frames.count - 1]["loop"] = .dict(OrderedDict([
                    ("index", .int(i + 1)), ("index0", .int(i)), ("revindex", .int(n - i)), ("revindex0", .int(n - i - 1)),
                    ("first", .bool(i == 0)), ("last", .bool(i == n - 1)), ("length", .int(n)),
                    ("previtem", i > 0 ? items[i - 1] : .undefined("loop.previtem")),
                    ("nextitem", i + 1 < n ? items[i + 1] : .undefined("loop.nextitem")),
                    ("depth", .int(1)), ("depth0", .int(0)),
                ]))
                if try run(body) == .breakLoop { break }
            }
        case .set(let target, let e, let line):
            let v = try eval(e, line)
            switch target {
            case .names(let names):
                try bind(names, v, line)
            case .attribute(let object, let attribute):
                guard case .namespace(let ns) = lookup(object) else {
                    throw TemplateError.render(line: line, "cannot set \(object).\(attribute): \(object) is not a namespace()")
                }
                ns.attributes[attribute] = v
            }
        case .setBlock(let name, let body, _):
            let saved = out
            out = ""
            _ = try run(body)
            let captured = out
            out = saved
            frames[frames.count - 1][name] = .string(captured)
        case .breakLoop:
            return .breakLoop
        case .continueLoop:
            return .continueLoop
        case .generation(let body):
            return try run(body)
        }
        return .normal
    }

    /// Assigns `value` to one name, or unpacks it over several (a list of that length).
    private func bind(_ names: [String], _ value: Value, _ line: Int) throws {
        if names.count == 1 {
            frames[frames.count - 1][names[0]] = value
            return
        }
        let items = try wrap(line) { try Builtins.iterate(value) }
        guard items.count == names.count else {
            throw TemplateError.render(line: line, "cannot unpack \(items.count) values into \(names.count) names")
        }
        for (n, v) in zip(names, items) { frames[frames.count - 1][n] = v }
    }

    private func lookup(_ name: String) -> Value {
        for f in frames.reversed() { if let v = f[name] { return v } }
        return .undefined(name)
    }

    /// Runs `body`, turning a value error into a template error at `line`.
    private func wrap<T>(_ line: Int, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as ValueError { throw TemplateError.render(line: line, e.message) }
    }

    // MARK: - expressions

    func eval(_ e: Expr, _ line: Int) throws -> Value {
        switch e {
        case .literal(let v): return v
        case .name(let n): return lookup(n)
        case .list(let items): return .list(try items.map { try eval($0, line) })
        case .dict(let pairs):
            var d = OrderedDict()
            for (k, v) in pairs {
                guard case .string(let key) = try eval(k, line) else {
                    throw TemplateError.unsupported(line: line, "a dict literal with a key that is not a string")
                }
                d[key] = try eval(v, line)
            }
            return .dict(d)
        case .attribute(let base, let name):
            let b = try eval(base, line)
            return try wrap(line) { try Builtins.attribute(b, name) }
        case .item(let base, let index):
            let b = try eval(base, line), i = try eval(index, line)
            return try wrap(line) { try Builtins.item(b, i) }
        case .slice(let base, let start, let stop, let step):
            let b = try eval(base, line)
            let bounds = try [start, stop, step].map { try $0.map { try eval($0, line) } }
            return try wrap(line) { try Builtins.slice(b, bounds[0], bounds[1], bounds[2]) }
        case .call(let callee, let args, let kwargs):
            let f = try eval(callee, line)
            let a = try args.map { try eval($0, line) }
            let k = try kwargs.map { ($0.0, try eval($0.1, line)) }
            return try Builtins.call(f, a, k, line: line)
        case .filter(let base, let name, let args, let kwargs):
            let b = try eval(base, line)
            let a = try args.map { try eval($0, line) }
            let k = try kwargs.map { ($0.0, try eval($0.1, line)) }
            return try Builtins.filter(name, b, a, k, line: line)
        case .test(let base, let name, let args, let negated):
            let b = try eval(base, line)
            let a = try args.map { try eval($0, line) }
            return .bool(try Builtins.test(name, b, a, line: line) != negated)
        case .not(let x):
            return .bool(!(try eval(x, line).isTrue))
        case .negate(let x):
            let v = try eval(x, line)
            switch v {
            case .int(let i): return .int(-i)
            case .bool(let b): return .int(b ? -1 : 0)
            case .double(let d): return .double(-d)
            default: throw TemplateError.render(line: line, "bad operand type for unary -: '\(v.typeName)'")
            }
        case .binary("and", let a, let b):
            let x = try eval(a, line)
            return x.isTrue ? try eval(b, line) : x
        case .binary("or", let a, let b):
            let x = try eval(a, line)
            return x.isTrue ? x : try eval(b, line)
        case .binary(let op, let a, let b):
            let x = try eval(a, line), y = try eval(b, line)
            return try wrap(line) { try Builtins.binary(op, x, y) }
        case .conditional(let test, let then, let otherwise):
            if try eval(test, line).isTrue { return try eval(then, line) }
            return try otherwise.map { try eval($0, line) } ?? .undefined("conditional expression")
        }
    }
}
