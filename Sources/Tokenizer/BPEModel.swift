// The BPE model: vocabulary, merge ranks, and the merge loop of HF `tokenizers` (`Word::merge_all`): the
// lowest-rank adjacent pair merges first, ties going to the leftmost, until no adjacent pair has a rule.
import Foundation

struct BPEModel: Sendable {
    var vocab: [TokenKey: Int32]
    /// id -> token (nil for ids the model does not spell, e.g. a duplicate the vocabulary dropped).
    var idToToken: [String?]
    /// (left id << 32 | right id) -> (rank << 32 | merged id)
    var merges: [UInt64: UInt64]
    /// single-scalar tokens: scalar value -> id, dense for small values
    var smallScalarIds: [Int32]
    var otherScalarIds: [UInt32: Int32]
    /// byte -> id of the byte-alphabet token spelling it (-1 when absent)
    var byteIds: [Int32]
    var unkId: Int32?
    var fuseUnk = false
    var byteFallback = false
    var ignoreMerges = false
    /// <0xXX> token ids, when byteFallback
    var fallbackByteIds: [Int32] = []

    init(vocab: [TokenKey: Int32], merges: [(String, String)], unkToken: String?) throws {
        self.vocab = vocab
        let maxId = vocab.values.max() ?? -1
        var idToToken = [String?](repeating: nil, count: Int(maxId) + 1)
        for (t, i) in vocab {
            if i < 0 { throw TokenizerError.invalidArgument("negative token id \(i) for \(t.string.debugDescription)") }
            idToToken[Int(i)] = t.string
        }
        self.idToToken = idToToken
        var m = [UInt64: UInt64](minimumCapacity: merges.count)
        for (rank, (a, b)) in merges.enumerated() {
            guard let ia = vocab[TokenKey(a)] else { throw TokenizerError.badMerge(index: rank, reason: "token \(a.debugDescription) is not in the vocabulary") }
            guard let ib = vocab[TokenKey(b)] else { throw TokenizerError.badMerge(index: rank, reason: "token \(b.debugDescription) is not in the vocabulary") }
            guard let inew = vocab[TokenKey(a + b)] else { throw TokenizerError.badMerge(index: rank, reason: "merged token \((a + b).debugDescription) is not in the vocabulary") }
            m[UInt64(UInt32(ia)) << 32 | UInt64(UInt32(ib))] = UInt64(rank) << 32 | UInt64(UInt32(inew))
        }
        self.merges = m
        var small = [Int32](repeating: -1, count: 0x800)
        var other = [UInt32: Int32]()
        for (t, i) in vocab {
            var it = t.string.unicodeScalars.makeIterator()
            guard let s = it.next(), it.next() == nil else { continue }
            if s.value < 0x800 { small[Int(s.value)] = i } else { other[s.value] = i }
        }
        self.smallScalarIds = small
        self.otherScalarIds = other
        self.byteIds = ByteLevel.byteToScalar.map { small[Int($0.value)] }
        if let u = unkToken {
            guard let id = vocab[TokenKey(u)] else { throw TokenizerError.invalidArgument("unk token \(u.debugDescription) is not in the vocabulary") }
            unkId = id
        }
    }

    mutating func enableByteFallback() {
        byteFallback = true
        fallbackByteIds = (0..<256).map { b in vocab[TokenKey(String(format: "<0x%02X", b) + ">")] ?? -1 }
    }

    @inline(__always)
    func scalarId(_ s: Unicode.Scalar) -> Int32 {
        s.value < 0x800 ? smallScalarIds[Int(s.value)] : (otherScalarIds[s.value] ?? -1)
    }

    /// Initial symbols of a word, handling symbols missing from the vocabulary as HF does: byte fallback,
    /// else the unknown token (fused if asked), else dropped.
    private func appendSymbol(_ id: Int32, scalar: Unicode.Scalar, to syms: inout [Int32]) {
        if id >= 0 { syms.append(id); return }
        if byteFallback {
            var bytes = [UInt8]()
            UTF8.encode(scalar) { bytes.append($0) }
            if bytes.allSatisfy({ fallbackByteIds[Int($0)] >= 0 }) {
                for b in bytes { syms.append(fallbackByteIds[Int(b)]) }
                return
            }
        }
        guard let unk = unkId else { return }
        if fuseUnk, let last = syms.last, last == unk { return }
        syms.append(unk)
    }

