// GPT-2's byte <-> unicode table: every byte gets a printable character so byte-level tokens can be stored as
// text. Printable Latin-1 bytes ('!'...'~', '¡'...'¬', '®'...'ÿ') map to themselves; the other 68 bytes map, in
// byte order, to U+0100, U+0101, ... This is `bytes_to_unicode()` of GPT-2 / HF `tokenizers` ByteLevel.

enum ByteLevel {
    /// byte -> the scalar that spells it.
    static let byteToScalar: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            if (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b) {
                table[b] = Unicode.Scalar(UInt32(b))!
            } else {
                table[b] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return table
    }()

    /// scalar value -> byte, for scalar values below 324 (the table's range); -1 where the scalar spells no byte.
    static let scalarToByte: [Int16] = {
        var table = [Int16](repeating: -1, count: 324)
        for (b, s) in byteToScalar.enumerated() { table[Int(s.value)] = Int16(b) }
        return table
    }()

    @inline(__always)
    static func byte(of scalar: Unicode.Scalar) -> Int16 {
        let v = Int(scalar.value)
        return v < scalarToByte.count ? scalarToByte[v] : -1
    }

    /// True when every scalar of `token` spells a byte (the token is written in the byte alphabet).
    static func isSpelled(_ token: String) -> Bool {
        token.unicodeScalars.allSatisfy { byte(of: $0) >= 0 }
    }

    /// The byte-alphabet spelling of arbitrary text: its UTF-8 bytes, each as its table character.
    static func spell(_ text: String) -> String {
        var s = String.UnicodeScalarView()
        for b in text.utf8 { s.append(byteToScalar[Int(b)]) }
        return String(s)
    }
}
