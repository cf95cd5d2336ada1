import Foundation
import LlamaModel
import TensorCore

/// `llmprune bench`: forward throughput at a fixed batch geometry, with where the time goes and how close
/// the products come to OpenBLAS' own peak on this machine.
enum BenchCommand {
    struct Report: Encodable {
        var model: String, batch: Int, seqLen: Int, iterations: Int, threads: Int, blasCore: String
        var tokensPerSecond: Double, secondsPerIteration: Double
        var phaseSeconds: [String: Double]      // per iteration
        var sgemmShare: Double                  // share of forward time in projection / LM-head sgemm
        var attentionShare: Double
        var sgemmGFLOPs: Double                 // achieved in those products
        var blasPeakGFLOPs: Double              // OpenBLAS alone on the largest projection shape
        var modelGFLOPs: Double                 // whole forward, model FLOPs / wall time
    }

    static let batch = Flag<Int>("batch", "N", default: "8", help: "sequences per forward", parse: Parse.int(min: 1))
    static let seqLen = Flag<Int>("seq-len", "N", default: "128", help: "tokens per sequence (at most the model's context)",
                                  parse: Parse.int(min: 2))
    static let iters = Flag<Int>("iters", "N", default: "5", help: "timed iterations (after one warm-up)",
                                 parse: Parse.int(min: 1))
    static let gradients = Switch("gradients", help: "time the gradient pass instead of the forward")
    static let fisher = Switch("fisher", help: "with --gradients: the Fisher diagonal too")
    static let layers = Flag<String>("layers", "START:END", help: "with --gradients: scored layers (default 4:L-2)",
                                     parse: Parse.text)
    static let flags = CommandFlags(
        own: [CommonFlags.model.info, batch.info, seqLen.info, iters.info, gradients.info, fisher.info, layers.info,
              CommonFlags.threads.info, CommonFlags.json.info],
        groups: [])

    static func run(_ argv: [String]) throws {
        var a = try Arguments(argv, accepting: flags.all)
        let path = try a.required("model")
        let batch = try a.value(Self.batch), seqLen = try a.value(Self.seqLen)
        let iters = try a.value(Self.iters)
        let json = a.flag("json")
        let gradients = a.flag(Self.gradients), fisher = a.flag(Self.fisher)
        let layerSpec = a.string("layers")
        try CLI.applyThreads(&a)
        try a.finish()
        try CLI.checkContext(Self.seqLen.info.name, seqLen, try ModelLoader.config(path: path))
        let m = try CLI.loadModel(path, tokenizer: false)
        if gradients {
            let layers = try CLI.layerRange(layerSpec, layers: m.config.numLayers)
            try benchGradients(m, batch: batch, seqLen: seqLen, iters: iters, layers: layers, fisher: fisher, json: json)
            return
        }
        let runner = LlamaRunner(weights: m.weights)
        var rng = SplitMix64(seed: 42)
        let tokens = (0..<batch * seqLen).map { _ in Int32(rng.next() % UInt64(m.config.vocabSize)) }
        _ = try runner.nextTokenNLL(tokens: tokens, batch: batch, seqLen: seqLen)   // warm-up
        runner.profile = ForwardProfile()
        let t0 = Date()
        for _ in 0..<iters { _ = try runner.nextTokenNLL(tokens: tokens, batch: batch, seqLen: seqLen) }
        let wall = Date().timeIntervalSince(t0) / Double(iters)
        let prof = runner.profile!
        let c = m.config, n = batch * seqLen
        let peak = blasPeak(m: n, k: c.hiddenSize, n: 2 * c.layers.map(\.intermediateSize).max()!)
        let r = Report(
            model: m.path, batch: batch, seqLen: seqLen, iterations: iters, threads: BLAS.threads, blasCore: BLAS.coreName,
            tokensPerSecond: Double(n) / wall, secondsPerIteration: wall,
            phaseSeconds: prof.seconds.mapValues { $0 / Double(iters) },
            sgemmShare: prof.gemmSeconds / prof.total, attentionShare: (prof.seconds["attention"] ?? 0) / prof.total,
            sgemmGFLOPs: prof.gemmFlops / prof.gemmSeconds / 1e9, blasPeakGFLOPs: peak,
            modelGFLOPs: (prof.gemmFlops + prof.attentionFlops) / Double(iters) / wall / 1e9)
        if json { try CLI.printJSON(r); return }
        print(String(format: "forward %d×%d: %.1f tok/s (%.3f s/iter, %d threads, %@)", batch, seqLen, r.tokensPerSecond,
                     wall, r.threads, r.blasCore))
        print(String(format: "sgemm share %.1f%%, attention %.1f%%; sgemm %.1f GFLOP/s vs OpenBLAS peak %.1f (%.0f%%)",
                     100 * r.sgemmShare, 100 * r.attentionShare, r.sgemmGFLOPs, peak, 100 * r.sgemmGFLOPs / peak))
        for (k, v) in r.phaseSeconds.sorted(by: { $0.value > $1.value }) {
            print(String(format: "  %-10@ %7.1f ms", k, v * 1000))
        }
    }