    /// BPE of one pre-token. `byteLevel`: the piece is raw text to spell in the byte alphabet first.
    func encodeWord(_ piece: Piece, byteLevel: Bool, into out: inout [Int32]) {
        var syms = [Int32]()
        syms.reserveCapacity(piece.count + 4)
        if byteLevel {
            if ignoreMerges {
                var spelled = String.UnicodeScalarView()
                for s in piece { UTF8.encode(s) { spelled.append(ByteLevel.byteToScalar[Int($0)]) } }
                if let id = vocab[TokenKey(String(spelled))] { out.append(id); return }
            }
            for s in piece {
                if s.value < 0x80 {
                    appendSymbol(byteIds[Int(s.value)], scalar: ByteLevel.byteToScalar[Int(s.value)], to: &syms)
                } else {
                    UTF8.encode(s) { b in
                        appendSymbol(byteIds[Int(b)], scalar: ByteLevel.byteToScalar[Int(b)], to: &syms)
                    }
                }
            }
        } else {
            if ignoreMerges {
                var v = String.UnicodeScalarView(); v.append(contentsOf: piece)
                if let id = vocab[TokenKey(String(v))] { out.append(id); return }
            }
            for s in piece { appendSymbol(scalarId(s), scalar: s, to: &syms) }
        }
        mergeAll(&syms)
        out.append(contentsOf: syms)
    }

    @inline(__always)
    private func rule(_ a: Int32, _ b: Int32) -> UInt64? {
        merges[UInt64(UInt32(a)) << 32 | UInt64(UInt32(b))]
    }

    /// Applies merges in rank order (ties: leftmost), like HF's priority-queue loop.
    func mergeAll(_ syms: inout [Int32]) {
        let n = syms.count
        if n < 2 { return }
        if n == 2 {
            if let r = rule(syms[0], syms[1]) { syms = [Int32(truncatingIfNeeded: r & 0xFFFF_FFFF)] }
            return
        }
        var next = [Int](0..<n).map { $0 + 1 }; next[n - 1] = -1
        var prev = [Int](0..<n).map { $0 - 1 }
        var alive = [Bool](repeating: true, count: n)
        var heap = MinHeap()
        for i in 0..<(n - 1) {
            if let r = rule(syms[i], syms[i + 1]) { heap.push(key: (r >> 32) << 32 | UInt64(i), value: Int32(truncatingIfNeeded: r & 0xFFFF_FFFF)) }
        }
        while let (key, newId) = heap.pop() {
            let p = Int(key & 0xFFFF_FFFF)
            guard alive[p] else { continue }
            let q = next[p]
            guard q >= 0, let r = rule(syms[p], syms[q]), Int32(truncatingIfNeeded: r & 0xFFFF_FFFF) == newId else { continue }
            syms[p] = newId
            alive[q] = false
            let nq = next[q]
            next[p] = nq
            if nq >= 0 { prev[nq] = p }
            let pp = prev[p]
            if pp >= 0, let r2 = rule(syms[pp], syms[p]) {
                heap.push(key: (r2 >> 32) << 32 | UInt64(pp), value: Int32(truncatingIfNeeded: r2 & 0xFFFF_FFFF))
            }
            if nq >= 0, let r3 = rule(syms[p], syms[nq]) {
                heap.push(key: (r3 >> 32) << 32 | UInt64(p), value: Int32(truncatingIfNeeded: r3 & 0xFFFF_FFFF))
            }
        }
        var out = [Int32]()
        out.reserveCapacity(n)
        var i = 0
        while i >= 0 { out.append(syms[i]); i = next[i] }
        syms = out
    }
}

/// A merge rule "left right" split at its spaces, scalar by scalar (splitting on `Character` would miss a space
/// followed by a combining mark).
func splitMerge(_ s: String) -> [String] {
    s.unicodeScalars.split(separator: " ", omittingEmptySubsequences: false).map { String(String.UnicodeScalarView($0)) }
}

/// A binary min-heap of (key, value), ordered by key.
struct MinHeap {
    private var keys = [UInt64]()
    private var values = [Int32]()

    mutating func push(key: UInt64, value: Int32) {
        keys.append(key); values.append(value)
        var i = keys.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if keys[parent] <= keys[i] { break }
            keys.swapAt(parent, i); values.swapAt(parent, i)
            i = parent
        }
    }

    mutating func pop() -> (UInt64, Int32)? {
        guard !keys.isEmpty else { return nil }
        let top = (keys[0], values[0])
        let lastK = keys.removeLast(), lastV = values.removeLast()
        if !keys.isEmpty {
            keys[0] = lastK; values[0] = lastV
            var i = 0
            let n = keys.count
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < n && keys[l] < keys[m] { m = l }
                if r < n && keys[r] < keys[m] { m = r }
                if m == i { break }
                keys.swapAt(m, i); values.swapAt(m, i)
                i = m
            }
        }
        return top
    }
}
