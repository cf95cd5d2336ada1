// Cutting a tokenizer down to the first V ids, so that it only ever emits ids a model with a V-row embedding
// has (e.g. SmolLM2's 49152-token vocabulary on a synthetic LLaMA-7B with vocab_size 32000).
//
// Kept: vocabulary entries with id < V; merges whose left, right and merged tokens all have ids < V, in their
// original rank order; added tokens with id < V. Everything else (pre-tokenizer, post-processor, decoder, BOS/EOS/
// UNK/PAD) is unchanged. Refused, because some text could then not be encoded or the tokenizer would still emit
// an id >= V: a BOS/EOS/UNK/PAD id or a post-processor id >= V, a byte of the byte-level alphabet (or a byte-fallback
// <0xXX> token) that was present and would be lost, or -- for a BPE that is neither byte-level nor byte-fallback --
// a single-character token that would be lost.
//
// Ids can differ from the full tokenizer's only where a dropped merge was used: a text whose full encoding used
// only kept merges (for a vocabulary trained in merge order, as GPT-2-style ones are: every text whose ids are
// all < V) gets the same ids, because BPE applies the lowest-ranked applicable merge at each step and the kept
// merges keep their relative order.

extension BPETokenizer {
    /// A tokenizer that only emits ids < `v` (see the file comment for what is kept). `self` when every id is
    /// already < `v`. Throws `TokenizerError.invalidArgument` when a token the tokenizer needs has an id >= `v`.
    /// The result can be written with `writeHuggingFaceFiles(to:modelMaxLength:chatTemplate:)`.
    public func restricted(toVocabularySize v: Int) throws -> BPETokenizer {
        guard v > 0 else { throw TokenizerError.invalidArgument("vocabulary size \(v) is not positive") }
        if vocabularySize <= v { return self }
        // a GGUF SentencePiece vocabulary is cut in its merge-list form (the one transformers builds and
        // tokenizer.json holds)
        if spm != nil { return try mergeListForm().restricted(toVocabularySize: v) }
        let limit = Int32(clamping: v)
        func fail(_ why: String) -> TokenizerError {
            .invalidArgument("cannot restrict the \(vocabularySize)-token vocabulary to \(v) tokens: \(why)")
        }

        // tokens the tokenizer names or adds by itself
        for (name, id) in [("BOS", bosId), ("EOS", eosId), ("UNK", unkId), ("PAD", padId), ("BPE unk", model.unkId.map(Int.init))] {
            if let id, id >= v {
                throw fail("the \(name) token \((token(of: id) ?? "?").debugDescription) has id \(id)")
            }
        }
        for id in prefixIds + suffixIds where id >= limit {
            throw fail("the post-processor adds token \((token(of: Int(id)) ?? "?").debugDescription) (id \(id))")
        }

        // the alphabet: every symbol BPE starts from must survive, or some text could not be encoded
        func hex(_ bytes: [Int]) -> String {
            let shown = bytes.prefix(8).map { "0x" + String($0, radix: 16, uppercase: true).leftPadded(to: 2) }
            return shown.joined(separator: ", ") + (bytes.count > 8 ? " and \(bytes.count - 8) more" : "")
        }
        let byteLevel = steps.contains { if case .byteLevel = $0 { return true } else { return false } }
        if byteLevel {
            let lost = (0..<256).filter { model.byteIds[$0] >= limit }
            if !lost.isEmpty {
                throw fail("the byte-level alphabet token(s) of byte(s) \(hex(lost)) have ids >= \(v), so text "
                           + "containing those bytes could not be encoded")
            }
        }
        if model.byteFallback {
            let lost = (0..<256).filter { model.fallbackByteIds[$0] >= limit }
            if !lost.isEmpty {
                throw fail("the byte-fallback token(s) of byte(s) \(hex(lost)) have ids >= \(v)")
            }
        } else if !byteLevel {
            let lost = model.vocab.filter { $0.value >= limit && $0.key.string.unicodeScalars.count == 1 }
            if let first = lost.min(by: { $0.value < $1.value }) {
                throw fail("\(lost.count) single-character token(s) have ids >= \(v) (e.g. \(first.key.string.debugDescription), "
                           + "id \(first.value)), so text containing them could not be encoded")
            }
        }

        // the model: vocabulary, merges (original ranks: same relative order), flags
        let vocab = model.vocab.filter { $0.value < limit }
        var m = try BPEModel(vocab: vocab, merges: [], unkToken: nil)
        m.idToToken = Array(model.idToToken.prefix(m.idToToken.count))  // same spelling per id as before
        m.merges = model.merges.filter { key, value in
            Int32(truncatingIfNeeded: key >> 32) < limit && Int32(truncatingIfNeeded: key & 0xFFFF_FFFF) < limit
                && Int32(truncatingIfNeeded: value & 0xFFFF_FFFF) < limit
        }
        m.unkId = model.unkId
        m.fuseUnk = model.fuseUnk
        m.ignoreMerges = model.ignoreMerges
        if model.byteFallback { m.enableByteFallback() }

        return BPETokenizer(model: m, addedTokens: addedTokens.filter { $0.id < limit }, steps: steps,
                            prefixIds: prefixIds, suffixIds: suffixIds, decoder: decoder, bosId: bosId, eosId: eosId,
                            unkId: unkId, padId: padId, normalizer: normalizer)
    }
}

private extension String {
    func leftPadded(to n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}
