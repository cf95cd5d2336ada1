// Generation against transformers (scripts/reference/generate_golden.py --tiny): greedy generate on the tiny
// variant fixtures gives transformers' tokens, dynamic RoPE past max_position_embeddings included (there with its
// per-step logits); and against our own full forward: each greedy token is the argmax of the full-sequence logits.
// Stopping (EOS, token budget, context), the prompt checks, and seeded sampling.
import Foundation
import Testing
@testable import Generation
import LlamaModel

let resources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Resources")
let modelFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("LlamaModelTests/Resources")

func json(_ name: String) throws -> [String: Any] {
    try JSONSerialization.jsonObject(with: Data(contentsOf: resources.appendingPathComponent(name))) as! [String: Any]
}

struct TinyGolden {
    static var entries: [[String: Any]] { (try? json("tiny_generate.json"))?["models"] as? [[String: Any]] ?? [] }
    static var names: [String] { entries.map { $0["name"] as! String } }
    static func entry(_ name: String) -> [String: Any] { entries.first { $0["name"] as! String == name }! }
}

struct GenerationTests {
    @Test(arguments: TinyGolden.names)
    func greedyEqualsTransformersGenerate(_ name: String) throws {
        let e = TinyGolden.entry(name)
        let m = try ModelLoader.load(path: modelFixtures.appendingPathComponent(e["path"] as! String).path, tokenizer: false)
        let prompt = (e["prompt_ids"] as! [Int]).map(Int32.init)
        let expected = (e["generated"] as! [Int]).map(Int32.init)
        let eos = Set((e["eos"] as! [Int]).map(Int32.init))
        #expect(eos == Set(m.config.eosTokenId.map { [Int32($0)] } ?? []))
        var logitRows: [[Float]] = []
        let g = Generator(weights: m.weights)
        let r = try g.generate(prompt: prompt, options: GenerationOptions(maxNewTokens: e["max_new_tokens"] as! Int,
                                                                         stopIds: eos))
        #expect(r.tokens == expected, "\(name): \(r.tokens) vs transformers \(expected)")
        #expect(r.stopReason == (expected.last.map { eos.contains($0) } == true ? .eos : .maxNewTokens))
        if let file = e["logits_file"] as? String {
            // The logits of every step, from a second run that keeps them.
            let cache = KVCache(config: m.config, capacity: prompt.count + expected.count)
            var row = try g.runner.forward(appending: prompt, cache: cache)
            for t in expected {
                logitRows.append(row)
                row = try g.runner.forward(appending: [t], cache: cache)
            }
            let ref = try Data(contentsOf: resources.appendingPathComponent(file)).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            let ours = logitRows.flatMap { $0 }
            #expect(ours.count == ref.count)
            let d = zip(ours, ref).map { abs($0 - $1) }.max()!
            print("\(name): max |logit − transformers generate's| over \(expected.count) steps: \(d)")
            #expect(d <= 1e-4)
        }
    }

    /// Greedy tokens are the argmax of the full-sequence forward of prompt + tokens so far (no cache).
    @Test(arguments: ["tiny", "tiny_mistral_swa", "tiny_smollm3", "tiny_qwen2_bias"])
    func greedyIsTheArgmaxOfTheFullForward(_ path: String) throws {
        let m = try ModelLoader.load(path: modelFixtures.appendingPathComponent(path).path, tokenizer: false)
        let prompt: [Int32] = [9, 100, 42, 7, 250, 18]
        let r = try Generator(weights: m.weights).generate(prompt: prompt, options: GenerationOptions(maxNewTokens: 16))
        let all = prompt + r.tokens, v = m.config.vocabSize
        let full = try LlamaRunner(weights: m.weights).logits(tokens: all, batch: 1, seqLen: all.count)
        for (i, t) in r.tokens.enumerated() {
            let row = Array(full[((prompt.count - 1 + i) * v)..<((prompt.count + i) * v)])
            let best = row.withUnsafeBufferPointer { Sampler.argmax($0) }
            let gap = row[best] - row[Int(t)]
            #expect(best == Int(t) || gap <= 1e-5, "step \(i): full forward's argmax \(best), generated \(t)")
        }
    }

