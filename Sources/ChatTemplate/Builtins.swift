// Jinja2's filters and tests, Python's str and dict methods, and the globals transformers adds
// (chat_template_utils.py: raise_exception, strftime_now, dict, namespace, and a tojson filter that is json.dumps
// without HTML escaping), as far as chat templates use them. Anything else is refused by name.
import Foundation

enum Builtins {
    // MARK: - iteration, attributes, items

    /// What `for x in value` walks: a list's items, a dict's keys, a string's characters; nothing for undefined.
    static func iterate(_ v: Value) throws -> [Value] {
        switch v {
        case .undefined: return []
        case .list(let l): return l
        case .dict(let d): return d.keys.map { .string($0) }
        case .string(let s): return s.unicodeScalars.map { .string(String($0)) }
        default: throw ValueError("'\(v.typeName)' object is not iterable")
        }
    }

    static let stringMethods: Set<String> = ["strip", "lstrip", "rstrip", "startswith", "endswith", "split", "upper",
                                             "lower", "title", "capitalize", "replace", "join", "count", "find"]
    static let dictMethods: Set<String> = ["items", "keys", "values", "get"]
    /// Python methods of str and dict not implemented: reading one gives a method whose call is refused by name.
    static let otherStringMethods: Set<String> = ["format", "format_map", "zfill", "center", "ljust", "rjust", "partition",
        "rpartition", "rsplit", "splitlines", "index", "rfind", "rindex", "swapcase", "casefold", "expandtabs", "encode",
        "removeprefix", "removesuffix", "translate", "isdigit", "isalpha", "isalnum", "isspace", "islower", "isupper",
        "istitle", "isnumeric", "isdecimal", "isascii", "isidentifier", "isprintable"]
    static let otherDictMethods: Set<String> = ["update", "pop", "popitem", "setdefault", "copy", "clear", "fromkeys"]

    /// `value.name`: a method, else a key (dict, namespace); missing: undefined.
    static func attribute(_ v: Value, _ name: String) throws -> Value {
        switch v {
        case .undefined(let what): throw ValueError("'\(what)' is undefined (reading .\(name))")
        case .dict(let d):
            if dictMethods.contains(name) || otherDictMethods.contains(name) { return .method(v, name) }
            return d[name] ?? .undefined(name)
        case .namespace(let ns): return ns.attributes[name] ?? .undefined(name)
        case .string:
            return stringMethods.contains(name) || otherStringMethods.contains(name) ? .method(v, name) : .undefined(name)
        default: return .undefined(name)
        }
    }

    /// `value[index]`: a key or a Python index, else an attribute; missing: undefined.
    static func item(_ v: Value, _ i: Value) throws -> Value {
        switch (v, i) {
        case (.undefined(let what), _): throw ValueError("'\(what)' is undefined (reading [\(i.repr)])")
        case (.dict(let d), .string(let k)): return d[k] ?? .undefined(k)
        case (.namespace(let ns), .string(let k)): return ns.attributes[k] ?? .undefined(k)
        case (.list(let l), _):
            guard let n = index(i) else { throw ValueError("list indices must be integers, not \(i.typeName)") }
            let j = n < 0 ? n + l.count : n
            return l.indices.contains(j) ? l[j] : .undefined("[\(n)]")
        case (.string(let s), _):
            guard let n = index(i) else { throw ValueError("string indices must be integers, not \(i.typeName)") }
            let u = Array(s.unicodeScalars)
            let j = n < 0 ? n + u.count : n
            return u.indices.contains(j) ? .string(String(u[j])) : .undefined("[\(n)]")
        case (_, .string(let k)): return try attribute(v, k)
        default: return .undefined("[\(i.repr)]")
        }
    }

