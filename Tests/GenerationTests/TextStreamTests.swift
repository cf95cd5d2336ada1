// Streamed text is only ever complete characters, and the pieces add up to the decoding of all the tokens: a
// byte-level vocabulary (the tiny GGUF's: one token per byte) splits "é", "€" and an emoji over several tokens, and
// a SentencePiece vocabulary with byte fallback does the same for characters it lacks.
import Foundation
import Testing
@testable import Generation
import LlamaModel
import Tokenizer

struct TextStreamTests {
    static func pieces(_ tok: BPETokenizer, _ ids: [Int32]) -> [String] {
        var s = TextStream(tokenizer: tok)
        var out = ids.map { s.push($0) }
        out.append(s.finish())
        return out
    }

    @Test func byteLevelPiecesAreWholeCharacters() throws {
        let tok = try ModelLoader.tokenizer(path: modelFixtures.appendingPathComponent("tiny.gguf").path)
        let text = "héllo € ok 🙂!"
        let ids = tok.encode(text)
        #expect(ids.count == text.utf8.count)     // one token per byte: characters are split
        let p = Self.pieces(tok, ids)
        #expect(p.joined() == tok.decode(ids, skipSpecialTokens: true))
        #expect(p.joined() == text)
        #expect(!p.contains { $0.contains("\u{FFFD}") })
        // "é" is two tokens: the first prints nothing, the second the whole character.
        #expect(p[1] == "" && p[2] == "é")
    }

    @Test func anIncompleteCharacterAtTheEndIsFlushedAsTransformersDecodesIt() throws {
        let tok = try ModelLoader.tokenizer(path: modelFixtures.appendingPathComponent("tiny.gguf").path)
        let ids = Array(tok.encode("a€")).dropLast()        // "a" and 2 of the 3 bytes of "€"
        let p = Self.pieces(tok, Array(ids))
        #expect(p.joined() == tok.decode(Array(ids)))
        #expect(p.last!.contains("\u{FFFD}"))
    }

    @Test(arguments: ["spm_metaspace", "spm_legacy", "llama3", "qwen2"])
    func otherDecodersAddUpToTheFullDecoding(_ name: String) throws {
        let dir = modelFixtures.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("TokenizerTests/Resources/\(name)")
        let tok = try BPETokenizer(tokenizerJSON: dir.appendingPathComponent("tokenizer.json"))
        let text = "The naïve café — costs 5 €; 🙂 ok.\nNew line"
        let ids = tok.encode(text, addSpecialTokens: false)
        let p = Self.pieces(tok, ids)
        #expect(p.joined() == tok.decode(ids, skipSpecialTokens: true))
        #expect(!p.dropLast().contains { $0.contains("\u{FFFD}") })
    }
}