    @Test func stopsAtEOSTheTokenIncluded() throws {
        let m = try ModelLoader.load(path: modelFixtures.appendingPathComponent("tiny").path, tokenizer: false)
        let g = Generator(weights: m.weights)
        let free = try g.generate(prompt: [5, 6, 7], options: GenerationOptions(maxNewTokens: 6))
        #expect(free.tokens.count == 6 && free.stopReason == .maxNewTokens)
        let stop = free.tokens[2]
        let r = try g.generate(prompt: [5, 6, 7], options: GenerationOptions(maxNewTokens: 6, stopIds: [stop]))
        let first = free.tokens.firstIndex(of: stop)!
        #expect(r.tokens == Array(free.tokens[...first]) && r.stopReason == .eos)
    }

    @Test func stopsWhenTheContextIsFullAndRefusesLongerPrompts() throws {
        var cfg = LlamaConfig(vocabSize: 50, hiddenSize: 16, headDim: 4,
                              layers: [LayerShape(numHeads: 2, numKVHeads: 1, intermediateSize: 24)], rmsNormEps: 1e-5,
                              ropeTheta: 10000, maxPositionEmbeddings: 8, tieWordEmbeddings: true)
        let g = Generator(weights: LlamaWeights.random(config: cfg, seed: 1))
        // Positions 0..<8: a 6-token prompt leaves room to feed 2 new tokens, so 3 are generated.
        let r = try g.generate(prompt: [1, 2, 3, 4, 5, 6], options: GenerationOptions(maxNewTokens: 10))
        #expect(r.tokens.count == 3 && r.stopReason == .context)
        #expect(throws: GenerationError.promptTooLong(tokens: 9, context: 8)) {
            try g.generate(prompt: Array(repeating: 1, count: 9), options: GenerationOptions())
        }
        #expect(throws: GenerationError.emptyPrompt) { try g.generate(prompt: [], options: GenerationOptions()) }
        // Dynamic RoPE has no such bound.
        cfg.ropeScaling = RopeScaling(kind: .dynamic)
        cfg.ropeScaling.factor = 2
        let dg = Generator(weights: LlamaWeights.random(config: cfg, seed: 1))
        let d = try dg.generate(prompt: Array(repeating: 1, count: 9), options: GenerationOptions(maxNewTokens: 4))
        #expect(d.tokens.count == 4)
        // …only memory: a budget whose KV cache cannot be held is refused, not allocated.
        #expect(throws: GenerationError.self) {
            try dg.generate(prompt: [1, 2], options: GenerationOptions(maxNewTokens: Int.max))
        }
    }

    @Test func minNewTokensKeepsTheStopIdsAway() throws {
        let m = try ModelLoader.load(path: modelFixtures.appendingPathComponent("tiny").path, tokenizer: false)
        let g = Generator(weights: m.weights)
        let free = try g.generate(prompt: [5, 6, 7], options: GenerationOptions(maxNewTokens: 4))
        let stop = free.tokens[0]
        let r = try g.generate(prompt: [5, 6, 7], options: GenerationOptions(maxNewTokens: 6, minNewTokens: 3, stopIds: [stop]))
        #expect(!r.tokens.prefix(3).contains(stop))
        #expect(r.tokens.count == 6 || (r.tokens.count > 3 && r.tokens.last == stop))
    }

    @Test func seededSamplingIsReproducibleAndTopKOneIsGreedy() throws {
        let m = try ModelLoader.load(path: modelFixtures.appendingPathComponent("tiny").path, tokenizer: false)
        let g = Generator(weights: m.weights)
        func run(_ s: SamplingSettings) throws -> [Int32] {
            try g.generate(prompt: [5, 6, 7], options: GenerationOptions(maxNewTokens: 12, sampling: s)).tokens
        }
        let a = try run(SamplingSettings(temperature: 1.5, seed: 3)), b = try run(SamplingSettings(temperature: 1.5, seed: 3))
        let c = try run(SamplingSettings(temperature: 1.5, seed: 4))
        #expect(a == b)
        #expect(a != c)
        #expect(try run(SamplingSettings(temperature: 0.9, topK: 1, seed: 9)) == (try run(SamplingSettings())))
        #expect(throws: GenerationError.self) { try run(SamplingSettings(temperature: -1)) }
        #expect(throws: GenerationError.self) { try run(SamplingSettings(temperature: 1, topP: 1.5)) }
    }
}
