// A small JSON parser for tokenizer.json. Hand-written because (1) Linux JSONSerialization drops a raw U+FEFF that
// follows a quote, (2) JSONDecoder into a generic value is slow (~8 s for a 3.5 MB file), and (3) both build Swift
// dictionaries whose String keys merge canonically-equivalent tokens. Objects here keep their members in order,
// keys exactly as written.

enum JSONValue: Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    static func parse<D: Collection>(_ data: D) throws -> JSONValue where D.Element == UInt8 {
        let bytes = Array(data)
        return try bytes.withUnsafeBufferPointer { buf in
            var p = JSONParser(buf: buf)
            p.skipSpace()
            let v = try p.value(depth: 0)
            p.skipSpace()
            guard p.pos == buf.count else { throw p.error("trailing characters") }
            return v
        }
    }

    /// The first member named `key` of an object.
    subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        let k = TokenKey(key)
        return members.first { TokenKey($0.0) == k }?.1
    }
    var isNull: Bool { if case .null = self { return true } else { return false } }
    var string: String? { if case .string(let s) = self { return s } else { return nil } }
    var array: [JSONValue]? { if case .array(let a) = self { return a } else { return nil } }
    var members: [(String, JSONValue)]? { if case .object(let o) = self { return o } else { return nil } }
    var number: Double? { if case .number(let n) = self { return n } else { return nil } }
    var int32: Int32? { number.flatMap { Int32(exactly: $0) } }
    func bool(default d: Bool = false) -> Bool {
        if case .bool(let b) = self { return b }
        return d
    }
}

extension Optional where Wrapped == JSONValue {
    func bool(default d: Bool = false) -> Bool { self?.bool(default: d) ?? d }
}

private struct JSONParser {
    let buf: UnsafeBufferPointer<UInt8>
    var pos = 0

    func error(_ what: String) -> TokenizerError {
        TokenizerError.malformed("not JSON (\(what) at byte \(pos))")
    }

    mutating func skipSpace() {
        while pos < buf.count, buf[pos] == 0x20 || buf[pos] == 0x0A || buf[pos] == 0x0D || buf[pos] == 0x09 { pos += 1 }
    }

    mutating func literal(_ word: StaticString, _ v: JSONValue) throws -> JSONValue {
        let n = word.utf8CodeUnitCount
        guard pos + n <= buf.count else { throw error("unexpected end") }
        for i in 0..<n where buf[pos + i] != word.utf8Start[i] { throw error("unexpected character") }
        pos += n
        return v
    }

    mutating func value(depth: Int) throws -> JSONValue {
        guard depth < 512 else { throw error("nesting too deep") }
        guard pos < buf.count else { throw error("unexpected end") }
        switch buf[pos] {
        case UInt8(ascii: "{"):
            pos += 1
            var members = [(String, JSONValue)]()
            skipSpace()
            if pos < buf.count && buf[pos] == UInt8(ascii: "}") { pos += 1; return .object(members) }
            while true {
                skipSpace()
                guard pos < buf.count, buf[pos] == UInt8(ascii: "\"") else { throw error("expected a key") }
                let k = try string()
                skipSpace()
                guard pos < buf.count, buf[pos] == UInt8(ascii: ":") else { throw error("expected ':'") }
                pos += 1
                skipSpace()
                members.append((k, try value(depth: depth + 1)))
                skipSpace()
                guard pos < buf.count else { throw error("unexpected end") }
                if buf[pos] == UInt8(ascii: ",") { pos += 1; continue }
                if buf[pos] == UInt8(ascii: "}") { pos += 1; return .object(members) }
                throw error("expected ',' or '}'")
            }
        case UInt8(ascii: "["):
            pos += 1
            var items = [JSONValue]()
            skipSpace()
            if pos < buf.count && buf[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
            while true {
                skipSpace()
                items.append(try value(depth: depth + 1))
                skipSpace()
                guard pos < buf.count else { throw error("unexpected end") }
                if buf[pos] == UInt8(ascii: ",") { pos += 1; continue }
                if buf[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
                throw error("expected ',' or ']'")
            }
        case UInt8(ascii: "\""):
            return .string(try string())
        case UInt8(ascii: "t"): return try literal("true", .bool(true))
        case UInt8(ascii: "f"): return try literal("false", .bool(false))
        case UInt8(ascii: "n"): return try literal("null", .null)
        default:
            return try number()
        }
    }

    mutating func number() throws -> JSONValue {
        let start = pos
        while pos < buf.count {
            let c = buf[pos]
            if (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: "-") || c == UInt8(ascii: "+") || c == UInt8(ascii: ".")
                || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") { pos += 1 } else { break }
        }
        guard pos > start else { throw error("unexpected character") }
        // fast path: plain integers
        var v = 0, i = start, neg = false
        if buf[i] == UInt8(ascii: "-") { neg = true; i += 1 }
        var plain = i < pos && pos - i <= 15
        while plain && i < pos {
            let c = buf[i]
            if c >= 0x30 && c <= 0x39 { v = v * 10 + Int(c - 0x30); i += 1 } else { plain = false }
        }
        if plain { return .number(Double(neg ? -v : v)) }
        let text = String(decoding: UnsafeBufferPointer(rebasing: buf[start..<pos]), as: UTF8.self)
        guard let d = Double(text) else { throw error("bad number") }
        return .number(d)
    }

    mutating func hex4() throws -> UInt32 {
        guard pos + 4 <= buf.count else { throw error("bad \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = buf[pos]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: throw error("bad \\u escape")
            }
            v = v << 4 | d
            pos += 1
        }
        return v
    }

    mutating func string() throws -> String {
        pos += 1  // opening quote
        var out = [UInt8]()
        var runStart = pos
        while true {
            guard pos < buf.count else { throw error("unterminated string") }
            let c = buf[pos]
            if c == UInt8(ascii: "\"") {
                out.append(contentsOf: UnsafeBufferPointer(rebasing: buf[runStart..<pos]))
                pos += 1
                break
            }
            if c < 0x20 { throw error("control character in string") }
            if c != UInt8(ascii: "\\") { pos += 1; continue }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: buf[runStart..<pos]))
            pos += 1
            guard pos < buf.count else { throw error("unterminated string") }
            let e = buf[pos]
            pos += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var u = try hex4()
                if u >= 0xD800 && u < 0xDC00, pos + 6 <= buf.count, buf[pos] == UInt8(ascii: "\\"),
                   buf[pos + 1] == UInt8(ascii: "u") {
                    let save = pos
                    pos += 2
                    let lo = try hex4()
                    if lo >= 0xDC00 && lo < 0xE000 { u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00) } else { pos = save }
                }
                // a lone surrogate becomes U+FFFD, as Rust's serde_json would reject/replace it
                let scalar = Unicode.Scalar(u) ?? "\u{FFFD}"
                UTF8.encode(scalar) { out.append($0) }
            default:
                throw error("bad escape")
            }
            runStart = pos
        }
        return String(decoding: out, as: UTF8.self)
    }
}
