// A GGUF SentencePiece ("llama") vocabulary as the merge-list BPE transformers builds from it: the same
// vocabulary, byte fallback, and merges recovered from the scores by transformers' `generate_merges`
// (tokenization_utils_base.py, used by its GGUF loader and, ordered the same way, by convert_slow_tokenizer's
// SentencePieceExtractor). This is the form written to tokenizer.json and the one a vocabulary restriction cuts.
import Foundation

extension BPETokenizer {
    /// transformers' `generate_merges(vocab, vocab_scores)` for `tokens` with `scores`:
    /// - `vocab_scores = dict(zip(tokens, scores))`: pieces in first-occurrence order, each with its last score;
    ///   `vocab = {token: index}`: each token's last index;
    /// - for each piece, every split into two non-empty parts (by Unicode scalar) both in the vocabulary, sorted by
    ///   (vocab[left], vocab[right]);
    /// - all of them stably sorted by (score, len(left), len(right)) descending (Python's `sorted(reverse=True)`
    ///   keeps ties in their original order).
    static func scoreMerges(tokens: [String], scores: [Float]) -> [(String, String)] {
        var index = [TokenKey: Int](minimumCapacity: tokens.count)
        var score = [TokenKey: Float](minimumCapacity: tokens.count)
        var order = [String]()
        order.reserveCapacity(tokens.count)
        for (i, t) in tokens.enumerated() {
            let k = TokenKey(t)
            if score[k] == nil { order.append(t) }
            score[k] = scores[i]
            index[k] = i
        }
        struct M { var l: String; var r: String; var li: Int; var ri: Int; var score: Float; var ll: Int; var rl: Int; var seq: Int }
        var all = [M]()
        for piece in order {
            let sc = Array(piece.unicodeScalars)
            guard sc.count > 1 else { continue }
            var local = [M]()
            for cut in 1..<sc.count {
                var lv = String.UnicodeScalarView(), rv = String.UnicodeScalarView()
                lv.append(contentsOf: sc[..<cut]); rv.append(contentsOf: sc[cut...])
                let l = String(lv), r = String(rv)
                guard let li = index[TokenKey(l)], let ri = index[TokenKey(r)] else { continue }
                local.append(M(l: l, r: r, li: li, ri: ri, score: score[TokenKey(piece)]!, ll: cut, rl: sc.count - cut, seq: 0))
            }
            local.sort { ($0.li, $0.ri) < ($1.li, $1.ri) }
            all.append(contentsOf: local)
        }
        for k in all.indices { all[k].seq = k }
        all.sort { a, b in
            if a.score != b.score { return a.score > b.score }
            if a.ll != b.ll { return a.ll > b.ll }
            if a.rl != b.rl { return a.rl > b.rl }
            return a.seq < b.seq
        }
        return all.map { ($0.l, $0.r) }
    }

    /// This tokenizer with a GGUF SentencePiece vocabulary's score-based merging replaced by the merge-list BPE
    /// transformers builds from it (see the file comment); `self` when it has no such vocabulary.
    func mergeListForm() throws -> BPETokenizer {
        guard let spm else { return self }
        let merges = Self.scoreMerges(tokens: spm.tokens, scores: spm.scores)
        var m = try BPEModel(vocab: model.vocab, merges: merges, unkToken: unkId.flatMap { model.idToToken[$0] })
        m.idToToken = model.idToToken
        m.fuseUnk = true
        m.enableByteFallback()
        return BPETokenizer(model: m, addedTokens: addedTokens, steps: steps, prefixIds: prefixIds, suffixIds: suffixIds,
                            decoder: decoder, bosId: bosId, eosId: eosId, unkId: unkId, padId: padId, normalizer: normalizer)
    }
}
