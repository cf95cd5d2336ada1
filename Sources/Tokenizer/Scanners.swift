// Hand-written scanners for the pre-tokenizer regexes of GPT-2 and Llama-3 (and Qwen2, which is Llama-3 with
// single digits). They reproduce, match for match, what HF `tokenizers` (Oniguruma) finds with
//   GPT-2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   Llama-3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*
//            |\s*[\r\n]+|\s+(?!\S)|\s+
// Character classes, checked against Oniguruma over every code point:
//   \s    = Unicode White_Space            = Swift `properties.isWhitespace`
//   \p{L} = general categories Lu Ll Lt Lm Lo, \p{N} = Nd Nl No, as of Unicode 16.0 (the tables `tokenizers`
//           0.23 ships). Swift's tables are newer, so scalars assigned after 16.0 count as "other" here.

enum CharClass: UInt8 {
    case other = 0, letter = 1, number = 2, space = 3
}

enum Classifier {
    /// Classes of the first 0x3000 scalars (Latin, Greek, Cyrillic, CJK punctuation...), computed once.
    static let table: [CharClass] = (0..<0x3000).map { v in
        guard let s = Unicode.Scalar(UInt32(v)) else { return .other }
        return slowClass(s)
    }

    static func slowClass(_ s: Unicode.Scalar) -> CharClass {
        let p = s.properties
        if p.isWhitespace { return .space }
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return isPre17(p) ? .letter : .other
        case .decimalNumber, .letterNumber, .otherNumber:
            return isPre17(p) ? .number : .other
        default:
            return .other
        }
    }

    @inline(__always)
    private static func isPre17(_ p: Unicode.Scalar.Properties) -> Bool {
        guard let age = p.age else { return false }
        return age.major < 17
    }

    @inline(__always)
    static func classOf(_ s: Unicode.Scalar) -> CharClass {
        let v = Int(s.value)
        return v < 0x3000 ? table[v] : slowClass(s)
    }

    static func classes<C: Collection>(_ scalars: C) -> [CharClass] where C.Element == Unicode.Scalar {
        var out = [CharClass]()
        out.reserveCapacity(scalars.count)
        for s in scalars { out.append(classOf(s)) }
        return out
    }
}

/// The regexes with a hand-written scanner.
enum KnownPattern: Sendable, Equatable {
    case gpt2
    case llama3(maxDigits: Int)   // 3 for Llama-3, 1 for Qwen2

    static let gpt2Regex = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    init?(regex: String) {
        switch regex {
        case Self.gpt2Regex: self = .gpt2
        case Self.llama3Regex: self = .llama3(maxDigits: 3)
        case Self.qwen2Regex: self = .llama3(maxDigits: 1)
        default: return nil
        }
    }

    /// Calls `emit(start, end)` for each match, left to right, over `s[lo..<hi]`. The matches tile the range.
    func scan(_ s: UnsafeBufferPointer<Unicode.Scalar>, _ cls: UnsafeBufferPointer<CharClass>, _ lo: Int, _ hi: Int,
              _ emit: (Int, Int) -> Void) {
        switch self {
        case .gpt2: Self.scanGPT2(s, cls, lo, hi, emit)
        case .llama3(let maxDigits): Self.scanLlama3(s, cls, lo, hi, maxDigits, emit)
        }
    }

    private static let apostrophe: Unicode.Scalar = "'"
    private static let space: Unicode.Scalar = " "

    /// Length of the contraction at `i` ('s 't 're 've 'm 'll 'd), or 0. `s[i]` is an apostrophe.
    @inline(__always)
    private static func contraction(_ s: UnsafeBufferPointer<Unicode.Scalar>, _ i: Int, _ hi: Int,
                                     caseInsensitive: Bool) -> Int {
        guard i + 1 < hi else { return 0 }
        func lower(_ v: UInt32) -> UInt32 { caseInsensitive && v >= 65 && v <= 90 ? v + 32 : v }
        let a = lower(s[i + 1].value)
        switch a {
        case 0x73, 0x74, 0x6D, 0x64: return 2  // s t m d
        case 0x72, 0x76:  // r v -> 're 've
            return i + 2 < hi && lower(s[i + 2].value) == 0x65 ? 3 : 0
        case 0x6C:  // l -> 'll
            return i + 2 < hi && lower(s[i + 2].value) == 0x6C ? 3 : 0
        default: return 0
        }
    }

    @inline(__always)
    private static func run(_ cls: UnsafeBufferPointer<CharClass>, _ c: CharClass, from i: Int, _ hi: Int) -> Int {
        var j = i
        while j < hi && cls[j] == c { j += 1 }
        return j
    }

    private static func scanGPT2(_ s: UnsafeBufferPointer<Unicode.Scalar>, _ cls: UnsafeBufferPointer<CharClass>,
                                 _ lo: Int, _ hi: Int, _ emit: (Int, Int) -> Void) {
        var i = lo
        while i < hi {
            let c = s[i]
            if c == apostrophe {
                let n = contraction(s, i, hi, caseInsensitive: false)
                if n > 0 { emit(i, i + n); i += n; continue }
            }
            // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
            let j = (c == space && i + 1 < hi && cls[i + 1] != .space) ? i + 1 : i
            let k = cls[j]
            if k != .space {
                let end = run(cls, k, from: j, hi)
                emit(i, end); i = end; continue
            }
            // `\s+(?!\S)`, then `\s+`
            let end = run(cls, .space, from: i, hi)
            if end == hi || end - i == 1 { emit(i, end); i = end } else { emit(i, end - 1); i = end - 1 }
        }
    }

    @inline(__always)
    private static func isCRLF(_ c: Unicode.Scalar) -> Bool { c.value == 10 || c.value == 13 }

    private static func scanLlama3(_ s: UnsafeBufferPointer<Unicode.Scalar>, _ cls: UnsafeBufferPointer<CharClass>,
                                   _ lo: Int, _ hi: Int, _ maxDigits: Int, _ emit: (Int, Int) -> Void) {
        var i = lo
        while i < hi {
            let c = s[i]
            let k = cls[i]
            // (?i:'s|'t|'re|'ve|'m|'ll|'d)
            if c == apostrophe {
                let n = contraction(s, i, hi, caseInsensitive: true)
                if n > 0 { emit(i, i + n); i += n; continue }
            }
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if k == .letter {
                let end = run(cls, .letter, from: i, hi)
                emit(i, end); i = end; continue
            }
            if k != .number && !isCRLF(c) && i + 1 < hi && cls[i + 1] == .letter {
                let end = run(cls, .letter, from: i + 1, hi)
                emit(i, end); i = end; continue
            }
            // \p{N}{1,maxDigits}
            if k == .number {
                var end = i + 1
                while end < hi && end - i < maxDigits && cls[end] == .number { end += 1 }
                emit(i, end); i = end; continue
            }
            // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
            let j = (c == space && i + 1 < hi) ? i + 1 : i
            if cls[j] == .other {
                var end = run(cls, .other, from: j, hi)
                while end < hi && isCRLF(s[end]) { end += 1 }
                emit(i, end); i = end; continue
            }
            // here s[i] is whitespace. `\s*[\r\n]+`: up to the last CR/LF of the whitespace run
            let end = run(cls, .space, from: i, hi)
            var last = end - 1
            while last >= i && !isCRLF(s[last]) { last -= 1 }
            if last >= i { emit(i, last + 1); i = last + 1; continue }
            // `\s+(?!\S)`, then `\s+`
            if end == hi || end - i == 1 { emit(i, end); i = end } else { emit(i, end - 1); i = end - 1 }
        }
    }
}
