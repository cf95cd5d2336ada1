// A byte-level BPE tokenizer (GPT-2 / Llama-3 / SmolLM2 style) whose ids equal those of HF `tokenizers` as
// transformers configures it. Built either from a GGUF's tokenizer metadata arrays (the way transformers'
// GGUF loader builds it) or from a Hugging Face `tokenizer.json`.
import Foundation

enum DecoderKind: Sendable {
    /// HF ByteLevel decoder: each token's characters back to bytes, then UTF-8 (invalid sequences -> U+FFFD).
    case byteLevel
    /// No decoder: HF joins the tokens with spaces.
    case none
}

public final class BPETokenizer: @unchecked Sendable {
    let model: BPEModel
    let steps: [PreTokenizerStep]
    /// The last pre-tokenizer step is ByteLevel: pieces stay raw text and are spelled in bytes inside BPE.
    let byteLevelAtEnd: Bool
    let rawMatcher: AddedTokenMatcher
    let normalizedMatcher: AddedTokenMatcher
    let prefixIds: [Int32]
    let suffixIds: [Int32]
    let decoder: DecoderKind
    /// id -> content of added tokens (they may lie beyond the model's vocabulary)
    let addedById: [Int32: String]
    let addedByContent: [TokenKey: Int32]
    let specialIds: Set<Int32>
    /// The added tokens as given (for export).
    let addedTokens: [AddedToken]
    public let bosId: Int?
    public let eosId: Int?
    /// The unknown / padding token ids a GGUF names (`tokenizer.ggml.unknown_token_id` / `padding_token_id`);
    /// transformers puts them in tokenizer_config.json. nil for a tokenizer.json.
    public let unkId: Int?
    public let padId: Int?
    public let vocabularySize: Int

    private let cacheLock = NSLock()
    private var cache: [TokenKey: [Int32]] = [:]
    private static let cacheLimit = 200_000

    init(model: BPEModel, addedTokens: [AddedToken], steps: [PreTokenizerStep], prefixIds: [Int32],
         suffixIds: [Int32], decoder: DecoderKind, bosId: Int?, eosId: Int?, unkId: Int? = nil, padId: Int? = nil) {
        self.model = model
        self.addedTokens = addedTokens
        self.steps = steps
        if case .byteLevel = steps.last { byteLevelAtEnd = true } else { byteLevelAtEnd = false }
        rawMatcher = AddedTokenMatcher(addedTokens.filter { !$0.normalized })
        normalizedMatcher = AddedTokenMatcher(addedTokens.filter { $0.normalized })
        self.prefixIds = prefixIds
        self.suffixIds = suffixIds
        self.decoder = decoder
        var byId = [Int32: String](), byContent = [TokenKey: Int32](), special = Set<Int32>()
        for t in addedTokens {
            var v = String.UnicodeScalarView(); v.append(contentsOf: t.content)
            let s = String(v)
            byId[t.id] = s
            byContent[TokenKey(s)] = t.id
            if t.special { special.insert(t.id) }
        }
        addedById = byId
        addedByContent = byContent
        specialIds = special
        self.bosId = bosId
        self.eosId = eosId
        self.unkId = unkId
        self.padId = padId
        let maxAdded = addedTokens.map { Int($0.id) }.max() ?? -1
        vocabularySize = max(model.idToToken.count, maxAdded + 1)
    }