    static func index(_ v: Value) -> Int? {
        switch v {
        case .int(let i): return i
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }

    /// Python's slice of a list or string.
    static func slice(_ v: Value, _ start: Value?, _ stop: Value?, _ step: Value?) throws -> Value {
        func int(_ x: Value?) throws -> Int? {
            guard let x, x != .none else { return nil }
            guard let i = index(x) else { throw ValueError("slice indices must be integers or None") }
            return i
        }
        let st = try int(step) ?? 1
        guard st != 0 else { throw ValueError("slice step cannot be zero") }
        func indices(_ n: Int) throws -> [Int] {
            func clamp(_ x: Int?, _ dflt: Int) -> Int {
                guard var x else { return dflt }
                if x < 0 { x += n }
                return st > 0 ? min(max(x, 0), n) : min(max(x, -1), n - 1)
            }
            let a = clamp(try int(start), st > 0 ? 0 : n - 1), b = clamp(try int(stop), st > 0 ? n : -1)
            return Array(stride(from: a, to: b, by: st))
        }
        switch v {
        case .list(let l): return .list(try indices(l.count).map { l[$0] })
        case .string(let s):
            let u = Array(s.unicodeScalars)
            var r = String.UnicodeScalarView()
            for j in try indices(u.count) { r.append(u[j]) }
            return .string(String(r))
        case .undefined(let what): throw ValueError("'\(what)' is undefined (slicing it)")
        default: throw ValueError("'\(v.typeName)' object is not subscriptable")
        }
    }

    // MARK: - operators

    static func binary(_ op: String, _ x: Value, _ y: Value) throws -> Value {
        func bad() -> ValueError { ValueError("unsupported operand types for \(op): '\(x.typeName)' and '\(y.typeName)'") }
        switch op {
        case "~": return .string(x.text + y.text)
        case "==": return .bool(x.equals(y))
        case "!=": return .bool(!x.equals(y))
        case "<", ">", "<=", ">=":
            let c: Int
            if let a = x.number, let b = y.number {
                c = a < b ? -1 : a > b ? 1 : 0
            } else if case .string(let a) = x, case .string(let b) = y {
                let ua = a.unicodeScalars.map(\.value), ub = b.unicodeScalars.map(\.value)
                c = ua.lexicographicallyPrecedes(ub) ? -1 : ua == ub ? 0 : 1
            } else {
                throw ValueError("'\(op)' not supported between '\(x.typeName)' and '\(y.typeName)'")
            }
            switch op {
            case "<": return .bool(c < 0)
            case ">": return .bool(c > 0)
            case "<=": return .bool(c <= 0)
            default: return .bool(c >= 0)
            }
        case "in", "not in":
            let found: Bool
            switch y {
            case .string(let h):
                guard case .string(let needle) = x else { throw ValueError("'in <string>' requires string as left operand, not \(x.typeName)") }
                found = needle.isEmpty || h.contains(needle)
            case .list(let l): found = l.contains { $0.equals(x) }
            case .dict(let d): if case .string(let k) = x { found = d[k] != nil } else { found = false }
            case .undefined: found = false
            default: throw ValueError("argument of type '\(y.typeName)' is not iterable")
            }
            return .bool(found != (op == "not in"))
        case "+":
            switch (x, y) {
            case (.string(let a), .string(let b)): return .string(a + b)
            case (.list(let a), .list(let b)): return .list(a + b)
            default: break
            }
        case "*":
            switch (x, y) {
            case (.string(let s), _) where index(y) != nil: return .string(String(repeating: s, count: max(0, index(y)!)))
            case (.list(let l), _) where index(y) != nil:
                return .list(Array([[Value]](repeating: l, count: max(0, index(y)!)).joined()))
            default: break
            }
        case "%":
            if case .string = x { throw ValueError("printf-style string formatting (str % value) is not supported") }
        default: break
        }
        // Numbers: int op int stays int (except true division), anything with a float is float.
        guard let a = x.number, let b = y.number else { throw bad() }
        if let i = index(x), let j = index(y) {
            switch op {
            case "+": let (r, o) = i.addingReportingOverflow(j); if !o { return .int(r) }
            case "-": let (r, o) = i.subtractingReportingOverflow(j); if !o { return .int(r) }
            case "*": let (r, o) = i.multipliedReportingOverflow(by: j); if !o { return .int(r) }
            case "//", "%":
                guard j != 0 else { throw ValueError("integer division or modulo by zero") }
                var q = i / j
                if (i % j != 0) && ((i < 0) != (j < 0)) { q -= 1 }
                return .int(op == "//" ? q : i - q * j)
            case "**" where j >= 0:
                var r = 1
                for _ in 0..<j {
                    let (m, o) = r.multipliedReportingOverflow(by: i)
                    guard !o else { throw ValueError("integer power overflows") }
                    r = m
                }
                return .int(r)
            default: break
            }
        }
        switch op {
        case "+": return .double(a + b)
        case "-": return .double(a - b)
        case "*": return .double(a * b)
        case "/":
            guard b != 0 else { throw ValueError("division by zero") }
            return .double(a / b)
        case "//":
            guard b != 0 else { throw ValueError("float floor division by zero") }
            return .double((a / b).rounded(.down))
        case "%":
            guard b != 0 else { throw ValueError("float modulo by zero") }
            return .double(a - (a / b).rounded(.down) * b)
        case "**": return .double(Foundation.pow(a, b))
        default: throw bad()
        }
    }

    // MARK: - calls: globals and methods

    static func call(_ f: Value, _ args: [Value], _ kwargs: [(String, Value)], line: Int) throws -> Value {
        func fail(_ m: String) -> TemplateError { .render(line: line, m) }
        switch f {
        case .function("raise_exception"):
            throw TemplateError.raised(line: line, args.first?.text ?? "")
        case .function("namespace"), .function("dict"):
            var d = OrderedDict()
            for a in args {
                guard case .dict(let given) = a else { throw fail("\(f.repr)() takes a dict or keyword arguments") }
                for (k, v) in given.pairs { d[k] = v }
            }
            for (k, v) in kwargs { d[k] = v }
            if case .function("dict") = f { return .dict(d) }
            return .namespace(Namespace(d))
        case .function("range"):
            let ints = try args.map { a -> Int in
                guard let i = index(a) else { throw fail("range() takes integers") }
                return i
            }
            let (lo, hi, step): (Int, Int, Int)
            switch ints.count {
            case 1: (lo, hi, step) = (0, ints[0], 1)
            case 2: (lo, hi, step) = (ints[0], ints[1], 1)
            case 3: (lo, hi, step) = (ints[0], ints[1], ints[2])
            default: throw fail("range() takes 1 to 3 arguments")
            }
            guard step != 0 else { throw fail("range() step must not be zero") }
            let r = Array(stride(from: lo, to: hi, by: step))
            guard r.count <= 100_000 else { throw fail("range() of \(r.count) items is too long for a template") }
            return .list(r.map { .int($0) })
        case .function("strftime_now"):
            guard case .string(let format) = args.first else { throw fail("strftime_now() takes a format string") }
            var t = time(nil)
            var tmv = tm()
            localtime_r(&t, &tmv)
            var buf = [Int8](repeating: 0, count: 256)
            let n = strftime(&buf, buf.count, format, &tmv)
            return .string(String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self))
        case .method(let receiver, let name):
            do { return try method(receiver, name, args, kwargs) } catch let e as ValueError { throw fail(e.message) }
        case .undefined(let what):
            throw fail("'\(what)' is undefined (called as a function)")
        default:
            throw fail("'\(f.typeName)' object is not callable")
        }
    }

