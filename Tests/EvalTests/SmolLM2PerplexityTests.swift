// The default model end to end through the production path (ModelLoader → GGUF tokenizer → forward →
// perplexity protocol) against transformers loading the same GGUF in fp32: the token ids of the full
// evaluation files and the NLL of the first windows. Full-file perplexity lives in scripts/bench/ppl.sh.
import Foundation
import Testing
import Eval
import LlamaModel
import Support
import TensorCore
import Tokenizer

let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()
let smolPath = packageRoot.appendingPathComponent("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf").path
let smolPresent = FileManager.default.fileExists(atPath: smolPath)

struct PPLGolden: Decodable {
    struct Dataset: Decodable {
        let ppl: Double, tokens: Int, windows: Int, ids_sha256: String, window_nll_sums_first8: [Double]
    }
    let datasets: [String: Dataset]
    static func load() throws -> PPLGolden {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Resources/smollm2_ppl_golden.json")
        return try JSONDecoder().decode(PPLGolden.self, from: Data(contentsOf: url))
    }
}

@Suite(.enabled(if: smolPresent, "SmolLM2 GGUF not present (run scripts/setup.sh)"), .serialized)
struct SmolLM2PerplexityTests {
    nonisolated(unsafe) static var model: LoadedModel? = nil
    static func loaded() throws -> LoadedModel {
        if let m = model { return m }
        model = try ModelLoader.load(path: smolPath)
        return model!
    }

    @Test(arguments: ["wikitext2", "ptb"])
    func idsAndFirstWindowsMatchTransformers(dataset: String) throws {
        let g = try #require(try PPLGolden.load().datasets[dataset])
        let m = try Self.loaded()
        setenv("LLMPRUNE_DATA", packageRoot.deletingLastPathComponent().appendingPathComponent("shared/data").path, 1)
        let ids = try #require(m.tokenizer).encode(try EvalDataset.text(of: try EvalDataset.resolve(dataset)))
        #expect(ids.count == g.tokens)
        #expect(SHA256.hex(ids: ids) == g.ids_sha256)
        let runner = LlamaRunner(weights: m.weights)
        let n = g.window_nll_sums_first8.count
        let sums = try runner.nextTokenNLL(tokens: Array(ids[0..<n * 128]), batch: n, seqLen: 128)
        for (ours, ref) in zip(sums, g.window_nll_sums_first8) {
            #expect(abs(ours - ref) / ref < 1e-5, "window NLL \(ours) vs \(ref)")
        }
        // The protocol over those windows: token-mean NLL of 8 × 127 predictions.
        let r = try Perplexity.evaluate(runner: runner, ids: ids, options: PerplexityOptions(maxWindows: n, quiet: true),
                                        source: dataset)
        let refMean = g.window_nll_sums_first8.reduce(0, +) / Double(n * 127)
        #expect(r.windows == n && r.scored == n * 127)
        #expect(abs(r.nllMean - refMean) / refMean < 1e-5)
        print("\(dataset): \(ids.count) ids, first \(n) windows nll mean \(r.nllMean) vs \(refMean)")
    }

    /// `alsoFirst` reports, from one pass, exactly the number a pass over only those windows gives — also when the
    /// prefix ends inside a batch — and refuses a prefix longer than the pass.
    /// At one OpenBLAS thread: its rounding depends on the process-wide thread count, which a test running alongside
    /// can change between the passes compared exactly.
    @Test func prefixPerplexityIsTheShorterPass() throws { try BLAS.singleThreaded { try prefixIsTheShorterPass() } }

    func prefixIsTheShorterPass() throws {
        let m = try Self.loaded()
        setenv("LLMPRUNE_DATA", packageRoot.deletingLastPathComponent().appendingPathComponent("shared/data").path, 1)
        let ids = try #require(m.tokenizer).encode(try EvalDataset.text(of: try EvalDataset.resolve("ptb")))
        let runner = LlamaRunner(weights: m.weights)
        let long = try Perplexity.evaluate(runner: runner, ids: ids, options: PerplexityOptions(maxWindows: 12, quiet: true),
                                           source: "ptb")
        for prefix in [8, 5] {
            let both = try Perplexity.evaluate(runner: runner, ids: ids,
                                               options: PerplexityOptions(maxWindows: 12, alsoFirst: prefix, quiet: true), source: "ptb")
            let short = try Perplexity.evaluate(runner: runner, ids: ids, options: PerplexityOptions(maxWindows: prefix, quiet: true),
                                                source: "ptb")
            let first = try #require(both.first)
            #expect(first.windows == prefix && first.nllMean == short.nllMean && first.perplexity == short.perplexity)
            // The rest of the pass is batched differently when the prefix ends inside a batch (5 + 7 windows, not
            // 8 + 4): the products' blocking changes with their row count, a float-rounding difference (2.3e-8 seen).
            #expect(abs(both.nllMean - long.nllMean) <= 1e-6 * long.nllMean, "\(both.nllMean) vs \(long.nllMean)")
        }
        #expect(throws: EvalError.self) {
            try Perplexity.evaluate(runner: runner, ids: ids, options: PerplexityOptions(maxWindows: 4, alsoFirst: 5, quiet: true),
                                    source: "ptb")
        }
    }
}
