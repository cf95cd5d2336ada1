// Cutting a template into text, `{{ expression }}` and `{% statement %}` pieces, with Jinja2's whitespace rules as
// transformers configures its environment (chat_template_utils.py: trim_blocks=True, lstrip_blocks=True, and
// Jinja2's default keep_trailing_newline=False); then cutting an expression into tokens. Follows jinja2/lexer.py:
// - `{%-` / `{{-` / `{#-` strip all whitespace before the tag, `-%}` / `-}}` / `-#}` all whitespace after it;
// - otherwise, before `{%` and `{#` (not `{{`), spaces and tabs from the start of the line are removed (lstrip_blocks),
//   and after `%}` and `#}` one newline is removed (trim_blocks); `+` turns either off for that tag;
// - a single newline at the end of the template is dropped; comments `{# #}` vanish.
import Foundation

/// A piece of a template, with the line it starts on.
enum Piece {
    case text(String)
    case output(String, line: Int)
    case statement(String, line: Int)
}

enum TemplateLexer {
    static func pieces(_ template: String) throws -> [Piece] {
        var source = template.replacingOccurrences(of: "\r\n", with: "\n")
        if source.hasSuffix("\n") { source.removeLast() }
        let s = Array(source.unicodeScalars), n = s.count
        var out: [Piece] = []
        var i = 0, line = 1
        var lineStarting = true
        func isSpace(_ u: Unicode.Scalar) -> Bool { u.properties.isWhitespace }
        func string(_ r: Range<Int>) -> String { var v = String.UnicodeScalarView(); v.append(contentsOf: s[r]); return String(v) }
        func lines(_ r: Range<Int>) -> Int { s[r].reduce(0) { $0 + ($1 == "\n" ? 1 : 0) } }

        while i < n {
            // The next tag opening.
            var j = i
            while j + 1 < n && !(s[j] == "{" && (s[j + 1] == "{" || s[j + 1] == "%" || s[j + 1] == "#")) { j += 1 }
            guard j + 1 < n else {
                out.append(.text(string(i..<n)))
                break
            }
            let kind = s[j + 1]
            let mark: Unicode.Scalar? = j + 2 < n && (s[j + 2] == "-" || s[j + 2] == "+") ? s[j + 2] : nil
            var textEnd = j
            if mark == "-" {
                while textEnd > i && isSpace(s[textEnd - 1]) { textEnd -= 1 }
            } else if mark != "+" && kind != "{" {
                // lstrip_blocks: only whitespace between the line's start and the tag.
                var lpos = textEnd
                while lpos > i && s[lpos - 1] != "\n" { lpos -= 1 }
                let atLineStart = (lpos > i && s[lpos - 1] == "\n") || lineStarting
                if atLineStart && lpos < textEnd && s[lpos..<textEnd].allSatisfy({ isSpace($0) }) { textEnd = lpos }
            }
            if textEnd > i { out.append(.text(string(i..<textEnd))) }
            line += lines(i..<j)
            let tagLine = line
            // The tag's end: `}}`, `%}` or `#}` (outside string literals in expressions).
            let close: Unicode.Scalar = kind == "{" ? "}" : kind
            var k = j + 2 + (mark == nil ? 0 : 1)
            let bodyStart = k
            var quote: Unicode.Scalar? = nil
            var found = false
            while k + 1 < n {
                if let q = quote {
                    if s[k] == "\\" { k += 2; continue }
                    if s[k] == q { quote = nil }
                } else if kind != "#" && (s[k] == "'" || s[k] == "\"") {
                    quote = s[k]
                } else if s[k] == close && s[k + 1] == "}" {
                    found = true
                    break
                }
                k += 1
            }
            guard found else {
                let what = kind == "{" ? "}}" : kind == "%" ? "%}" : "#}"
                throw TemplateError.syntax(line: tagLine, "a tag opened here is never closed with \(what)")
            }
            var bodyEnd = k
            let closeMark: Unicode.Scalar? = bodyEnd > bodyStart && (s[bodyEnd - 1] == "-" || s[bodyEnd - 1] == "+")
                ? s[bodyEnd - 1] : nil
            if closeMark != nil { bodyEnd -= 1 }
            let body = string(bodyStart..<max(bodyStart, bodyEnd))
            switch kind {
            case "{": out.append(.output(body, line: tagLine))
            case "%": out.append(.statement(body, line: tagLine))
            default: break     // a comment
            }
            line += lines(j..<(k + 2))
            i = k + 2
            if closeMark == "-" {
                while i < n && isSpace(s[i]) { if s[i] == "\n" { line += 1 }; i += 1 }
            } else if closeMark != "+" && kind != "{" && i < n && s[i] == "\n" {
                i += 1
                line += 1
            }
            lineStarting = i > 0 && s[i - 1] == "\n"
        }
        return out
    }
}

