// A tokenizer read from tokenizer.json, described by llama.cpp's GGUF tokenizer keys (`tokenizer.ggml.*`), for the GGUF
// export. What llama.cpp's converter writes (conversion/base.py `get_vocab_base`, gguf-py `LlamaHfVocab`,
// `SpecialVocab`), with two choices of our own where the converter's would tokenize differently from the source:
// - byte-level BPE → model "gpt2": tokens by id in the byte alphabet (added tokens as their text; CONTROL when special
//   or spelled <|…|>, else USER_DEFINED), merges "left right" by rank, and `pre` named from the pre-tokenizer steps,
//   not from the converter's hash of a test string: the pipelines llmprune reads that llama.cpp has a name for
//   (llama-vocab.cpp): GPT-2's ByteLevel regex → "gpt-2", Digits(individual) + ByteLevel → "smollm", the Llama-3 split
//   → "llama-bpe", the Qwen2 split → "qwen2". Anything else is refused by name.
// - SentencePiece-style BPE (byte fallback, "▁" for spaces) → model "llama" with scores. tokenizer.json has no scores;
//   the converter writes -1000 for every token, and llama.cpp's SentencePiece merge (highest score first, ties to the
//   left) then merges left to right. We write score = −(rank of the first merge producing the token), so the same
//   merge wins as in the BPE model (lowest rank first); tokens no merge produces score below every merge.
import Foundation

/// llama.cpp's tokenizer keys for one tokenizer.
public struct GGUFVocabulary: Sendable, Equatable {
    /// llama.cpp's token types (`llama_token_type`).
    public enum TokenType: Int32, Sendable {
        case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    /// "gpt2" (byte-level BPE) or "llama" (SentencePiece).
    public var model: String
    /// `tokenizer.ggml.pre` (gpt2 only).
    public var pre: String?
    public var tokens: [String]
    public var tokenTypes: [TokenType]
    /// "llama" only.
    public var scores: [Float]?
    /// "gpt2" only: "left right" by rank.
    public var merges: [String]?
    public var bosId: Int?
    public var eosId: Int?
    public var unkId: Int?
    public var padId: Int?
    public var addBOS: Bool
    public var addEOS: Bool
    /// "llama" only: a "▁" is put before the text.
    public var addSpacePrefix: Bool?
}

extension BPETokenizer {
    /// The GGUF keys that make llama.cpp tokenize as this tokenizer does, with `vocabSize` tokens (ids the tokenizer
    /// does not spell become "[PAD<id>]", UNUSED, as the converter writes them). Throws, naming the part, for a
    /// tokenizer llama.cpp has no equivalent of.
    public func ggufVocabulary(vocabSize: Int) throws -> GGUFVocabulary {
        guard vocabularySize <= vocabSize else {
            throw TokenizerError.unsupported("a tokenizer of \(vocabularySize) tokens for a model of vocab_size \(vocabSize)")
        }
        let addBOS: Bool, addEOS: Bool
        if prefixIds.isEmpty { addBOS = false } else if let b = bosId, prefixIds == [Int32(b)] { addBOS = true } else {
            throw TokenizerError.unsupported("a post-processor that adds \(prefixIds) before the text (llama.cpp adds BOS or nothing)")
        }
        if suffixIds.isEmpty { addEOS = false } else if let e = eosId, suffixIds == [Int32(e)] { addEOS = true } else {
            throw TokenizerError.unsupported("a post-processor that adds \(suffixIds) after the text (llama.cpp adds EOS or nothing)")
        }
        if spm != nil {
            throw TokenizerError.unsupported("converting a GGUF SentencePiece vocabulary (copy the source GGUF's tokenizer keys instead)")
        }
        var v = GGUFVocabulary(model: "gpt2", pre: nil, tokens: [], tokenTypes: [], scores: nil, merges: nil,
                               bosId: bosId, eosId: eosId, unkId: unkId ?? model.unkId.map(Int.init), padId: padId,
                               addBOS: addBOS, addEOS: addEOS, addSpacePrefix: nil)
        let merges = mergesByRank()
        if let space = try sentencePieceSpacePrefix() {
            v.model = "llama"
            v.addSpacePrefix = space
            // score = −rank of the first merge producing the token; tokens no merge produces score below all of them
            var scores = [Float](repeating: -Float(merges.count + 1), count: vocabSize)
            for (rank, m) in merges.enumerated().reversed() where m.merged < vocabSize { scores[m.merged] = -Float(rank) }
            v.scores = scores
        } else {
            guard case .byteLevel = decoder, normalizer.isEmpty, !model.byteFallback else {
                throw TokenizerError.unsupported("a tokenizer.json that is neither byte-level BPE nor SentencePiece-style BPE")
            }
            let (pre, ignoresMerges) = try llamaCppPreTokenizer()
            guard ignoresMerges == model.ignoreMerges else {
                throw TokenizerError.unsupported("ignore_merges \(model.ignoreMerges) with the \(pre) pre-tokenizer "
                                                 + "(llama.cpp's \(pre) has ignore_merges \(ignoresMerges))")
            }
            v.pre = pre
            v.merges = try merges.map { m in
                guard let l = model.idToToken[m.left], let r = model.idToToken[m.right] else {
                    throw TokenizerError.invalidArgument("merge of ids \(m.left), \(m.right) without tokens")
                }
                return l + " " + r
            }
        }
        let added = Dictionary(addedTokens.map { (Int($0.id), $0) }, uniquingKeysWith: { a, _ in a })
        for id in 0..<vocabSize {
            if let a = added[id] {
                var s = String.UnicodeScalarView()
                s.append(contentsOf: a.content)
                let text = String(s)
                let looksSpecial = (text.hasPrefix("<|") && text.hasSuffix("|>")) || ["<pad>", "<mask>"].contains(text)
                if a.special || looksSpecial {
                    v.tokens.append(text)
                    v.tokenTypes.append(.control)
                } else {
                    v.tokens.append(text.replacingOccurrences(of: "\u{2581}", with: " "))
                    v.tokenTypes.append(.userDefined)
                }
            } else if id < model.idToToken.count, let t = model.idToToken[id] {
                v.tokens.append(t)
                if v.model == "llama" && id == v.unkId {
                    v.tokenTypes.append(.unknown)
                } else if v.model == "llama" && Self.isByteToken(t) {
                    v.tokenTypes.append(.byte)
                } else {
                    v.tokenTypes.append(.normal)
                }
            } else {
                v.tokens.append("[PAD\(id)]")
                v.tokenTypes.append(.unused)
            }
        }
        return v
    }

