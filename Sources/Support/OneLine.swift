// Error messages are one line that starts with the file at fault. Names inside them (metadata keys, tensor
// names, JSON keys) come from untrusted files, so control characters are escaped and the message is capped.
import Foundation

/// `text` with line breaks and other control characters escaped (`\n`, `\u{1B}`) and, when longer than
/// `limit` characters (after escaping), cut there with "… (N more characters)".
public func oneLineMessage(_ text: String, limit: Int = 1000) -> String {
    var out = ""
    var count = 0, dropped = 0
    for u in text.unicodeScalars {
        let piece: String
        switch u {
        case "\n": piece = "\\n"
        case "\r": piece = "\\r"
        case "\t": piece = "\\t"
        default:
            if u.value < 0x20 || u.value == 0x7F || u.value == 0x85 || u.value == 0x2028 || u.value == 0x2029 {
                piece = "\\u{" + String(u.value, radix: 16, uppercase: true) + "}"
            } else {
                piece = String(u)
            }
        }
        if dropped > 0 || count + piece.unicodeScalars.count > limit { dropped += 1; continue }
        out += piece
        count += piece.unicodeScalars.count
    }
    if dropped > 0 { out += "… (\(dropped) more characters)" }
    return out
}
