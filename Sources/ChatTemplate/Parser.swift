// The syntax tree of a template and the parser that builds it: statements for/if/elif/else/set (and set…endset),
// break/continue (jinja2.ext.loopcontrols) and transformers' generation…endgeneration; expressions with Jinja2's
// precedence (jinja2/parser.py): conditional `a if c else b` < or < and < not < comparisons and `in` < + - < ~ <
// * / // % < ** < unary - + < primary with .attr, [item or slice], (call), `| filter(args)` and `is [not] test(args)`.
// Any other statement (macro, call, include, extends, block, raw, with, filter, …) is refused by name.
import Foundation

indirect enum Expr {
    case literal(Value)
    case name(String)
    case list([Expr])
    case dict([(Expr, Expr)])
    case attribute(Expr, String)
    case item(Expr, Expr)
    case slice(Expr, Expr?, Expr?, Expr?)
    case call(Expr, [Expr], [(String, Expr)])
    case filter(Expr, String, [Expr], [(String, Expr)])
    case test(Expr, String, [Expr], negated: Bool)
    case not(Expr)
    case negate(Expr)
    case binary(String, Expr, Expr)
    case conditional(test: Expr, then: Expr, otherwise: Expr?)
}

enum SetTarget {
    case names([String])
    case attribute(String, String)      // ns.attr
}

indirect enum Node {
    case text(String)
    case output(Expr, line: Int)
    case conditional([(Expr, [Node])], otherwise: [Node], line: Int)
    case loop(targets: [String], iterable: Expr, filter: Expr?, body: [Node], otherwise: [Node], line: Int)
    case set(SetTarget, Expr, line: Int)
    case setBlock(String, [Node], line: Int)
    case breakLoop(line: Int)
    case continueLoop(line: Int)
    case generation([Node])
}

struct TemplateParser {
    private let pieces: [Piece]
    private var at = 0

    /// Statements that are parts of Jinja2 this interpreter does not implement.
    static let unsupportedStatements: Set<String> = ["macro", "endmacro", "call", "endcall", "include", "import", "from",
        "extends", "block", "endblock", "raw", "endraw", "with", "endwith", "filter", "endfilter", "do", "autoescape",
        "endautoescape", "trans", "endtrans", "pluralize"]

    static func parse(_ template: String) throws -> [Node] {
        var p = TemplateParser(pieces: try TemplateLexer.pieces(template))
        let (nodes, end) = try p.block(until: [])
        if let (word, line, _) = end { throw TemplateError.syntax(line: line, "unexpected {% \(word) %}") }
        return nodes
    }

    private init(pieces: [Piece]) { self.pieces = pieces }

    /// Nodes up to a statement whose keyword is in `ends`: (nodes, (keyword, line, its expression parser)).
    private mutating func block(until ends: Set<String>) throws -> ([Node], (String, Int, ExpressionParser)?) {
        var nodes: [Node] = []
        while at < pieces.count {
            let piece = pieces[at]
            at += 1
            switch piece {
            case .text(let t): nodes.append(.text(t))
            case .output(let src, let line):
                var e = try ExpressionParser(src, line: line)
                let expr = try e.expression()
                try e.expectEnd()
                nodes.append(.output(expr, line: line))
            case .statement(let src, let line):
                var e = try ExpressionParser(src, line: line)
                guard case .name(let word) = e.peek else {
                    throw TemplateError.syntax(line: line, "a statement must start with a keyword: {% \(src.trimmingCharacters(in: .whitespaces)) %}")
                }
                if ends.contains(word) {
                    e.advance()
                    return (nodes, (word, line, e))
                }
                e.advance()
                nodes.append(try statement(word, &e, line: line))
            }
        }
        return (nodes, nil)
    }

