// Text of generated tokens as they arrive, only ever complete characters: a byte-level or byte-fallback token can
// hold part of a UTF-8 sequence, and decoding it alone gives U+FFFD. The method of Hugging Face's
// text-generation-inference (Python `decode_token`: a prefix offset and a read offset): decode the tokens from the
// prefix offset twice, up to the read offset and to the end, and emit the difference once it no longer ends in
// U+FFFD. Decoding a few tokens of context rather than the last token alone keeps decoders that treat the start of a
// text specially (SentencePiece's leading-space strip) from changing the emitted text.
import Foundation
import Tokenizer

public struct TextStream {
    let tokenizer: BPETokenizer
    let skipSpecialTokens: Bool
    private var ids: [Int32] = []
    private var prefixOffset = 0
    private var readOffset = 0

    public init(tokenizer: BPETokenizer, skipSpecialTokens: Bool = true) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// The new complete text `id` adds (possibly empty: it is held until its character is complete).
    public mutating func push(_ id: Int32) -> String {
        ids.append(id)
        let before = tokenizer.decode(Array(ids[prefixOffset..<readOffset]), skipSpecialTokens: skipSpecialTokens)
        let now = tokenizer.decode(Array(ids[prefixOffset...]), skipSpecialTokens: skipSpecialTokens)
        guard now.utf8.count > before.utf8.count, !now.hasSuffix("\u{FFFD}") else { return "" }
        prefixOffset = readOffset
        readOffset = ids.count
        return Self.suffix(of: now, after: before)
    }

    /// Whatever is still held at the end (an incomplete character decodes as U+FFFD, as transformers' decode gives it).
    public mutating func finish() -> String {
        let before = tokenizer.decode(Array(ids[prefixOffset..<readOffset]), skipSpecialTokens: skipSpecialTokens)
        let now = tokenizer.decode(Array(ids[prefixOffset...]), skipSpecialTokens: skipSpecialTokens)
        prefixOffset = ids.count
        readOffset = ids.count
        return now.utf8.count > before.utf8.count ? Self.suffix(of: now, after: before) : ""
    }

    /// `text` past the bytes of `prefix` (which it starts with for every decoder llmprune has).
    static func suffix(of text: String, after prefix: String) -> String {
        let t = Array(text.utf8), p = Array(prefix.utf8)
        var common = 0
        while common < p.count && common < t.count && t[common] == p[common] { common += 1 }
        return String(decoding: t[common...], as: UTF8.self)
    }
}