    static func method(_ v: Value, _ name: String, _ args: [Value], _ kwargs: [(String, Value)]) throws -> Value {
        func arg(_ i: Int, _ key: String) -> Value? { i < args.count ? args[i] : kwargs.first { $0.0 == key }?.1 }
        func str(_ i: Int, _ key: String) throws -> String? {
            guard let a = arg(i, key), a != .none else { return nil }
            guard case .string(let s) = a else { throw ValueError("\(name)() argument must be str, not \(a.typeName)") }
            return s
        }
        switch v {
        case .string(let s):
            switch name {
            case "strip": return .string(strip(s, try str(0, "chars"), leading: true, trailing: true))
            case "lstrip": return .string(strip(s, try str(0, "chars"), leading: true, trailing: false))
            case "rstrip": return .string(strip(s, try str(0, "chars"), leading: false, trailing: true))
            case "startswith", "endswith":
                guard let a = arg(0, "prefix") else { throw ValueError("\(name)() takes an argument") }
                let options: [Value] = if case .list(let l) = a { l } else { [a] }
                for o in options {
                    guard case .string(let p) = o else { throw ValueError("\(name)() argument must be str") }
                    if name == "startswith" ? s.unicodeScalars.starts(with: p.unicodeScalars)
                        : s.unicodeScalars.reversed().starts(with: p.unicodeScalars.reversed()) { return .bool(true) }
                }
                return .bool(false)
            case "split":
                let maxSplit = arg(1, "maxsplit").flatMap(index) ?? -1
                return .list(split(s, try str(0, "sep"), maxSplit: maxSplit).map { .string($0) })
            case "upper": return .string(s.uppercased())
            case "lower": return .string(s.lowercased())
            case "title": return .string(title(s))
            case "capitalize": return .string(capitalize(s))
            case "replace":
                guard let old = try str(0, "old"), let new = try str(1, "new") else { throw ValueError("replace() takes 2 arguments") }
                return .string(replace(s, old, new, count: arg(2, "count").flatMap(index) ?? -1))
            case "join":
                guard let a = arg(0, "iterable") else { throw ValueError("join() takes an argument") }
                return .string(try iterate(a).map { x -> String in
                    guard case .string(let t) = x else { throw ValueError("sequence item: expected str instance, \(x.typeName) found") }
                    return t
                }.joined(separator: s))
            case "count":
                guard let sub = try str(0, "x") else { throw ValueError("count() takes an argument") }
                return .int(sub.isEmpty ? s.unicodeScalars.count + 1 : s.components(separatedBy: sub).count - 1)
            case "find":
                guard let sub = try str(0, "sub") else { throw ValueError("find() takes an argument") }
                guard let r = s.range(of: sub) else { return .int(-1) }
                return .int(s.unicodeScalars.distance(from: s.unicodeScalars.startIndex, to: r.lowerBound))
            default: break
            }
        case .dict(let d):
            switch name {
            case "items": return .list(d.pairs.map { .list([.string($0.0), $0.1]) })
            case "keys": return .list(d.keys.map { .string($0) })
            case "values": return .list(d.pairs.map(\.1))
            case "get":
                guard case .string(let k)? = arg(0, "key") else { return arg(1, "default") ?? .none }
                return d[k] ?? arg(1, "default") ?? .none
            default: break
            }
        default: break
        }
        throw ValueError("unsupported construct: method \(v.typeName).\(name)()")
    }

