// Tokens are compared scalar by scalar, never by Swift's canonical-equivalence String equality, and the
// tokenizer.json reader keeps every scalar (escapes, surrogate pairs, a raw U+FEFF right after a quote).
import Foundation
import Testing
import Tokenizer

struct ExactnessTests {
    // A character-level BPE (no pre-tokenizer) whose vocabulary holds canonically equivalent tokens.
    static let json = """
    {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "\u{00E9}": 3, "e": 4, "\\u0301": 5, "e\u{0301}": 6,
       "\\"q\\\\": 7, "\\ud83d\\ude42": 8, ";": 9, "\u{037E}": 10},
     "merges": ["a b", "e \u{0301}"]},
     "added_tokens": [{"id": 11, "content": "\u{FEFF}x", "special": true, "normalized": false}]}
    """

    @Test func canonicallyEquivalentTokensStayDistinct() throws {
        let tok = try BPETokenizer(tokenizerJSONData: Data(Self.json.utf8))
        #expect(tok.encode("ab") == [2])
        #expect(tok.encode("\u{00E9}") == [3])
        #expect(tok.encode("e\u{0301}") == [6])
        #expect(tok.encode(";\u{037E};") == [9, 10, 9])
        #expect(tok.id(of: "\u{00E9}") == 3)
        #expect(tok.id(of: "e\u{0301}") == 6)
        #expect(tok.id(of: "\"q\\") == 7)
        #expect(tok.id(of: "🙂") == 8)
        #expect(tok.encode("a\u{FEFF}xb") == [0, 11, 1])
        #expect(tok.vocabularySize == 12)
    }

    @Test func smolLM2CacheDoesNotMergeEquivalentPieces() throws {
        let tok = try TinyTokenizerTests.load("tiny_gpt2")
        let a = tok.encode("x;y", addSpecialTokens: false), b = tok.encode("x\u{037E}y", addSpecialTokens: false)
        #expect(a != b)
        #expect(tok.decode(b) == "x\u{037E}y")
        #expect(tok.encode("x;y", addSpecialTokens: false) == a)  // now cached
    }

    @Test func ggufVocabularyIsRespelledLikeTransformers() throws {
        // "東" (E6 9D B1) is not written in the byte alphabet, so transformers stores it as "æĿ±" (0x9D spells
        // U+013F); the merges that build it use that spelling.
        let tok = try BPETokenizer(vocabulary: ["æ", "Ŀ", "±", "æĿ", "東", "<|x|>", "a"], merges: ["æ Ŀ", "æĿ ±"],
                                   tokenTypes: [1, 1, 1, 1, 1, 3, 1], preTokenizer: "smollm", bosId: 5, eosId: 5,
                                   addBOS: true)
        #expect(tok.encode("東") == [5, 4])
        #expect(tok.encode("東", addSpecialTokens: false) == [4])
        #expect(tok.id(of: "æĿ±") == 4)
        #expect(tok.encode("a<|x|>a", addSpecialTokens: false) == [6, 5, 6])
        #expect(tok.decode([4, 6]) == "東a")
        #expect(tok.isSpecial(5))
    }
}