    private mutating func statement(_ word: String, _ e: inout ExpressionParser, line: Int) throws -> Node {
        switch word {
        case "if":
            var branches: [(Expr, [Node])] = []
            var cond = try e.expression()
            try e.expectEnd()
            while true {
                let (body, end) = try block(until: ["elif", "else", "endif"])
                branches.append((cond, body))
                guard let (w, l, closing) = end else { throw TemplateError.syntax(line: line, "{% if %} is never closed by {% endif %}") }
                var next = closing
                switch w {
                case "elif":
                    cond = try next.expression()
                    try next.expectEnd()
                case "else":
                    try next.expectEnd()
                    let (otherwise, end2) = try block(until: ["endif"])
                    guard let (_, _, last) = end2 else { throw TemplateError.syntax(line: l, "{% else %} is never closed by {% endif %}") }
                    try last.expectEnd()
                    return .conditional(branches, otherwise: otherwise, line: line)
                default:
                    try next.expectEnd()
                    return .conditional(branches, otherwise: [], line: line)
                }
            }
        case "for":
            var targets = [try e.identifier()]
            while e.skip(.op(",")) { targets.append(try e.identifier()) }
            guard e.skip(.name("in")) else { throw TemplateError.syntax(line: line, "expected \"in\" in {% for %}") }
            let iterable = try e.orExpression()
            var filter: Expr? = nil
            if e.skip(.name("if")) { filter = try e.expression() }
            if e.skip(.name("recursive")) { throw TemplateError.unsupported(line: line, "{% for … recursive %}") }
            try e.expectEnd()
            let (body, end) = try block(until: ["else", "endfor"])
            guard let (w, l, next) = end else { throw TemplateError.syntax(line: line, "{% for %} is never closed by {% endfor %}") }
            try next.expectEnd()
            var otherwise: [Node] = []
            if w == "else" {
                let (o, end2) = try block(until: ["endfor"])
                guard let (_, _, last) = end2 else { throw TemplateError.syntax(line: l, "{% else %} is never closed by {% endfor %}") }
                try last.expectEnd()
                otherwise = o
            }
            return .loop(targets: targets, iterable: iterable, filter: filter, body: body, otherwise: otherwise, line: line)
        case "set":
            let first = try e.identifier()
            var target = SetTarget.names([first])
            if e.skip(.op(".")) {
                target = .attribute(first, try e.identifier())
            } else {
                var names = [first]
                while e.skip(.op(",")) { names.append(try e.identifier()) }
                target = .names(names)
            }
            if e.skip(.op("=")) {
                let value = try e.tupleOrExpression()
                try e.expectEnd()
                return .set(target, value, line: line)
            }
            guard case .names(let names) = target, names.count == 1 else {
                throw TemplateError.syntax(line: line, "expected \"=\" in {% set %}")
            }
            if e.skip(.op("|")) { throw TemplateError.unsupported(line: line, "{% set … | filter %} block") }
            try e.expectEnd()
            let (body, end) = try block(until: ["endset"])
            guard let (_, _, last) = end else { throw TemplateError.syntax(line: line, "{% set %} is never closed by {% endset %}") }
            try last.expectEnd()
            return .setBlock(names[0], body, line: line)
        case "break":
            try e.expectEnd()
            return .breakLoop(line: line)
        case "continue":
            try e.expectEnd()
            return .continueLoop(line: line)
        case "generation":
            try e.expectEnd()
            let (body, end) = try block(until: ["endgeneration"])
            guard let (_, _, last) = end else {
                throw TemplateError.syntax(line: line, "{% generation %} is never closed by {% endgeneration %}")
            }
            try last.expectEnd()
            return .generation(body)
        default:
            if Self.unsupportedStatements.contains(word) { throw TemplateError.unsupported(line: line, "{% \(word) %}") }
            if ["endfor", "endif", "elif", "else", "endset", "endgeneration"].contains(word) {
                throw TemplateError.syntax(line: line, "unexpected {% \(word) %}")
            }
            throw TemplateError.syntax(line: line, "unknown statement {% \(word) %}")
        }
    }
}

/// Recursive descent over one tag's tokens.
struct ExpressionParser {
    private let tokens: [Token]
    private var pos = 0
    let line: Int

    init(_ source: String, line: Int) throws {
        tokens = try ExpressionLexer.tokens(source, line: line)
        self.line = line
    }