    // MARK: - filters

    static func filter(_ name: String, _ v: Value, _ args: [Value], _ kwargs: [(String, Value)], line: Int) throws -> Value {
        func fail(_ m: String) -> TemplateError { .render(line: line, m) }
        func arg(_ i: Int, _ key: String) -> Value? { i < args.count ? args[i] : kwargs.first { $0.0 == key }?.1 }
        do {
            switch name {
            case "trim":
                let chars: String? = if case .string(let c)? = arg(0, "chars") { c } else { nil }
                return .string(strip(v.text, chars, leading: true, trailing: true))
            case "length", "count":
                switch v {
                case .undefined: return .int(0)
                case .string(let s): return .int(s.unicodeScalars.count)
                case .list(let l): return .int(l.count)
                case .dict(let d): return .int(d.count)
                default: throw ValueError("object of type '\(v.typeName)' has no len()")
                }
            case "upper": return .string(v.text.uppercased())
            case "lower": return .string(v.text.lowercased())
            case "title": return .string(title(v.text))
            case "capitalize": return .string(capitalize(v.text))
            case "string": return .string(v.text)
            case "safe": return v
            case "first", "last":
                let items = try iterate(v)
                return (name == "first" ? items.first : items.last) ?? .undefined("\(name) of an empty sequence")
            case "join":
                let sep = arg(0, "d")?.text ?? ""
                var items = try iterate(v)
                if case .string(let a)? = arg(1, "attribute") { items = try items.map { try attribute($0, a) } }
                return .string(items.map(\.text).joined(separator: sep))
            case "default", "d":
                let fallback = arg(0, "default_value") ?? .string("")
                let boolean = arg(1, "boolean")?.isTrue ?? false
                return !v.isDefined || (boolean && !v.isTrue) ? fallback : v
            case "tojson":
                let indent = arg(0, "indent").flatMap(index)
                var separators: (String, String)? = nil
                if let s = arg(2, "separators"), s != .none {
                    let parts = try iterate(s)
                    guard parts.count == 2 else { throw ValueError("tojson separators must be a pair") }
                    separators = (parts[0].text, parts[1].text)
                }
                if arg(1, "ensure_ascii")?.isTrue == true { throw ValueError("unsupported construct: tojson(ensure_ascii=true)") }
                return .string(try v.json(indent: indent, separators: separators, sortKeys: arg(3, "sort_keys")?.isTrue ?? false))
            case "items":
                switch v {
                case .undefined: return .list([])
                case .dict(let d): return .list(d.pairs.map { .list([.string($0.0), $0.1]) })
                default: throw ValueError("items filter: '\(v.typeName)' is not a mapping")
                }
            case "list": return .list(try iterate(v))
            case "int":
                switch v {
                case .int: return v
                case .bool(let b): return .int(b ? 1 : 0)
                case .double(let d): return .int(Int(d))
                case .string(let s): return .int(Int(s.trimmingCharacters(in: .whitespaces)) ?? Int(Double(s) ?? 0))
                default: return arg(0, "default") ?? .int(0)
                }
            case "float":
                switch v {
                case .int(let i): return .double(Double(i))
                case .double: return v
                case .string(let s): return .double(Double(s.trimmingCharacters(in: .whitespaces)) ?? 0)
                default: return arg(0, "default") ?? .double(0)
                }
            case "abs":
                switch v {
                case .int(let i): return .int(Swift.abs(i))
                case .double(let d): return .double(Swift.abs(d))
                default: throw ValueError("bad operand type for abs(): '\(v.typeName)'")
                }
            case "replace":
                guard case .string(let old)? = arg(0, "old"), case .string(let new)? = arg(1, "new") else {
                    throw ValueError("replace filter takes two strings")
                }
                return .string(replace(v.text, old, new, count: arg(2, "count").flatMap(index) ?? -1))
            case "select", "reject":
                let items = try iterate(v)
                let keep = name == "select"
                guard case .string(let test)? = args.first else { return .list(items.filter { $0.isTrue == keep }) }
                return .list(try items.filter { try self.test(test, $0, Array(args.dropFirst()), line: line) == keep })
            case "selectattr", "rejectattr":
                guard case .string(let a)? = args.first else { throw ValueError("\(name) takes an attribute name") }
                let keep = name == "selectattr"
                return .list(try iterate(v).filter { item in
                    let x = try attribute(item, a)
                    guard case .string(let test)? = args.dropFirst().first else { return x.isTrue == keep }
                    return try self.test(test, x, Array(args.dropFirst(2)), line: line) == keep
                })
            case "map":
                if case .string(let a)? = kwargs.first(where: { $0.0 == "attribute" })?.1 {
                    return .list(try iterate(v).map { try attribute($0, a) })
                }
                guard case .string(let f)? = args.first else { throw ValueError("map takes a filter name or attribute=") }
                return .list(try iterate(v).map { try filter(f, $0, Array(args.dropFirst()), [], line: line) })
            default:
                throw TemplateError.unsupported(line: line, "filter |\(name)")
            }
        } catch let e as ValueError {
            throw fail(e.message)
        }
    }

