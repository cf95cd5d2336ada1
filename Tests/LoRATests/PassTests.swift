// The LoRA pass on Swift-only models: finite differences of the adapter gradients (with and without
// dropout), determinism, kept-versus-recomputed activations, dropout statistics, and that nothing but the
// adapters changes.
import Foundation
import LlamaModel
import TensorCore
import Testing
@testable import LoRA

struct PassTests {
    static let examples = syntheticExamples(vocab: 80, lengths: [9, 6, 11], masked: [3, 1, 5], seed: 3)

    static func pass(dropout: Double = 0, targets: Set<LoRATarget> = Set(LoRATarget.allCases), tied: Bool = true) throws
        -> LoRAPass
    {
        var c = heterogeneousConfig
        c.tieWordEmbeddings = tied
        let w = LlamaWeights.random(config: c, seed: 21, scale: 0.25)
        let a = try randomAdapters(heterogeneousConfig, config: LoRAConfig(rank: 4, alpha: 8, dropout: dropout, targets: targets),
                                   seed: 5, bScale: 0.3)
        return try LoRAPass(base: w, adapters: a)
    }

    /// Central differences of the mean loss for the largest-gradient elements of every A and B.
    func checkFiniteDifferences(dropout: Double, tied: Bool = true) throws {
        let p = try Self.pass(dropout: dropout, tied: tied)
        let batch = try TokenBatch(examples: Self.examples)
        let count = Double(batch.predictionCount), seed: UInt64 = 99
        try p.accumulateGradients(batch, lossDivisor: count, dropoutSeed: seed)
        let g = p.flatGradients
        let a = p.adapters, r = a.config.rank
        func loss() throws -> Double { try p.evaluate(batch, dropoutSeed: seed).nll / count }
        let eps: Float = 1e-2
        var worst = 0.0, checked = 0
        for s in a.slots {
            for (off, n) in [(s.aOffset, r * s.inFeatures), (s.bOffset, r * s.outFeatures)] {
                for i in (off..<off + n).sorted(by: { abs(g[$0]) > abs(g[$1]) }).prefix(2) {
                    let base = a.parameters[i]
                    a.parameters[i] = base + eps
                    let up = try loss()
                    a.parameters[i] = base - eps
                    let down = try loss()
                    a.parameters[i] = base
                    let fd = (up - down) / Double(2 * eps)
                    let rel = abs(fd - Double(g[i])) / max(abs(fd), 1e-3)
                    worst = max(worst, rel)
                    checked += 1
                    #expect(rel < 1e-2, "layer \(s.layer) \(s.target) [\(i)]: analytic \(g[i]) vs finite difference \(fd)")
                }
            }
        }
        print("finite differences (dropout \(dropout), tied \(tied)): \(checked) elements, worst relative error \(worst)")
    }

    @Test func finiteDifferences() throws { try checkFiniteDifferences(dropout: 0) }

    @Test func finiteDifferencesUntiedHead() throws { try checkFiniteDifferences(dropout: 0, tied: false) }

    /// With dropout the backward must be the transpose of the forward's masks for the same seed.
    @Test func finiteDifferencesWithDropout() throws { try checkFiniteDifferences(dropout: 0.3) }

    /// Here and in the other exact comparisons of two computations below, at one OpenBLAS thread: its rounding
    /// depends on the process-wide thread count, which a test running alongside can change between the two.
    @Test func lossEqualsPlainForwardWhenBIsZero() throws { try BLAS.singleThreaded { try plainForwardWhenBIsZero() } }

    func plainForwardWhenBIsZero() throws {
        let w = LlamaWeights.random(config: heterogeneousConfig, seed: 21, scale: 0.25)
        let a = try LoRAAdapters.initialized(config: LoRAConfig(rank: 4), model: heterogeneousConfig)
        let p = try LoRAPass(base: w, adapters: a)
        let tokens = Self.examples[0].ids
        let got = try p.logits(tokens: tokens, batch: 1, seqLen: tokens.count)
        let want = try LlamaRunner(weights: w).logits(tokens: tokens, batch: 1, seqLen: tokens.count)
        #expect(zip(got, want).map { abs($0 - $1) }.max()! == 0)
    }

    @Test func dropoutZeroIsExactlyDeterministic() throws { try BLAS.singleThreaded { try dropoutZeroDeterministic() } }

    func dropoutZeroDeterministic() throws {
        let batch = try TokenBatch(examples: Self.examples)
        var runs: [[Float]] = []
        var losses: [Double] = []
        for seed in [1, 2] as [UInt64] {
            let p = try Self.pass(dropout: 0)
            losses.append(try p.accumulateGradients(batch, lossDivisor: 7, dropoutSeed: seed).nll)
            runs.append(p.flatGradients)
        }
        #expect(runs[0] == runs[1] && losses[0] == losses[1])
    }

