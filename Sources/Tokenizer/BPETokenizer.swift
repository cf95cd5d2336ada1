// A byte-level BPE tokenizer (GPT-2 / Llama-3 / SmolLM2 style) whose ids equal those of HF `tokenizers` as
// transformers configures it. Built either from a GGUF's tokenizer metadata arrays (the way transformers'
// GGUF loader builds it) or from a Hugging Face `tokenizer.json`.
import Foundation

enum DecoderKind: Sendable {
    /// HF ByteLevel decoder: each token's characters back to bytes, then UTF-8 (invalid sequences -> U+FFFD).
    case byteLevel
    /// No decoder: HF joins the tokens with spaces.
    case none
    /// A chain of decoders (SentencePiece-style: Replace, ByteFallback, Fuse, Strip; or Metaspace).
    case chain([DecodeStep])
}

public final class BPETokenizer: @unchecked Sendable {
    let model: BPEModel
    let steps: [PreTokenizerStep]
    /// tokenizer.json normalizers (SentencePiece-style legacy form), applied to each segment between added tokens
    let normalizer: [NormalizerStep]
    /// Score-based SentencePiece merging (GGUF "llama" vocabularies) instead of the merge-list BPE model.
    let spm: SPMModel?
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
         suffixIds: [Int32], decoder: DecoderKind, bosId: Int?, eosId: Int?, unkId: Int? = nil, padId: Int? = nil,
         normalizer: [NormalizerStep] = [], spm: SPMModel? = nil) {
        self.model = model
        self.normalizer = normalizer
        self.spm = spm
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

    /// Builds the tokenizer for a GGUF whose `tokenizer.ggml.model` is "llama" (a SentencePiece vocabulary):
    /// - tokens / scores / tokenTypes: `tokenizer.ggml.tokens`, `.scores`, `.token_type`;
    /// - encoding: the text is cut at added tokens as transformers does (CONTROL (3) tokens and the BOS/EOS/UNK/PAD
    ///   tokens are special, USER_DEFINED (4) ones plain added tokens, all matched whole), " " becomes "▁", and
    ///   "▁" is put in front of the text when `addSpacePrefix` (`tokenizer.ggml.add_space_prefix`, default
    ///   true) -- only at the start of the text, not after an added token (transformers' Metaspace "first";
    ///   llama.cpp also prefixes the text after a special token). Each piece is then merged by llama.cpp's
    ///   `llm_tokenizer_spm` (scores, byte fallback through `<0xNN>`; every byte must have its token);
    /// - addBOS / addEOS: `tokenizer.ggml.add_bos_token` (absent: true, as llama.cpp and transformers) /
    ///   `add_eos_token`.
    public convenience init(sentencePieceVocabulary tokens: [String], scores: [Float], tokenTypes: [Int]?,
                            bosId: Int?, eosId: Int?, unkId: Int?, padId: Int? = nil, addBOS: Bool, addEOS: Bool = false,
                            addSpacePrefix: Bool = true) throws {
        guard !tokens.isEmpty else { throw TokenizerError.invalidArgument("empty vocabulary") }
        if let tt = tokenTypes, tt.count != tokens.count {
            throw TokenizerError.invalidArgument("\(tt.count) token types for \(tokens.count) tokens")
        }
        for (name, id) in [("BOS", bosId), ("EOS", eosId), ("UNK", unkId), ("PAD", padId)] {
            if let id, id < 0 || id >= tokens.count {
                throw TokenizerError.invalidArgument("\(name) id \(id) outside the vocabulary of \(tokens.count)")
            }
        }
        if addBOS && bosId == nil { throw TokenizerError.invalidArgument("addBOS without a BOS id") }
        if addEOS && eosId == nil { throw TokenizerError.invalidArgument("addEOS without an EOS id") }
        let spm = try SPMModel(tokens: tokens, scores: scores)
        var vocab = [TokenKey: Int32](minimumCapacity: tokens.count)
        for (i, t) in tokens.enumerated() where vocab[TokenKey(t)] == nil { vocab[TokenKey(t)] = Int32(i) }
        var model = try BPEModel(vocab: vocab, merges: [], unkToken: nil)
        model.enableByteFallback()
        var added = [AddedToken]()
        var seen = Set<Int32>()
        func add(_ id: Int, special: Bool) {
            guard !seen.contains(Int32(id)) else { return }
            seen.insert(Int32(id))
            added.append(AddedToken(content: Array(tokens[id].unicodeScalars), id: Int32(id), special: special, normalized: false))
        }
        if let tt = tokenTypes { for (i, ty) in tt.enumerated() where ty == 3 { add(i, special: true) } }
        for id in [bosId, eosId, unkId, padId].compactMap({ $0 }) { add(id, special: true) }
        if let tt = tokenTypes { for (i, ty) in tt.enumerated() where ty == 4 { add(i, special: false) } }
        var chain: [DecodeStep] = [.replace("\u{2581}", " "), .byteFallback, .fuse]
        if addSpacePrefix { chain.append(.strip(" ", start: 1, stop: 0)) }
        self.init(model: model, addedTokens: added,
                  steps: [.metaspace("\u{2581}", addSpacePrefix ? .first : .never, split: false)],
                  prefixIds: addBOS ? [Int32(bosId!)] : [], suffixIds: addEOS ? [Int32(eosId!)] : [],
                  decoder: .chain(chain), bosId: bosId, eosId: eosId, unkId: unkId, padId: padId, spm: spm)
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
        for seg in segs {
            switch seg {
            case .token(let id): out.append(id)
            case .text(let r):
                // normalize the segment (if any normalizer), then cut out the normalized added tokens
                let text: [Unicode.Scalar]
                let range: Range<Int>
                if normalizer.isEmpty { text = scalars; range = r } else {
                    text = NormalizerStep.apply(normalizer, scalars[r]); range = 0..<text.count
                }
                var parts = [Segment]()
                normalizedMatcher.split(text, range, into: &parts)
                for part in parts {
                    switch part {
                    case .token(let id): out.append(id)
                    case .text(let q):
                        // HF Metaspace "first": only a piece starting at original offset 0 gets the prefix
                        encodeText(text[q], atStart: r.lowerBound == 0 && q.lowerBound == range.lowerBound, into: &out)
                    }
                }
            }
        }
        if addSpecialTokens { out.append(contentsOf: suffixIds) }
        return out
    }

    private func encodeText(_ text: Piece, atStart: Bool, into out: inout [Int32]) {
        var pieces: [Piece] = [text]
        for (k, step) in steps.enumerated() {
            var next = [Piece]()
            next.reserveCapacity(pieces.count)
            switch step {
            case .split(let pattern, let behavior, let invert):
                for p in pieces { PreTokenizerPipeline.split(p, pattern, behavior, invert: invert, into: &next) }
            case .metaspace(let rep, let scheme, let split):
                for p in pieces {
                    var m = replaceAll(p, [" "], [rep])
                    let first = atStart && p.startIndex == text.startIndex
                    if (scheme == .always || (scheme == .first && first)) && m.first != rep { m.insert(rep, at: 0) }
                    if split {
                        PreTokenizerPipeline.split(m[...], .literal([rep]), .mergedWithNext, invert: false, into: &next)
                    } else if !m.isEmpty {
                        next.append(m[...])
                    }
                }
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
        if let spm {
            for p in pieces { spm.encode(p, into: &out) }
        } else {
            for p in pieces { encodeWord(p, into: &out) }
        }
    }

    private func encodeWord(_ piece: Piece, into out: inout [Int32]) {
        if piece.count > 256 {  // whole texts (Metaspace split: false) are not worth caching
            model.encodeWord(piece, byteLevel: byteLevelAtEnd, into: &out)
            return
        }
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
        case .chain(let chain):
            var tokens = [String]()
            tokens.reserveCapacity(ids.count)
            for id in ids {
                if skipSpecialTokens && specialIds.contains(id) { continue }
                if let t = token(of: Int(id)) { tokens.append(t) }
            }
            for step in chain { tokens = step.apply(tokens) }
            return tokens.joined()
        case .none:
            return ids.compactMap { id -> String? in
                if skipSpecialTokens && specialIds.contains(id) { return nil }
                return token(of: Int(id))
            }.joined(separator: " ")
        }
    }
}