    // MARK: - tests

    static func test(_ name: String, _ v: Value, _ args: [Value], line: Int) throws -> Bool {
        func other() throws -> Value {
            guard let a = args.first else { throw TemplateError.render(line: line, "test \(name) takes an argument") }
            return a
        }
        switch name {
        case "defined": return v.isDefined
        case "undefined": return !v.isDefined
        case "none": return v == .none && v.isDefined
        case "boolean": if case .bool = v { return true } else { return false }
        case "true": return v == .bool(true) && { if case .bool = v { return true } else { return false } }()
        case "false": return v == .bool(false) && { if case .bool = v { return true } else { return false } }()
        case "integer": if case .int = v { return true } else { return false }
        case "float": if case .double = v { return true } else { return false }
        case "number": return v.number != nil
        case "string": if case .string = v { return true } else { return false }
        case "mapping": if case .dict = v { return true } else { return false }
        case "iterable", "sequence":
            switch v {
            case .undefined, .string, .list, .dict: return true
            default: return false
            }
        case "callable":
            switch v {
            case .function, .method: return true
            default: return false
            }
        case "equalto", "eq", "==", "sameas": return v.equals(try other())
        case "ne", "!=": return !v.equals(try other())
        case "lt", "<", "gt", ">", "le", "<=", "ge", ">=":
            let op = ["lt": "<", "gt": ">", "le": "<=", "ge": ">="][name] ?? name
            do { return try binary(op, v, try other()).isTrue } catch let e as ValueError { throw TemplateError.render(line: line, e.message) }
        case "in":
            do { return try binary("in", v, try other()).isTrue } catch let e as ValueError { throw TemplateError.render(line: line, e.message) }
        case "odd", "even", "divisibleby":
            guard let i = index(v) else { throw TemplateError.render(line: line, "test \(name) needs an integer") }
            if name == "odd" { return i % 2 != 0 }
            if name == "even" { return i % 2 == 0 }
            guard let d = index(try other()), d != 0 else { throw TemplateError.render(line: line, "divisibleby needs a non-zero integer") }
            return i % d == 0
        case "lower": return v.text == v.text.lowercased()
        case "upper": return v.text == v.text.uppercased()
        default: throw TemplateError.unsupported(line: line, "test \"is \(name)\"")
        }
    }

