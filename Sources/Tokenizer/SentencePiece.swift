// SentencePiece-style tokenization (LLaMA-1/2, TinyLlama, Mistral):
// - the normalizers of a tokenizer.json that such tokenizers use (Prepend "▁", Replace " " -> "▁"), applied to
//   each text segment between added tokens, as HF `tokenizers` does;
// - the Metaspace pre-tokenizer (" " -> "▁", prepend_scheme first/always/never, split);
// - the decoders (Replace, ByteFallback, Fuse, Strip, Metaspace) HF chains for them;
// - `SPMModel`: llama.cpp's `llm_tokenizer_spm` (score-ordered bigram merging over the vocabulary, unknown
//   characters as `<0xNN>` byte tokens) for a GGUF whose `tokenizer.ggml.model` is "llama".
import Foundation

/// One normalizer of a tokenizer.json.
enum NormalizerStep: Sendable {
    /// HF `Prepend`: puts the string in front of a non-empty segment.
    case prepend([Unicode.Scalar])
    /// HF `Replace` with a String pattern: every non-overlapping occurrence, left to right.
    case replace([Unicode.Scalar], [Unicode.Scalar])

    static func apply(_ steps: [NormalizerStep], _ text: ArraySlice<Unicode.Scalar>) -> [Unicode.Scalar] {
        var s = Array(text)
        for step in steps {
            switch step {
            case .prepend(let p):
                if !s.isEmpty { s = p + s }
            case .replace(let pat, let content):
                s = replaceAll(s[...], pat, content)
            }
        }
        return s
    }
}

func replaceAll(_ s: ArraySlice<Unicode.Scalar>, _ pat: [Unicode.Scalar], _ content: [Unicode.Scalar]) -> [Unicode.Scalar] {
    guard let first = pat.first else { return Array(s) }
    var out = [Unicode.Scalar]()
    out.reserveCapacity(s.count + 8)
    var i = s.startIndex
    while i < s.endIndex {
        if s[i] == first && i + pat.count <= s.endIndex && (pat.count == 1 || s[i..<(i + pat.count)].elementsEqual(pat)) {
            out.append(contentsOf: content)
            i += pat.count
        } else {
            out.append(s[i]); i += 1
        }
    }
    return out
}

/// HF Metaspace `prepend_scheme`.
enum PrependScheme: String, Sendable {
    case first, always, never
}

/// One decoder of a tokenizer.json's decoder chain (HF `decode_chain` semantics: tokens in, tokens out).
enum DecodeStep: Sendable {
    case replace(String, String)
    case byteFallback
    case fuse
    case strip(Character, start: Int, stop: Int)
    case metaspace(Character, PrependScheme)
    case byteLevel

    func apply(_ tokens: [String]) -> [String] {
        switch self {
        case .replace(let a, let b):
            return tokens.map { $0.replacingOccurrences(of: a, with: b) }
        case .fuse:
            return [tokens.joined()]
        case .strip(let c, let start, let stop):
            return tokens.map { t in
                var chars = Array(t)
                var a = 0
                while a < start && a < chars.count && chars[a] == c { a += 1 }
                chars.removeFirst(a)
                var b = 0
                while b < stop && !chars.isEmpty && chars[chars.count - 1] == c { chars.removeLast(); b += 1 }
                return String(chars)
            }
        case .metaspace(let r, let scheme):
            return tokens.enumerated().map { i, t in
                var s = ""
                for ch in t {
                    if ch == r { if !(i == 0 && scheme != .never) { s.append(" ") } } else { s.append(ch) }
                }
                return s
            }
        case .byteFallback:
            var out = [String](), pending = [UInt8]()
            func flush() {
                guard !pending.isEmpty else { return }
                if let s = String(validating: pending, as: UTF8.self) { out.append(s) }
                else { out.append(contentsOf: Array(repeating: "\u{FFFD}", count: pending.count)) }
                pending.removeAll()
            }
            for t in tokens {
                if let b = byteToken(t) { pending.append(b) } else { flush(); out.append(t) }
            }
            flush()
            return out
        case .byteLevel:
            return tokens.map { t in
                var bytes = [UInt8]()
                for s in t.unicodeScalars {
                    let b = ByteLevel.byte(of: s)
                    if b < 0 { bytes.append(contentsOf: Array(String(s).utf8)) } else { bytes.append(UInt8(b)) }
                }
                return String(decoding: bytes, as: UTF8.self)
            }
        }
    }
}

/// The byte of a `<0xNN>` token (exactly six characters, two hex digits), else nil.
func byteToken(_ t: String) -> UInt8? {
    let u = Array(t.utf8)
    guard u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E else { return nil }
    return UInt8(String(decoding: u[3..<5], as: UTF8.self), radix: 16)
}

