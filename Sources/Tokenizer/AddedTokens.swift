// Added tokens (`<|endoftext|>`, `<|im_start|>`...) are found in the raw text before pre-tokenization and
// become one id each, as HF `AddedVocabulary` does: leftmost-longest matching, first the tokens marked
// `normalized: false`, then -- inside what is left -- those marked `normalized: true` (there is no normalizer
// here, so both see the same text).

struct AddedToken: Sendable {
    var content: [Unicode.Scalar]
    var id: Int32
    var special: Bool
    var normalized: Bool
    var lstrip = false
    var rstrip = false
    var singleWord = false
}

/// A text segment after added-token matching: either plain text to pre-tokenize, or an added token's id.
enum Segment {
    case text(Range<Int>)
    case token(Int32)
}

struct AddedTokenMatcher: Sendable {
    /// Tokens by first scalar, longest first.
    private var byFirst: [UInt32: [AddedToken]] = [:]
    private var firstScalars = Set<UInt32>()
    var isEmpty: Bool { byFirst.isEmpty }

    init(_ tokens: [AddedToken]) {
        for t in tokens where !t.content.isEmpty {
            byFirst[t.content[0].value, default: []].append(t)
            firstScalars.insert(t.content[0].value)
        }
        for k in byFirst.keys { byFirst[k]!.sort { $0.content.count > $1.content.count } }
    }

    private static func isWordChar(_ s: Unicode.Scalar) -> Bool {
        let c = Classifier.classOf(s)
        return c == .letter || c == .number || s == "_"
    }

    /// Splits `s[range]` into text and token segments, appending to `out`.
    func split(_ s: [Unicode.Scalar], _ range: Range<Int>, into out: inout [Segment]) {
        if isEmpty { out.append(.text(range)); return }
        var start = range.lowerBound  // start of the pending text
        var i = range.lowerBound
        let hi = range.upperBound
        while i < hi {
            guard firstScalars.contains(s[i].value), let cands = byFirst[s[i].value] else { i += 1; continue }
            var found: AddedToken?
            for t in cands where i + t.content.count <= hi {
                var ok = true
                for k in 1..<t.content.count where s[i + k] != t.content[k] { ok = false; break }
                if !ok { continue }
                if t.singleWord {
                    let before = i > range.lowerBound && Self.isWordChar(s[i - 1])
                    let after = i + t.content.count < hi && Self.isWordChar(s[i + t.content.count])
                    if before || after { continue }
                }
                found = t
                break
            }
            guard let t = found else { i += 1; continue }
            var a = i, b = i + t.content.count
            if t.lstrip { while a > start && s[a - 1].properties.isWhitespace { a -= 1 } }
            if t.rstrip { while b < hi && s[b].properties.isWhitespace { b += 1 } }
            if a > start { out.append(.text(start..<a)) }
            out.append(.token(t.id))
            start = b
            i = b
        }
        if start < hi { out.append(.text(start..<hi)) }
    }
}