    // MARK: - Python string helpers

    /// str.strip / lstrip / rstrip: whitespace, or any of `chars`.
    static func strip(_ s: String, _ chars: String?, leading: Bool, trailing: Bool) -> String {
        let set = chars.map { Set($0.unicodeScalars) }
        func drop(_ u: Unicode.Scalar) -> Bool { set?.contains(u) ?? u.properties.isWhitespace }
        var u = Array(s.unicodeScalars)[...]
        if leading { while let f = u.first, drop(f) { u = u.dropFirst() } }
        if trailing { while let l = u.last, drop(l) { u = u.dropLast() } }
        return String(String.UnicodeScalarView(u))
    }

    /// str.split: on runs of whitespace (no empty pieces) without `sep`, else on each `sep`.
    static func split(_ s: String, _ sep: String?, maxSplit: Int) -> [String] {
        guard let sep, !sep.isEmpty else {
            let u = Array(s.unicodeScalars)
            func text(_ r: Range<Int>) -> String { String(String.UnicodeScalarView(u[r])) }
            var out: [String] = [], i = 0
            while true {
                while i < u.count && u[i].properties.isWhitespace { i += 1 }
                if i >= u.count { break }
                if maxSplit >= 0 && out.count == maxSplit {     // the rest, as it is, is the last piece
                    out.append(text(i..<u.count))
                    break
                }
                let start = i
                while i < u.count && !u[i].properties.isWhitespace { i += 1 }
                out.append(text(start..<i))
            }
            return out
        }
        var parts = s.components(separatedBy: sep)
        if maxSplit >= 0 && parts.count > maxSplit + 1 {
            parts = Array(parts[0..<maxSplit]) + [parts[maxSplit...].joined(separator: sep)]
        }
        return parts
    }

    static func replace(_ s: String, _ old: String, _ new: String, count: Int) -> String {
        guard count >= 0 else { return s.replacingOccurrences(of: old, with: new) }
        var parts = s.components(separatedBy: old)
        guard parts.count > count + 1 else { return parts.joined(separator: new) }
        let head = parts[0...count].joined(separator: new)
        parts = Array(parts[(count + 1)...])
        return ([head] + parts).joined(separator: old)
    }

    /// str.capitalize: the first character upper-cased, the rest lower-cased.
    static func capitalize(_ s: String) -> String {
        guard let f = s.first else { return s }
        return f.uppercased() + s.dropFirst().lowercased()
    }

    /// Jinja2's title filter: each piece after a run of `-`, whitespace or an opening bracket capitalized.
    static func title(_ s: String) -> String {
        var out = "", startOfWord = true
        for c in s {
            let boundary = c == "-" || c.isWhitespace || "({[<".contains(c)
            if boundary { out.append(c); startOfWord = true; continue }
            out += startOfWord ? c.uppercased() : c.lowercased()
            startOfWord = false
        }
        return out
    }
}