    struct GradientReport: Encodable {
        var model: String, batch: Int, seqLen: Int, layers: [Int], fisher: Bool, threads: Int
        var secondsPerPass: Double, loss: Double, peakActivationMB: Double, peakRSSMB: Double
    }

    /// Time of one gradient pass (forward + backward to the lowest scored layer) at the calibration geometry.
    static func benchGradients(_ m: LoadedModel, batch: Int, seqLen: Int, iters: Int, layers: Range<Int>, fisher: Bool,
                               json: Bool) throws {
        let pass = GradientPass(weights: m.weights)
        var rng = SplitMix64(seed: 42)
        let tokens = (0..<batch * seqLen).map { _ in Int32(rng.next() % UInt64(m.config.vocabSize)) }
        var r = try pass.gradients(tokens: tokens, batch: batch, seqLen: seqLen, layers: layers, fisher: fisher)
        pass.runner.profile = ForwardProfile()
        let t0 = Date()
        for _ in 0..<iters { r = try pass.gradients(tokens: tokens, batch: batch, seqLen: seqLen, layers: layers, fisher: fisher) }
        let secs = Date().timeIntervalSince(t0) / Double(iters)
        let rep = GradientReport(model: m.path, batch: batch, seqLen: seqLen, layers: [layers.lowerBound, layers.upperBound],
                                 fisher: fisher, threads: BLAS.threads, secondsPerPass: secs, loss: r.loss,
                                 peakActivationMB: Double(r.peakActivationBytes) / 1e6, peakRSSMB: CLI.peakRSSMB())
        if json { try CLI.printJSON(rep); return }
        let fwd = pass.runner.profile!.total / Double(iters)
        print(String(format: "  of which forward/recompute phases: %.3f s", fwd))
        print(String(format: "gradients %d×%d, layers %d..<%d%@: %.3f s/pass, loss %.4f, activations %.1f MB, peak RSS %.0f MB",
                     batch, seqLen, layers.lowerBound, layers.upperBound, fisher ? " + Fisher" : "", secs, r.loss,
                     rep.peakActivationMB, rep.peakRSSMB))
    }

    /// Best-of-5 GFLOP/s of one sgemm [m×k]·[n×k]ᵀ, OpenBLAS alone at the current thread count.
    static func blasPeak(m: Int, k: Int, n: Int) -> Double {
        let a = [Float](repeating: 0.5, count: m * k), b = [Float](repeating: 0.25, count: n * k)
        var c = [Float](repeating: 0, count: m * n)
        var best = 0.0
        for _ in 0..<6 {
            let t0 = Date()
            BLAS.gemm(m: m, n: n, k: k, a: a, b: b, bTransposed: true, c: &c)
            best = max(best, 2.0 * Double(m * n * k) / Date().timeIntervalSince(t0) / 1e9)
        }
        return best
    }
}
