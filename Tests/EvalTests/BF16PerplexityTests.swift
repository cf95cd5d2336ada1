// `--compute bf16` on the default model: the eval forward (LlamaRunner.nextTokenNLL, batched windows) and the
// cached forward generation runs (a prefill of a whole window, then one token per step, the M = 1 products) give
// a window NLL within 0.5% of transformers' fp32 (the golden sums of SmolLM2PerplexityTests). Measured here: the
// relative differences are printed; docs/bf16.md has the full-file numbers.
import Foundation
import Testing
import Eval
import LlamaModel
import TensorCore
import Tokenizer

/// −log softmax(logits)[target], in double.
private func nll(_ logits: ArraySlice<Float>, target: Int32) -> Double {
    let mx = Double(logits.max()!)
    let lse = log(logits.reduce(0.0) { $0 + exp(Double($1) - mx) }) + mx
    return lse - Double(logits[logits.startIndex + Int(target)])
}

@Suite(.enabled(if: smolPresent && BF16.unavailableReason == nil, "SmolLM2 GGUF or native bf16 products missing"),
       .serialized)
struct BF16PerplexityTests {
    static let tolerance = 0.005

    @Test(arguments: ["wikitext2", "ptb"])
    func bf16WindowsWithinHalfPercentOfFP32(dataset: String) throws {
        let g = try #require(try PPLGolden.load().datasets[dataset])
        let m = try SmolLM2PerplexityTests.loaded()
        setenv("LLMPRUNE_DATA", packageRoot.deletingLastPathComponent().appendingPathComponent("shared/data").path, 1)
        let ids = try #require(m.tokenizer).encode(try EvalDataset.text(of: try EvalDataset.resolve(dataset)))
        let runner = try LlamaRunner(weights: m.weights, compute: .bf16)
        #expect(runner.compute == .bf16)
        let n = g.window_nll_sums_first8.count
        let sums = try runner.nextTokenNLL(tokens: Array(ids[0..<n * 128]), batch: n, seqLen: 128)
        let ours = sums.reduce(0, +), ref = g.window_nll_sums_first8.reduce(0, +)
        // Perplexity exp(mean NLL): its relative change is exp(ΔNLL / predictions) − 1.
        let pplChange = exp((ours - ref) / Double(n * 127)) - 1
        #expect(abs(pplChange) < Self.tolerance, "eval: ppl \(pplChange * 100)% off fp32")

        // Generation's path over window 0: prefill of all 128 tokens, then the same tokens one per step.
        let window = Array(ids[0..<128]), v = m.config.vocabSize
        let prefill = try runner.forward(appending: window, cache: KVCache(config: m.config, capacity: 128), allLogits: true)
        let prefillNLL = (0..<127).reduce(0.0) { $0 + nll(prefill[($1 * v)..<(($1 + 1) * v)], target: window[$1 + 1]) }
        let cache = KVCache(config: m.config, capacity: 128)
        var stepNLL = 0.0
        for t in 0..<127 {
            stepNLL += nll(try runner.forward(appending: [window[t]], cache: cache)[...], target: window[t + 1])
        }
        let ref0 = g.window_nll_sums_first8[0]
        let changes = [prefillNLL, stepNLL].map { exp(($0 - ref0) / 127) - 1 }
        #expect(changes.allSatisfy { abs($0) < Self.tolerance }, "generate: ppl changes \(changes)")
        print("\(dataset) bf16: eval ppl \(String(format: "%+.4f", pplChange * 100))% over \(n) windows; "
              + "window 0 prefill \(String(format: "%+.4f", changes[0] * 100))%, "
              + "one token per step \(String(format: "%+.4f", changes[1] * 100))%")
    }
}
