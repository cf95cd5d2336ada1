// One JSON string escaper for the writers that lay out JSON text byte by byte (the safetensors header, Jinja's
// `tojson` in chat templates): '"', '\\' and control characters escaped, everything else kept as UTF-8 — what
// serde_json writes and what Python's json.dumps(..., ensure_ascii=False) writes (lower-case \u00XX for the other
// control characters), so both files and rendered prompts match the reference byte for byte.
import Foundation

/// `s` as a JSON string literal, quotes included.
public func jsonString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case "\u{08}": out += "\\b"
        case "\u{0C}": out += "\\f"
        default:
            if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
        }
    }
    return out + "\""
}