// MARK: - expression tokens

enum Token: Equatable {
    case name(String)
    case string(String)
    case int(Int)
    case double(Double)
    case op(String)
    case end
}

enum ExpressionLexer {
    static let operators = ["//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "(", ")", "[", "]",
                            "{", "}", ",", ":", ".", "|", "="]

    static func tokens(_ text: String, line: Int) throws -> [Token] {
        let s = Array(text.unicodeScalars), n = s.count
        var out: [Token] = []
        var i = 0
        while i < n {
            let c = s[i]
            if c.properties.isWhitespace { i += 1; continue }
            if c == "_" || c.properties.isAlphabetic {
                var j = i
                while j < n && (s[j] == "_" || s[j].properties.isAlphabetic || ("0"..."9").contains(s[j])) { j += 1 }
                out.append(.name(String(String.UnicodeScalarView(s[i..<j]))))
                i = j
                continue
            }
            if ("0"..."9").contains(c) {
                var j = i
                while j < n && (("0"..."9").contains(s[j]) || s[j] == "_") { j += 1 }
                var isFloat = false
                if j + 1 < n && s[j] == "." && ("0"..."9").contains(s[j + 1]) {
                    isFloat = true
                    j += 1
                    while j < n && ("0"..."9").contains(s[j]) { j += 1 }
                }
                if j < n && (s[j] == "e" || s[j] == "E") {
                    var k = j + 1
                    if k < n && (s[k] == "+" || s[k] == "-") { k += 1 }
                    if k < n && ("0"..."9").contains(s[k]) {
                        isFloat = true
                        j = k
                        while j < n && ("0"..."9").contains(s[j]) { j += 1 }
                    }
                }
                let lit = String(String.UnicodeScalarView(s[i..<j])).replacingOccurrences(of: "_", with: "")
                if isFloat {
                    guard let d = Double(lit) else { throw TemplateError.syntax(line: line, "bad number \(lit)") }
                    out.append(.double(d))
                } else {
                    guard let v = Int(lit) else { throw TemplateError.syntax(line: line, "bad number \(lit)") }
                    out.append(.int(v))
                }
                i = j
                continue
            }
            if c == "'" || c == "\"" {
                var j = i + 1
                var v = String.UnicodeScalarView()
                var closed = false
                while j < n {
                    if s[j] == c { closed = true; break }
                    if s[j] == "\\" && j + 1 < n {
                        j += 1
                        switch s[j] {
                        case "n": v.append("\n")
                        case "t": v.append("\t")
                        case "r": v.append("\r")
                        case "\\": v.append("\\")
                        case "'": v.append("'")
                        case "\"": v.append("\"")
                        case "0": v.append("\0")
                        case "u", "x":
                            let width = s[j] == "u" ? 4 : 2
                            let hex = String(String.UnicodeScalarView(s[(j + 1)..<min(n, j + 1 + width)]))
                            guard hex.count == width, let code = UInt32(hex, radix: 16), let u = Unicode.Scalar(code) else {
                                throw TemplateError.syntax(line: line, "bad escape in a string literal")
                            }
                            v.append(u)
                            j += width
                        default:
                            v.append("\\")    // Python keeps unknown escapes as written
                            v.append(s[j])
                        }
                    } else {
                        v.append(s[j])
                    }
                    j += 1
                }
                guard closed else { throw TemplateError.syntax(line: line, "unterminated string literal") }
                out.append(.string(String(v)))
                i = j + 1
                continue
            }
            let rest = String(String.UnicodeScalarView(s[i..<min(n, i + 2)]))
            guard let op = operators.first(where: { rest.hasPrefix($0) }) else {
                throw TemplateError.syntax(line: line, "unexpected character \"\(c)\"")
            }
            out.append(.op(op))
            i += op.unicodeScalars.count
        }
        out.append(.end)
        return out
    }
}
