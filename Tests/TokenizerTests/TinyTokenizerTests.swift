// Tiny tokenizer.json files trained with HF `tokenizers` (scripts/reference/tokenizer_golden.py): ids and
// decodings must equal HF's on tricky and random strings.
import Foundation
import Testing
import Tokenizer

struct TinyTokenizerTests {
    static let names = ["tiny_llama3", "tiny_gpt2", "tiny_mixed"]

    static func load(_ name: String) throws -> BPETokenizer {
        try BPETokenizer(tokenizerJSON: Fixtures.resources.appendingPathComponent("\(name).json"))
    }

    @Test(arguments: names)
    func idsMatchHF(name: String) throws {
        let expected = try Fixtures.load(TinyExpected.self, "tiny_expected.json")
        let strings = expected.strings
        let tricky = expected.tricky_count
        let e = try #require(expected.tokenizers[name])
        let without = e.without_special, with = e.with_special, decoded = e.decoded
        let tok = try Self.load(name)
        var failures = 0
        for (i, s) in strings.enumerated() {
            let got = tok.encode(s, addSpecialTokens: false)
            if got != without[i] {
                failures += 1
                Issue.record("\(name) #\(i) \(s.debugDescription): got \(got), HF \(without[i])")
            }
            if i < tricky {
                #expect(tok.encode(s) == with[i], "\(name) with special tokens #\(i) \(s.debugDescription)")
                #expect(tok.decode(got) == decoded[i], "\(name) decode #\(i) \(s.debugDescription)")
            }
            if failures > 10 { break }
        }
    }

    @Test func specialTokensAndBOS() throws {
        let llama = try Self.load("tiny_llama3")
        let bos = try #require(llama.id(of: "<|begin_of_text|>"))
        #expect(llama.bosId == bos)
        #expect(llama.eosId == llama.id(of: "<|end_of_text|>"))
        let ids = llama.encode("hi<|eot_id|>")
        #expect(ids.first == Int32(bos))
        #expect(ids.last == Int32(llama.id(of: "<|eot_id|>")!))
        #expect(llama.isSpecial(bos))
        #expect(llama.decode(ids, skipSpecialTokens: true) == "hi")
        #expect(llama.vocabularySize == 501)  // 500 trained + the added non-special <think>

        let gpt2 = try Self.load("tiny_gpt2")
        #expect(gpt2.encode("hello").first != gpt2.id(of: "<|endoftext|>").map(Int32.init))  // no BOS template
        #expect(gpt2.token(of: gpt2.id(of: "Ġt")!) == "Ġt")
    }

    @Test(arguments: ["tiny_llama3", "tiny_gpt2"])
    func roundTrip(name: String) throws {
        let tok = try Self.load(name)
        let expected = try Fixtures.load(TinyExpected.self, "tiny_expected.json")
        for s in expected.strings {
            #expect(tok.decode(tok.encode(s, addSpecialTokens: false)) == s, "\(name) \(s.debugDescription)")
        }
    }
}