    /// Builds the tokenizer transformers builds from a GGUF whose `tokenizer.ggml.model` is "gpt2" (byte-level
    /// BPE), from the file's metadata:
    /// - vocabulary: `tokenizer.ggml.tokens`; a token not written in the byte alphabet is re-spelled as its
    ///   UTF-8 bytes in that alphabet (as transformers does);
    /// - merges: `tokenizer.ggml.merges`, each "left right";
    /// - tokenTypes: `tokenizer.ggml.token_type`; CONTROL (3) tokens become special added tokens (skipped when
    ///   not spelled in the byte alphabet), USER_DEFINED (4) ones plain added tokens; both are matched whole in
    ///   the text. The BOS/EOS (and UNK/PAD, when given) tokens are special too, as transformers makes the
    ///   tokens its tokenizer_config names.
    /// - preTokenizer: `tokenizer.ggml.pre` (see `PreTokenizer(ggufPre:)`; "smollm" is GPT-2's ByteLevel);
    /// - addBOS: `tokenizer.ggml.add_bos_token` (absent -> false for gpt2 vocabularies in transformers).
    public convenience init(vocabulary: [String], merges: [String], tokenTypes: [Int]?, preTokenizer: String,
                            bosId: Int?, eosId: Int?, addBOS: Bool, unkId: Int? = nil, padId: Int? = nil) throws {
        guard !vocabulary.isEmpty else { throw TokenizerError.invalidArgument("empty vocabulary") }
        if let tt = tokenTypes, tt.count != vocabulary.count {
            throw TokenizerError.invalidArgument("\(tt.count) token types for \(vocabulary.count) tokens")
        }
        for (name, id) in [("BOS", bosId), ("EOS", eosId), ("UNK", unkId), ("PAD", padId)] {
            if let id, id < 0 || id >= vocabulary.count {
                throw TokenizerError.invalidArgument("\(name) id \(id) outside the vocabulary of \(vocabulary.count)")
            }
        }
        if addBOS && bosId == nil { throw TokenizerError.invalidArgument("addBOS without a BOS id") }
        var vocab = [TokenKey: Int32](minimumCapacity: vocabulary.count)
        for (i, t) in vocabulary.enumerated() {
            vocab[TokenKey(ByteLevel.isSpelled(t) ? t : ByteLevel.spell(t))] = Int32(i)
        }
        var pairs = [(String, String)]()
        pairs.reserveCapacity(merges.count)
        for (i, m) in merges.enumerated() {
            let parts = splitMerge(m)
            guard parts.count == 2 else {
                throw TokenizerError.badMerge(index: i, reason: "\(m.debugDescription) is not two space-separated tokens")
            }
            pairs.append((parts[0], parts[1]))
        }
        let model = try BPEModel(vocab: vocab, merges: pairs, unkToken: nil)
        var added = [AddedToken]()
        var seen = Set<Int32>()
        func add(_ token: String, special: Bool) {
            guard let id = vocab[TokenKey(token)], !seen.contains(id) else { return }
            seen.insert(id)
            added.append(AddedToken(content: Array(token.unicodeScalars), id: id, special: special, normalized: false))
        }
        if let tt = tokenTypes {
            for (t, ty) in zip(vocabulary, tt) where ty == 3 && ByteLevel.isSpelled(t) { add(t, special: true) }
        }
        for id in [bosId, eosId, unkId, padId].compactMap({ $0 }) { add(vocabulary[id], special: true) }
        if let tt = tokenTypes {
            for (t, ty) in zip(vocabulary, tt) where ty == 4 { add(t, special: false) }
        }
        self.init(model: model, addedTokens: added, steps: try PreTokenizer(ggufPre: preTokenizer).steps(),
                  prefixIds: addBOS ? [Int32(bosId!)] : [], suffixIds: [], decoder: .byteLevel,
                  bosId: bosId, eosId: eosId, unkId: unkId, padId: padId)
    }

    // MARK: lookups

    /// The id of a token, spelled as the vocabulary spells it (byte alphabet: "Ġthe"), or of an added token.
    public func id(of token: String) -> Int? {
        if let id = addedByContent[TokenKey(token)] { return Int(id) }
        return model.vocab[TokenKey(token)].map(Int.init)
    }

    /// The vocabulary's spelling of an id, or nil when no token has it.
    public func token(of id: Int) -> String? {
        if let s = addedById[Int32(truncatingIfNeeded: id)] { return s }
        guard id >= 0 && id < model.idToToken.count else { return nil }
        return model.idToToken[id]
    }

    public func isSpecial(_ id: Int) -> Bool { specialIds.contains(Int32(truncatingIfNeeded: id)) }

    // MARK: encode

