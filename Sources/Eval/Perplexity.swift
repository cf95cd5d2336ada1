// Perplexity under LLM-Pruner's protocol (`PPLMetric`, LLMPruner/evaluator/ppl.py, over the windows of
// LLMPruner/datasets/ppl_dataset.py): the token ids of the whole text cut into
// non-overlapping windows of `seqLen` (remainder dropped), each window scored independently from position 0,
// seqLen − 1 predictions per window, PPL = exp(token-mean NLL over all scored tokens).
import Foundation
import LlamaModel
import Support

public struct PerplexityOptions: Sendable {
    public var seqLen = 128
    public var batch = 8
    public var maxWindows: Int? = nil
    /// Also report the perplexity of the first N windows, from the same pass: batches stop at window N, so the
    /// figure is exactly what `maxWindows: N` gives (the same batches, summed in the same order).
    public var alsoFirst: Int? = nil
    public var quiet = false
    public init(seqLen: Int = 128, batch: Int = 8, maxWindows: Int? = nil, alsoFirst: Int? = nil, quiet: Bool = false) {
        self.seqLen = seqLen
        self.batch = batch
        self.maxWindows = maxWindows
        self.alsoFirst = alsoFirst
        self.quiet = quiet
    }

    public func validate() throws {
        guard seqLen >= 2 else { throw EvalError.invalidOption(flag: "--seq-len", reason: "must be at least 2, got \(seqLen)") }
        guard batch >= 1 else { throw EvalError.invalidOption(flag: "--batch", reason: "must be positive, got \(batch)") }
        if let m = maxWindows, m < 1 {
            throw EvalError.invalidOption(flag: "--max-windows", reason: "must be positive, got \(m)")
        }
        if let f = alsoFirst, f < 1 {
            throw EvalError.invalidOption(flag: "--also-first", reason: "must be positive, got \(f)")
        }
    }
}

public struct PerplexityResult: Codable, Sendable {
    public var perplexity: Double
    public var nllMean: Double
    public var tokens: Int          // ids in the whole text
    public var windows: Int         // windows evaluated
    public var scored: Int          // predictions scored
    public var seconds: Double      // forward time
    public var tokensPerSecond: Double
    public var seqLen: Int
    /// With `alsoFirst`: the same protocol over the first windows only.
    public var first: Prefix?

    public struct Prefix: Codable, Sendable {
        public var windows: Int
        public var perplexity: Double
        public var nllMean: Double
    }
}

public enum Perplexity {
    public static func evaluate(runner: LlamaRunner, ids: [Int32], options o: PerplexityOptions,
                                source: String) throws -> PerplexityResult {
        try o.validate()
        let available = ids.count / o.seqLen
        guard available > 0 else { throw EvalError.tooShort(path: source, tokens: ids.count, needed: o.seqLen) }
        let windows = min(available, o.maxWindows ?? available)
        if let f = o.alsoFirst, f > windows {
            throw EvalError.invalidOption(flag: "--also-first", reason: "\(f) is more than the \(windows) windows evaluated")
        }
        let bar = ProgressBar(total: windows * o.seqLen, label: "ppl", unit: "tok", quiet: o.quiet)
        var nll = 0.0
        let start = Date()
        var w = 0
        var first: PerplexityResult.Prefix?
        while w < windows {
            var b = min(o.batch, windows - w)
            if let f = o.alsoFirst, w < f { b = min(b, f - w) }
            let chunk = Array(ids[(w * o.seqLen)..<((w + b) * o.seqLen)])
            nll += try runner.nextTokenNLL(tokens: chunk, batch: b, seqLen: o.seqLen).reduce(0, +)
            w += b
            if let f = o.alsoFirst, w == f {
                let mean = nll / Double(f * (o.seqLen - 1))
                first = .init(windows: f, perplexity: Foundation.exp(mean), nllMean: mean)
            }
            bar.advance(by: b * o.seqLen)
        }
        bar.finish()
        let secs = Date().timeIntervalSince(start)
        let scored = windows * (o.seqLen - 1)
        let mean = nll / Double(scored)
        return PerplexityResult(perplexity: Foundation.exp(mean), nllMean: mean, tokens: ids.count, windows: windows,
                                scored: scored, seconds: secs, tokensPerSecond: Double(windows * o.seqLen) / secs,
                                seqLen: o.seqLen, first: first)
    }
}