    var peek: Token { tokens[pos] }
    mutating func advance() { if pos < tokens.count - 1 { pos += 1 } }
    mutating func skip(_ t: Token) -> Bool {
        guard peek == t else { return false }
        advance()
        return true
    }

    func fail(_ m: String) -> TemplateError { .syntax(line: line, m) }

    func describe(_ t: Token) -> String {
        switch t {
        case .name(let n): return n
        case .string(let s): return Value.pythonStringRepr(s)
        case .int(let i): return String(i)
        case .double(let d): return String(d)
        case .op(let o): return o
        case .end: return "end of tag"
        }
    }

    mutating func expect(_ t: Token) throws {
        guard skip(t) else { throw fail("expected \(describe(t)), found \(describe(peek))") }
    }

    func expectEnd() throws {
        guard peek == .end else { throw fail("unexpected \(describe(peek))") }
    }

    mutating func identifier() throws -> String {
        guard case .name(let n) = peek else { throw fail("expected a name, found \(describe(peek))") }
        advance()
        return n
    }

    /// An expression, or several separated by commas (a tuple, as a list).
    mutating func tupleOrExpression() throws -> Expr {
        let first = try expression()
        guard peek == .op(",") else { return first }
        var items = [first]
        while skip(.op(",")) {
            if peek == .end { break }
            items.append(try expression())
        }
        return .list(items)
    }

    mutating func expression() throws -> Expr {
        var e = try orExpression()
        while skip(.name("if")) {
            let cond = try orExpression()
            let otherwise = skip(.name("else")) ? try expression() : nil
            e = .conditional(test: cond, then: e, otherwise: otherwise)
        }
        return e
    }

    mutating func orExpression() throws -> Expr {
        var e = try andExpression()
        while skip(.name("or")) { e = .binary("or", e, try andExpression()) }
        return e
    }

    mutating func andExpression() throws -> Expr {
        var e = try notExpression()
        while skip(.name("and")) { e = .binary("and", e, try notExpression()) }
        return e
    }

    mutating func notExpression() throws -> Expr {
        if skip(.name("not")) { return .not(try notExpression()) }
        return try comparison()
    }

    mutating func comparison() throws -> Expr {
        var e = try sum()
        while true {
            if case .op(let o) = peek, ["==", "!=", "<", ">", "<=", ">="].contains(o) {
                advance()
                e = .binary(o, e, try sum())
            } else if skip(.name("in")) {
                e = .binary("in", e, try sum())
            } else if peek == .name("not"), pos + 1 < tokens.count, tokens[pos + 1] == .name("in") {
                advance(); advance()
                e = .binary("not in", e, try sum())
            } else {
                return e
            }
        }
    }

    mutating func sum() throws -> Expr {
        var e = try concat()
        while case .op(let o) = peek, o == "+" || o == "-" {
            advance()
            e = .binary(o, e, try concat())
        }
        return e
    }

    mutating func concat() throws -> Expr {
        var e = try product()
        while skip(.op("~")) { e = .binary("~", e, try product()) }
        return e
    }

    mutating func product() throws -> Expr {
        var e = try power()
        while case .op(let o) = peek, ["*", "/", "//", "%"].contains(o) {
            advance()
            e = .binary(o, e, try power())
        }
        return e
    }

    mutating func power() throws -> Expr {
        var e = try unary(withFilter: true)
        while skip(.op("**")) { e = .binary("**", e, try unary(withFilter: true)) }
        return e
    }

    mutating func unary(withFilter: Bool) throws -> Expr {
        var e: Expr
        if skip(.op("-")) {
            e = .negate(try unary(withFilter: false))
        } else if skip(.op("+")) {
            e = try unary(withFilter: false)
        } else {
            e = try postfix(try primary())
        }
        if withFilter { e = try filters(e) }
        return e
    }