    /// Token ids of `text`. Added/special tokens in the text are always matched whole; `addSpecialTokens`
    /// only controls the post-processor's additions (BOS for Llama-3; nothing for SmolLM2 from GGUF).
    public func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int32] {
        let scalars = Array(text.unicodeScalars)
        var out = [Int32]()
        out.reserveCapacity(scalars.count / 3 + 8)
        if addSpecialTokens { out.append(contentsOf: prefixIds) }
        var segs = [Segment]()
        rawMatcher.split(scalars, 0..<scalars.count, into: &segs)
        if !normalizedMatcher.isEmpty {
            var again = [Segment]()
            for seg in segs {
                if case .text(let r) = seg { normalizedMatcher.split(scalars, r, into: &again) } else { again.append(seg) }
            }
            segs = again
        }
        for seg in segs {
            switch seg {
            case .token(let id): out.append(id)
            case .text(let r): encodeText(scalars[r], into: &out)
            }
        }
        if addSpecialTokens { out.append(contentsOf: suffixIds) }
        return out
    }

    private func encodeText(_ text: Piece, into out: inout [Int32]) {
        var pieces: [Piece] = [text]
        for (k, step) in steps.enumerated() {
            var next = [Piece]()
            next.reserveCapacity(pieces.count)
            switch step {
            case .split(let pattern, let behavior, let invert):
                for p in pieces { PreTokenizerPipeline.split(p, pattern, behavior, invert: invert, into: &next) }
            case .byteLevel(let addPrefixSpace, let useRegex):
                let last = k == steps.count - 1
                for var p in pieces {
                    if addPrefixSpace && p.first != " " { p = ArraySlice([" "] + Array(p)) }
                    var parts = [Piece]()
                    if useRegex {
                        PreTokenizerPipeline.split(p, .known(.gpt2), .isolated, invert: false, into: &parts)
                    } else {
                        parts = [p]
                    }
                    if last { next.append(contentsOf: parts); continue }
                    for part in parts {
                        var spelled = [Unicode.Scalar]()
                        for s in part { UTF8.encode(s) { spelled.append(ByteLevel.byteToScalar[Int($0)]) } }
                        next.append(spelled[...])
                    }
                }
            }
            pieces = next
        }
        for p in pieces { encodeWord(p, into: &out) }
    }

    private func encodeWord(_ piece: Piece, into out: inout [Int32]) {
        var v = String.UnicodeScalarView()
        v.append(contentsOf: piece)
        let key = TokenKey(String(v))
        cacheLock.lock()
        let hit = cache[key]
        cacheLock.unlock()
        if let hit { out.append(contentsOf: hit); return }
        var ids = [Int32]()
        model.encodeWord(piece, byteLevel: byteLevelAtEnd, into: &ids)
        cacheLock.lock()
        if cache.count >= Self.cacheLimit { cache.removeAll(keepingCapacity: true) }
        cache[key] = ids
        cacheLock.unlock()
        out.append(contentsOf: ids)
    }

    // MARK: decode

    /// Text of `ids`. Unknown ids are skipped; special tokens are kept unless `skipSpecialTokens`.
    public func decode(_ ids: [Int32], skipSpecialTokens: Bool = false) -> String {
        switch decoder {
        case .byteLevel:
            var bytes = [UInt8]()
            bytes.reserveCapacity(ids.count * 4)
            for id in ids {
                if skipSpecialTokens && specialIds.contains(id) { continue }
                guard let t = token(of: Int(id)) else { continue }
                let start = bytes.count
                var ok = true
                for s in t.unicodeScalars {
                    let b = ByteLevel.byte(of: s)
                    if b < 0 { ok = false; break }
                    bytes.append(UInt8(b))
                }
                if !ok { bytes.removeSubrange(start...); bytes.append(contentsOf: Array(t.utf8)) }
            }
            return String(decoding: bytes, as: UTF8.self)
        case .none:
            return ids.compactMap { id -> String? in
                if skipSpecialTokens && specialIds.contains(id) { return nil }
                return token(of: Int(id))
            }.joined(separator: " ")
        }
    }
}