/// llama.cpp's SentencePiece tokenizer (`llm_tokenizer_spm`): start from the UTF-8 characters, repeatedly merge
/// the adjacent pair whose concatenation is the vocabulary token of highest score (ties: leftmost), then emit
/// each symbol's token, or its bytes as `<0xNN>` tokens when the symbol is not a token.
struct SPMModel: Sendable {
    /// token text -> id (a repeated text keeps its last id, as llama.cpp's `token_to_id`)
    let ids: [TokenKey: Int32]
    let scores: [Float]
    /// the vocabulary as given (`tokenizer.ggml.tokens`, by id)
    let tokens: [String]
    /// byte -> id of `<0xNN>` (else of the one-byte token), all present
    let byteIds: [Int32]

    init(tokens: [String], scores: [Float]) throws {
        guard scores.count == tokens.count else {
            throw TokenizerError.invalidArgument("tokenizer.ggml.scores has \(scores.count) entries for \(tokens.count) tokens")
        }
        var m = [TokenKey: Int32](minimumCapacity: tokens.count)
        for (i, t) in tokens.enumerated() { m[TokenKey(t)] = Int32(i) }
        var b = [Int32]()
        for v in 0..<256 {
            if let id = m[TokenKey(String(format: "<0x%02X>", v))] { b.append(id); continue }
            if v < 0x80, let id = m[TokenKey(String(UnicodeScalar(UInt8(v))))] { b.append(id); continue }
            throw TokenizerError.unsupported(String(format: "SentencePiece vocabulary without the byte token <0x%02X> (tokenizer.ggml.tokens)", v))
        }
        ids = m
        self.scores = scores
        self.tokens = tokens
        byteIds = b
    }

    private struct Bigram { var score: Float; var left: Int; var right: Int; var size: Int }

    /// true when a should come out of the queue before b (llama.cpp's comparator: higher score, then lower left)
    @inline(__always)
    private static func before(_ a: Bigram, _ b: Bigram) -> Bool {
        a.score > b.score || (a.score == b.score && a.left < b.left)
    }

    func encode(_ piece: ArraySlice<Unicode.Scalar>, into out: inout [Int32]) {
        let chars = Array(piece)
        let n = chars.count
        guard n > 0 else { return }
        var start = [Int](0..<n), len = [Int](repeating: 1, count: n)
        var prev = (0..<n).map { $0 - 1 }, next = (0..<n).map { $0 + 1 }
        next[n - 1] = -1
        var heap = [Bigram]()

        func lookup(_ a: Int, _ l: Int) -> Int32? {
            var v = String.UnicodeScalarView()
            v.append(contentsOf: chars[a..<(a + l)])
            return ids[TokenKey(String(v))]
        }
        func push(_ g: Bigram) {
            heap.append(g)
            var i = heap.count - 1
            while i > 0 {
                let p = (i - 1) / 2
                if !Self.before(heap[i], heap[p]) { break }
                heap.swapAt(i, p); i = p
            }
        }
        func pop() -> Bigram? {
            guard let top = heap.first else { return nil }
            let last = heap.removeLast()
            if !heap.isEmpty {
                heap[0] = last
                var i = 0
                while true {
                    let l = 2 * i + 1, r = l + 1
                    var m = i
                    if l < heap.count && Self.before(heap[l], heap[m]) { m = l }
                    if r < heap.count && Self.before(heap[r], heap[m]) { m = r }
                    if m == i { break }
                    heap.swapAt(i, m); i = m
                }
            }
            return top
        }
        func tryAdd(_ l: Int, _ r: Int) {
            guard l >= 0, r >= 0 else { return }
            let size = len[l] + len[r]
            guard let id = lookup(start[l], size), Int(id) < scores.count else { return }
            push(Bigram(score: scores[Int(id)], left: l, right: r, size: size))
        }

        for i in 1..<max(n, 1) { tryAdd(i - 1, i) }
        while let g = pop() {
            if len[g.left] == 0 || len[g.right] == 0 || len[g.left] + len[g.right] != g.size { continue }
            len[g.left] += len[g.right]
            len[g.right] = 0
            next[g.left] = next[g.right]
            if next[g.right] >= 0 { prev[next[g.right]] = g.left }
            tryAdd(prev[g.left], g.left)
            tryAdd(g.left, next[g.left])
        }
        var i = 0
        while i != -1 {
            if let id = lookup(start[i], len[i]) {
                out.append(id)
            } else {
                // only a single character that is not a token can get here (every merge forms a token)
                for s in chars[start[i]..<(start[i] + len[i])] { UTF8.encode(s) { out.append(byteIds[Int($0)]) } }
            }
            i = next[i]
        }
    }
}