    /// Merges in rank order: (left id, right id, merged id).
    private func mergesByRank() -> [(left: Int, right: Int, merged: Int)] {
        var out = [(rank: UInt64, left: Int, right: Int, merged: Int)]()
        out.reserveCapacity(model.merges.count)
        for (pair, value) in model.merges {
            out.append((value >> 32, Int(pair >> 32), Int(pair & 0xFFFF_FFFF), Int(value & 0xFFFF_FFFF)))
        }
        out.sort { $0.rank < $1.rank }
        return out.map { ($0.left, $0.right, $0.merged) }
    }

    /// For a SentencePiece-style pipeline (byte fallback; spaces as "▁" by a Replace normalizer or Metaspace, without
    /// splitting), whether "▁" is put before the text; nil for any other pipeline.
    private func sentencePieceSpacePrefix() throws -> Bool? {
        guard model.byteFallback else { return nil }
        let mark: Unicode.Scalar = "\u{2581}", space: Unicode.Scalar = " "
        func isReplace(_ s: NormalizerStep) -> Bool {
            if case .replace(let p, let c) = s { return p == [space] && c == [mark] } else { return false }
        }
        let prefix: Bool
        if steps.isEmpty, normalizer.count == 2, case .prepend(let p) = normalizer[0], p == [mark], isReplace(normalizer[1]) {
            prefix = true
        } else if steps.isEmpty, normalizer.count == 1, isReplace(normalizer[0]) {
            prefix = false
        } else if normalizer.isEmpty, steps.count == 1, case .metaspace(let r, let scheme, let split) = steps[0], r == mark {
            guard !split else {
                throw TokenizerError.unsupported("Metaspace with split: true (llama.cpp's SentencePiece tokenizer does not split at spaces)")
            }
            prefix = scheme != .never
        } else {
            throw TokenizerError.unsupported("a byte-fallback BPE whose normalizer / pre-tokenizer is not SentencePiece's "
                                             + "(Prepend \"▁\" + Replace \" \" → \"▁\", or Metaspace)")
        }
        guard !model.ignoreMerges else {
            throw TokenizerError.unsupported("ignore_merges true in a SentencePiece-style tokenizer")
        }
        return prefix
    }

    /// llama.cpp's `tokenizer.ggml.pre` for the byte-level pre-tokenizer steps, and whether llama.cpp ignores merges
    /// with it (llama-vocab.cpp sets ignore_merges for llama-bpe).
    private func llamaCppPreTokenizer() throws -> (String, Bool) {
        switch steps.count {
        case 1:
            if case .byteLevel(false, true) = steps[0] { return ("gpt-2", false) }
        case 2:
            switch (steps[0], steps[1]) {
            case (.split(.numericScalar, .isolated, false), .byteLevel(false, true)):
                return ("smollm", false)
            case (.split(.known(.llama3(3)), .isolated, false), .byteLevel(false, false)):
                return ("llama-bpe", true)
            case (.split(.known(.llama3(1)), .isolated, false), .byteLevel(false, false)):
                return ("qwen2", false)
            default: break
            }
        default: break
        }
        throw TokenizerError.unsupported("this byte-level pre-tokenizer (llama.cpp pre-tokenizers llmprune can name: "
                                         + "GPT-2's ByteLevel, Digits + ByteLevel (smollm), the Llama-3 and Qwen2 splits)")
    }

    static func isByteToken(_ t: String) -> Bool {
        let u = Array(t.utf8)
        guard u.count == 6, u[0] == UInt8(ascii: "<"), u[1] == UInt8(ascii: "0"), u[2] == UInt8(ascii: "x"),
              u[5] == UInt8(ascii: ">") else { return false }
        return u[3...4].allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 70) || ($0 >= 97 && $0 <= 102) }
    }
}