    @Test func dropoutSeededAndMasksTheAdapterOnly() throws {
        let batch = try TokenBatch(examples: Self.examples)
        func grads(_ seed: UInt64) throws -> ([Float], Double) {
            let p = try Self.pass(dropout: 0.2)
            let l = try p.accumulateGradients(batch, lossDivisor: 7, dropoutSeed: seed)
            return (p.flatGradients, l.nll)
        }
        let (a, la) = try grads(1), (b, lb) = try grads(1), (c, lc) = try grads(2)
        #expect(a == b && la == lb)
        #expect(a != c && la != lc)
        // Evaluation has no dropout: with B = 0 the adapters contribute nothing, with or without masks.
        let p = try Self.pass(dropout: 0.2)
        #expect(try p.evaluate(batch).nll == (try p.evaluate(batch)).nll)
    }

    @Test func dropoutMaskRateAndScale() {
        let rows = 64, cols = 301, p = 0.05
        let m = DropoutBits()
        m.fill(DropoutMask(p: p, seed: 7, layer: 3, target: 2), rows: rows, cols: cols)
        let x = [Float](repeating: 1, count: rows * cols)
        var y = [Float](repeating: -1, count: rows * cols)
        x.withUnsafeBufferPointer { xs in y.withUnsafeMutableBufferPointer { m.apply(xs.baseAddress!, to: $0.baseAddress!) } }
        let zeros = y.filter { $0 == 0 }.count
        let rate = Double(zeros) / Double(rows * cols)
        #expect(abs(rate - p) < 0.01, "dropped \(rate)")
        #expect(m.keptCount == rows * cols - zeros)
        #expect(y.allSatisfy { $0 == 0 || abs($0 - Float(1 / (1 - p))) < 1e-6 })
        // the transpose uses the same mask
        var acc = [Float](repeating: 0, count: rows * cols)
        x.withUnsafeBufferPointer { xs in acc.withUnsafeMutableBufferPointer { m.accumulate(xs.baseAddress!, into: $0.baseAddress!) } }
        #expect(acc == y)
        // the same key draws the same mask; another (layer, target) another one
        let again = DropoutBits(), other = DropoutBits()
        again.fill(DropoutMask(p: p, seed: 7, layer: 3, target: 2), rows: rows, cols: cols)
        other.fill(DropoutMask(p: p, seed: 7, layer: 3, target: 3), rows: rows, cols: cols)
        var z = [Float](repeating: 0, count: rows * cols), w = z
        x.withUnsafeBufferPointer { xs in z.withUnsafeMutableBufferPointer { again.apply(xs.baseAddress!, to: $0.baseAddress!) } }
        x.withUnsafeBufferPointer { xs in w.withUnsafeMutableBufferPointer { other.apply(xs.baseAddress!, to: $0.baseAddress!) } }
        #expect(z == y && w != y)
    }

    /// The mask is the definition's: element (r, c) of a pair (c even, c+1) takes the low / high 32 bits of the
    /// (c/2 + 1)-th SplitMix64 output of row r's stream, kept when ≥ p·2³² — checked element by element against that
    /// scalar definition (odd and multiple-of-64 widths), through `apply` and `accumulate`.
    @Test(arguments: [1, 17, 64, 301, 1536])
    func dropoutMaskIsTheScalarDefinition(cols: Int) {
        let rows = 19, p = 0.3
        let key = DropoutMask(p: p, seed: 11, layer: 2, target: 5)
        let m = DropoutBits()
        m.fill(key, rows: rows, cols: cols)
        let threshold = UInt32(p * 4_294_967_296.0)
        var want = [Bool](repeating: false, count: rows * cols)
        for r in 0..<rows {
            var state = DropoutMask.mix(key.key, UInt64(r))
            var c = 0
            while c < cols {
                state &+= 0x9E37_79B9_7F4A_7C15
                var z = state
                z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
                z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
                z ^= z >> 31
                want[r * cols + c] = UInt32(truncatingIfNeeded: z) >= threshold
                if c + 1 < cols { want[r * cols + c + 1] = UInt32(truncatingIfNeeded: z >> 32) >= threshold }
                c += 2
            }
        }
        let x = (0..<rows * cols).map { Float($0 % 13) - 6 }
        var y = [Float](repeating: 7, count: rows * cols), acc = [Float](repeating: 1, count: rows * cols)
        x.withUnsafeBufferPointer { xs in
            y.withUnsafeMutableBufferPointer { m.apply(xs.baseAddress!, to: $0.baseAddress!) }
            acc.withUnsafeMutableBufferPointer { m.accumulate(xs.baseAddress!, into: $0.baseAddress!) }
        }
        let s = Float(1 / (1 - p))
        for i in 0..<rows * cols {
            #expect(y[i] == (want[i] ? x[i] * s : 0), "element \(i)")
            #expect(acc[i] == (want[i] ? 1 + x[i] * s : 1), "element \(i)")
        }
        #expect(m.keptCount == want.filter { $0 }.count)
    }