    mutating func primary() throws -> Expr {
        let t = peek
        advance()
        switch t {
        case .name(let n):
            switch n {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(n)
            }
        case .string(var s):
            while case .string(let more) = peek { s += more; advance() }   // adjacent literals concatenate
            return .literal(.string(s))
        case .int(let i): return .literal(.int(i))
        case .double(let d): return .literal(.double(d))
        case .op("("):
            if skip(.op(")")) { return .list([]) }
            let first = try expression()
            if skip(.op(")")) { return first }
            var items = [first]
            while skip(.op(",")) {
                if peek == .op(")") { break }
                items.append(try expression())
            }
            try expect(.op(")"))
            return .list(items)
        case .op("["):
            var items: [Expr] = []
            while peek != .op("]") {
                items.append(try expression())
                if !skip(.op(",")) { break }
            }
            try expect(.op("]"))
            return .list(items)
        case .op("{"):
            var pairs: [(Expr, Expr)] = []
            while peek != .op("}") {
                let k = try expression()
                try expect(.op(":"))
                pairs.append((k, try expression()))
                if !skip(.op(",")) { break }
            }
            try expect(.op("}"))
            return .dict(pairs)
        default:
            throw fail("unexpected \(describe(t))")
        }
    }

    mutating func postfix(_ base: Expr) throws -> Expr {
        var e = base
        while true {
            if skip(.op(".")) {
                if case .int(let i) = peek { advance(); e = .item(e, .literal(.int(i))); continue }
                e = .attribute(e, try identifier())
            } else if skip(.op("[")) {
                e = try subscriptExpression(e)
            } else if peek == .op("(") {
                e = try call(e)
            } else {
                return e
            }
        }
    }

    mutating func subscriptExpression(_ base: Expr) throws -> Expr {
        var parts: [Expr?] = []
        var current: Expr? = nil
        var isSlice = false
        while peek != .op("]") {
            if skip(.op(":")) {
                isSlice = true
                parts.append(current)
                current = nil
            } else {
                guard current == nil else { throw fail("expected ] or :, found \(describe(peek))") }
                current = try expression()
            }
        }
        try expect(.op("]"))
        guard isSlice else {
            guard let index = current else { throw fail("empty subscript []") }
            return .item(base, index)
        }
        parts.append(current)
        guard parts.count <= 3 else { throw fail("a slice takes at most start:stop:step") }
        while parts.count < 3 { parts.append(nil) }
        return .slice(base, parts[0], parts[1], parts[2])
    }

    mutating func arguments() throws -> ([Expr], [(String, Expr)]) {
        try expect(.op("("))
        var args: [Expr] = [], kwargs: [(String, Expr)] = []
        while peek != .op(")") {
            if case .name(let n) = peek, pos + 1 < tokens.count, tokens[pos + 1] == .op("=") {
                advance(); advance()
                kwargs.append((n, try expression()))
            } else {
                guard kwargs.isEmpty else { throw fail("a positional argument after a keyword argument") }
                args.append(try expression())
            }
            if !skip(.op(",")) { break }
        }
        try expect(.op(")"))
        return (args, kwargs)
    }

    mutating func call(_ callee: Expr) throws -> Expr {
        let (args, kwargs) = try arguments()
        return .call(callee, args, kwargs)
    }

    mutating func filters(_ base: Expr) throws -> Expr {
        var e = base
        while true {
            if skip(.op("|")) {
                var name = try identifier()
                while skip(.op(".")) { name += "." + (try identifier()) }
                var args: [Expr] = [], kwargs: [(String, Expr)] = []
                if peek == .op("(") { (args, kwargs) = try arguments() }
                e = .filter(e, name, args, kwargs)
            } else if skip(.name("is")) {
                let negated = skip(.name("not"))
                let name = try identifier()
                var args: [Expr] = []
                if peek == .op("(") {
                    args = try arguments().0
                } else if startsPrimary(peek) {
                    args = [try postfix(try primary())]
                }
                e = .test(e, name, args, negated: negated)
            } else if peek == .op("(") {
                e = try call(e)
            } else {
                return e
            }
        }
    }

    /// Whether a token can start a test's single bare argument (`x is divisibleby 3`, `x is sameas none`).
    private func startsPrimary(_ t: Token) -> Bool {
        switch t {
        case .string, .int, .double, .op("["), .op("{"): return true
        case .name(let n): return !["else", "or", "and", "if", "in", "not", "is"].contains(n)
        default: return false
        }
    }
}
