// Swift `String` equality and hashing follow Unicode canonical equivalence (";" U+003B equals U+037E, "é" equals
// "e" + U+0301), but tokenizers compare tokens scalar by scalar. Every dictionary keyed by token text goes
// through `TokenKey`, which compares and hashes the UTF-8 bytes.

struct TokenKey: Hashable, Sendable {
    let string: String

    init(_ s: String) { string = s }

    static func == (a: TokenKey, b: TokenKey) -> Bool {
        a.string.utf8.count == b.string.utf8.count && a.string.utf8.elementsEqual(b.string.utf8)
    }

    func hash(into h: inout Hasher) {
        var s = string
        s.withUTF8 { h.combine(bytes: UnsafeRawBufferPointer($0)) }
    }
}