    /// Buffers are reused between passes: results must not depend on what ran before.
    @Test func reusedBuffersDoNotLeakBetweenPasses() throws { try BLAS.singleThreaded { try reusedBuffers() } }

    func reusedBuffers() throws {
        let p = try Self.pass(dropout: 0.1)
        let a = try TokenBatch(examples: Self.examples), b = try TokenBatch(examples: [Self.examples[1]])
        let first = try p.accumulateGradients(a, lossDivisor: 3, dropoutSeed: 8)
        let g1 = p.flatGradients
        p.zeroGradients()
        _ = try p.accumulateGradients(b, lossDivisor: 1, dropoutSeed: 9)
        _ = try p.logits(tokens: Self.examples[2].ids, batch: 1, seqLen: Self.examples[2].ids.count)
        p.zeroGradients()
        #expect(try p.accumulateGradients(a, lossDivisor: 3, dropoutSeed: 8) == first)
        #expect(p.flatGradients == g1)
    }

    @Test func recomputedActivationsGiveTheSameGradients() throws {
        let batch = try TokenBatch(examples: Self.examples)
        let kept = try Self.pass(dropout: 0.1), recomputed = try Self.pass(dropout: 0.1)
        recomputed.activationBudgetBytes = 0
        let l1 = try kept.accumulateGradients(batch, lossDivisor: 5, dropoutSeed: 4)
        let l2 = try recomputed.accumulateGradients(batch, lossDivisor: 5, dropoutSeed: 4)
        #expect(l1 == l2)
        #expect(kept.flatGradients == recomputed.flatGradients)
        #expect(recomputed.lastActivationBytes < kept.lastActivationBytes)
    }

    @Test func accumulationOverMicroBatchesEqualsOneBatch() throws {
        let whole = try Self.pass(), split = try Self.pass()
        let all = try TokenBatch(examples: Self.examples)
        let n = Double(all.predictionCount)
        try whole.accumulateGradients(all, lossDivisor: n, dropoutSeed: 0)
        for e in Self.examples { try split.accumulateGradients(try TokenBatch(examples: [e]), lossDivisor: n, dropoutSeed: 0) }
        let a = whole.flatGradients, b = split.flatGradients
        let scale = b.map { abs($0) }.max()!
        let diff = zip(a, b).map { abs($0 - $1) }.max()!
        print("micro-batch accumulation vs one batch: max abs diff \(diff) (scale \(scale))")
        #expect(diff <= 1e-5 * scale)
    }

    @Test func subsetOfTargetsAndFlatGradientAccess() throws {
        let p = try Self.pass(targets: [.v, .down])
        #expect(p.adapters.slots.map(\.target) == [.v, .down, .v, .down, .v, .down])
        let batch = try TokenBatch(examples: Self.examples)
        try p.accumulateGradients(batch, lossDivisor: 3, dropoutSeed: 0)
        let g = p.flatGradients
        #expect(g.contains { $0 != 0 })
        p.withFlatGradients { buf in for i in buf.indices { buf[i] *= 2 } }   // as an in-place allreduce would
        #expect(p.flatGradients == g.map { $0 * 2 })
        p.flatGradients = g
        #expect(p.flatGradients == g)
        p.zeroGradients()
        #expect(p.flatGradients.allSatisfy { $0 == 0 })
    }

    @Test func baseWeightsAreNotTouched() throws {
        let p = try Self.pass()
        let before = p.base.huggingFaceTensors().map(\.values)
        var o = TrainingOptions()
        o.batchSize = 3; o.microBatchSize = 2; o.warmupSteps = 0; o.learningRate = 1e-2
        let t = try LoRATrainer(pass: p, options: o, totalSteps: 2)
        let params0 = p.adapters.parameters
        _ = try t.trainStep(Self.examples)
        #expect(p.base.huggingFaceTensors().map(\.values) == before)
        #expect(p.adapters.parameters != params0)
    }

    @Test func rejectsBadInput() throws {
        let p = try Self.pass()
        let bad = try TokenBatch(tokens: [1, 2, 200], labels: [1, 2, 3], batch: 1, seqLen: 3)
        #expect(throws: LoRAError.self) { try p.evaluate(bad) }
        let badLabel = try TokenBatch(tokens: [1, 2, 3], labels: [1, -5, 3], batch: 1, seqLen: 3)
        #expect(throws: LoRAError.self) { try p.evaluate(badLabel) }
        #expect(throws: LoRAError.self) { try TokenBatch(tokens: [1, 2], labels: [1], batch: 1, seqLen: 2) }
        let other = try LoRAAdapters(config: LoRAConfig(), model: LlamaConfig(
            vocabSize: 80, hiddenSize: 24, headDim: 6, layers: [LayerShape(numHeads: 4, numKVHeads: 2, intermediateSize: 40)],
            rmsNormEps: 1e-5, ropeTheta: 1e4, maxPositionEmbeddings: 64, tieWordEmbeddings: true))
        #expect(throws: LoRAError.self) { try LoRAPass(base: p.base, adapters: other) }
    }
}
