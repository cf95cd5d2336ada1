// Bad input throws a typed, one-line error; it never traps.
import Foundation
import Testing
import Tokenizer

struct ErrorTests {
    static func load(_ json: String) throws -> BPETokenizer {
        try BPETokenizer(tokenizerJSONData: Data(json.utf8))
    }

    static let vocab = #"{"a": 0, "b": 1, "ab": 2}"#

    @Test func notJSON() {
        #expect(throws: TokenizerError.self) { try Self.load("{not json") }
    }

    @Test func missingModel() {
        #expect(throws: TokenizerError.malformed("missing \"model\" object")) { try Self.load(#"{"added_tokens": []}"#) }
    }

    @Test func wordPieceRefused() {
        let json = #"{"model": {"type": "WordPiece", "vocab": {"a": 0}, "unk_token": "[UNK]"}}"#
        #expect(throws: TokenizerError.unsupported("model type WordPiece (only BPE)")) { try Self.load(json) }
    }

    @Test func badMergeEntries() {
        let three = #"{"model": {"type": "BPE", "vocab": \#(Self.vocab), "merges": ["a b c"]}}"#
        #expect(throws: TokenizerError.badMerge(index: 0, reason: "\"a b c\" is not two space-separated tokens")) {
            try Self.load(three)
        }
        let number = #"{"model": {"type": "BPE", "vocab": \#(Self.vocab), "merges": ["a b", 7]}}"#
        #expect(throws: TokenizerError.badMerge(index: 1, reason: "entry is neither \"a b\" nor [\"a\", \"b\"]")) {
            try Self.load(number)
        }
        let missing = #"{"model": {"type": "BPE", "vocab": \#(Self.vocab), "merges": [["a", "z"]]}}"#
        #expect(throws: TokenizerError.badMerge(index: 0, reason: "token \"z\" is not in the vocabulary")) {
            try Self.load(missing)
        }
        let unmerged = #"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}}"#
        #expect(throws: TokenizerError.self) { try Self.load(unmerged) }
    }

    @Test func unsupportedComponents() {
        let pre = #"{"model": {"type": "BPE", "vocab": \#(Self.vocab), "merges": []}, "pre_tokenizer": {"type": "WhitespaceSplit"}}"#
        #expect(throws: TokenizerError.unsupported("pre_tokenizer WhitespaceSplit")) { try Self.load(pre) }
        let norm = #"{"model": {"type": "BPE", "vocab": \#(Self.vocab), "merges": []}, "normalizer": {"type": "NFKC"}}"#
        #expect(throws: TokenizerError.unsupported("normalizer NFKC")) { try Self.load(norm) }
        let regex = #"{"model": {"type": "BPE", "vocab": \#(Self.vocab), "merges": []}, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"}}"#
        #expect(throws: TokenizerError.self) { try Self.load(regex) }
    }

    @Test func missingFile() {
        #expect(throws: TokenizerError.self) {
            try BPETokenizer(tokenizerJSON: URL(fileURLWithPath: "/nonexistent/tokenizer.json"))
        }
    }

    @Test func ggufArguments() {
        #expect(throws: TokenizerError.invalidArgument("empty vocabulary")) {
            try BPETokenizer(vocabulary: [], merges: [], tokenTypes: nil, preTokenizer: "gpt2", bosId: nil, eosId: nil, addBOS: false)
        }
        #expect(throws: TokenizerError.self) {
            try BPETokenizer(vocabulary: ["a", "b"], merges: ["a b"], tokenTypes: nil, preTokenizer: "gpt2",
                             bosId: nil, eosId: nil, addBOS: false)
        }
        #expect(throws: TokenizerError.self) {
            try BPETokenizer(vocabulary: ["a"], merges: [], tokenTypes: [1, 1], preTokenizer: "gpt2",
                             bosId: nil, eosId: nil, addBOS: false)
        }
        #expect(throws: TokenizerError.self) {
            try BPETokenizer(vocabulary: ["a"], merges: [], tokenTypes: nil, preTokenizer: "gpt2",
                             bosId: 5, eosId: nil, addBOS: true)
        }
    }

    @Test func errorsDescribeThemselvesOnOneLine() {
        let e = TokenizerError.badMerge(index: 3, reason: "token \"z\" is not in the vocabulary")
        #expect(e.description == "tokenizer: bad merge #3: token \"z\" is not in the vocabulary")
        #expect(!e.description.contains("\n"))
    }
}
