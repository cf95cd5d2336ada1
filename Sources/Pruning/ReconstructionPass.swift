// The forward sweep that feeds the refit (Reconstruction.swift): the reconstruction tokens' residual streams go
// through the model one layer at a time, in micro-batches, through the one TransformerBlock; after each pruned
// layer has seen every token, its o_proj and down_proj are refit and the sweep moves on. It holds the streams
// ([N × d] each), one micro-batch's internals and one layer's Grams, whatever the number of layers, so the same
// step serves a whole model, a pipeline stage's block of layers, and a low-memory stage that widens one layer at
// a time.
import Foundation
import LlamaModel
import Support
import TensorCore

public final class ReconstructionSweep {
    public let method: ReconstructionMethod
    public let ridge: Double
    /// Also refit o_proj's and down_proj's biases (ReconstructionSettings.bias).
    public let bias: Bool
    let config: LlamaConfig
    let batch: Int, seqLen: Int, microBatch: Int
    /// The unpruned model's residual stream [N × d] (N = batch·seqLen), at the input of the next layer.
    public let dense: FloatBuffer
    /// A copy of the dense stream [N × d] (what a pipeline stage hands to the next).
    public func denseStream() -> [Float] { dense.array(batch * seqLen * config.hiddenSize) }
    /// The pruned (and refit) model's stream, `lstsq-seq` only.
    public let pruned: FloatBuffer?
    let block: TransformerBlock
    let denseT: LayerInternals, prunedT: LayerInternals
    let h: FloatBuffer, scratchOut: FloatBuffer

    /// Tokens of one micro-batch by default: one fp32 Gram product sums about this many rows.
    public static let microBatchTokens = 2048

    /// Sequences of one micro-batch: whole sequences, about `tokens` tokens.
    public static func microBatch(seqLen: Int, tokens: Int = microBatchTokens) -> Int { max(1, tokens / max(seqLen, 1)) }

    /// A sweep over `batch` sequences of `seqLen` tokens; `embedded` writes their token embeddings [N × d].
    public init(config: LlamaConfig, batch: Int, seqLen: Int, method: ReconstructionMethod, ridge: Double,
                bias: Bool = false, microBatchTokens: Int = microBatchTokens,
                embedded: (UnsafeMutablePointer<Float>) throws -> Void) rethrows {
        precondition(method != .none)
        self.config = config
        self.method = method
        self.ridge = ridge
        self.bias = bias
        self.batch = batch
        self.seqLen = seqLen
        microBatch = min(batch, Self.microBatch(seqLen: seqLen, tokens: microBatchTokens))
        let d = config.hiddenSize, n = batch * seqLen, rows = microBatch * seqLen
        dense = FloatBuffer(n * d)
        try embedded(dense.p)
        if method == .lstsqSequential {
            let p = FloatBuffer(n * d)
            p.p.update(from: dense.p, count: n * d)
            pruned = p
        } else {
            pruned = nil
        }
        block = TransformerBlock(config: config)
        block.ensureRope(seqLen)
        let g = BlockGeometry(batch: microBatch, seqLen: seqLen)
        let widest = Self.widest(config)
        func internals() -> LayerInternals {
            let e = LayerInternals(shape: widest, config: config, geometry: g, allocate: FloatBuffer.init)
            return LayerInternals(qkv: e.qkv, probs: nil, attn: e.attn, xMid: e.xMid, gu: e.gu, act: e.act)
        }
        denseT = internals()
        prunedT = method == .lstsqSequential ? internals() : denseT
        h = FloatBuffer(rows * d)
        scratchOut = FloatBuffer(rows * d)
    }

    /// The widest widths over the layers: what one set of micro-batch internals must hold.
    static func widest(_ c: LlamaConfig) -> LayerShape {
        LayerShape(numHeads: c.layers.map(\.numHeads).max()!, numKVHeads: c.layers.map(\.numKVHeads).max()!,
                   intermediateSize: c.layers.map(\.intermediateSize).max()!)
    }

    /// Writes the embeddings of `tokens` from `table` [V × d] (the `embedded` argument of `init`).
    public static func embedding(_ tokens: [Int32], table: [Float], config c: LlamaConfig)
        -> (UnsafeMutablePointer<Float>) throws -> Void
    {
        { x in
            let d = c.hiddenSize
            try table.withUnsafeBufferPointer { e in
                for (t, id) in tokens.enumerated() {
                    guard id >= 0, Int(id) < c.vocabSize, e.count >= (Int(id) + 1) * d else {
                        throw ModelError.invalidInput("reconstruction: token id \(id) outside the vocabulary (\(c.vocabSize))")
                    }
                    (x + t * d).update(from: e.baseAddress! + Int(id) * d, count: d)
                }
            }
        }
    }

    /// Bytes the sweep holds besides one layer's Grams: the streams, two micro-batches' internals without the
    /// softmax, and two [rows × d] work buffers (what the memory planner counts).
    public static func bytes(config c: LlamaConfig, batch: Int, seqLen: Int, method: ReconstructionMethod) -> Int {
        let mb = min(batch, microBatch(seqLen: seqLen)), rows = mb * seqLen, n = batch * seqLen, d = c.hiddenSize
        let widest = Self.widest(c)
        let g = BlockGeometry(batch: mb, seqLen: seqLen)
        let internals = LayerInternals.bytes(widest, config: c, geometry: g) - 4 * mb * widest.numHeads * seqLen * seqLen
        let streams = method == .lstsqSequential ? 2 : 1
        return 4 * streams * n * d + (method == .lstsqSequential ? 2 : 1) * internals + 4 * 2 * rows * d
    }

    /// Peak bytes of one pruned layer's `lstsq` step beyond the sweep, for micro-batches of `rows` tokens: both
    /// Float64 accumulators with their widened micro-batch (8·(o² + I²) + 8·rows·(o + I), o = nq·hd), the
    /// symmetrised (and, over ranks, reduced) matrices (8 or 16·(o² + I²)), and the Float64 solve of the wider
    /// projection (G[K,K], its factor and the system: 3·K², G[:,K]: I·K, W and W·G: 2·d·I, W_K, the right-hand
    /// sides, the solution and a product: 5·d·K; times 8), K = kept·I.
    public static func stepBytes(original s: LayerShape, keptFraction: Double, headDim hd: Int, hidden d: Int,
                                 rows: Int, reduced: Bool) -> Int {
        let o = s.numHeads * hd, i = s.intermediateSize, wide = max(o, i)
        let k = Int((keptFraction * Double(wide)).rounded())
        let squares = o * o + i * i
        return GramAccumulator.bytes(o, o, symmetric: true, rows: rows) + GramAccumulator.bytes(i, i, symmetric: true, rows: rows)
            + (reduced ? 16 : 8) * squares + 8 * (3 * k * k + wide * k + 2 * d * wide + 5 * d * k)
    }

    /// Runs layer `l` over every token. `original` is the unpruned layer, `lp` its plan when it is pruned (the
    /// plan checked against the model: `Pruner.apply` or `PrunePlan.decode`). `reduce` sums a Gram over ranks
    /// (identity in one process). Returns the refit o_proj and down_proj and their report for a pruned layer.
    public func step(layer l: Int, original: LayerWeights, plan lp: LayerPlan?,
                     reduce: ([Double]) throws -> [Double] = { $0 }) throws -> (RefitWeights, ReconstructionLayerReport)? {
        guard let lp else {
            forEachChunk { x, g in run(original, l, x: x, out: x, t: denseT, g: g) }
            if let pruned { forEachChunk(pruned) { x, g in run(original, l, x: x, out: x, t: prunedT, g: g) } }
            return nil
        }
        let hd = config.headDim, s = original.shape
        var cut = Pruner.cut(original, by: lp, headDim: hd, hiddenSize: config.hiddenSize)
        let oIn = s.numHeads * hd, keptO = LeastSquaresRefit.keptColumns(queryHeads: lp.keptQueryHeads, headDim: hd)
        let keptI = lp.keptMLPChannels
        let oFit: ProjectionFit, downFit: ProjectionFit
        switch method {
        case .none:
            preconditionFailure("no sweep without a reconstruction")
        case .lstsq:
            // One pass of the unpruned layer: G of o's and of down's input; the stream moves on in place.
            let grams = inputGrams(layer: l, weights: original, affine: bias)
            let gO = try reduce(grams.o), gD = try reduce(grams.down)
            (cut.wo, cut.bo, oFit) = try refit(original.wo, bias: original.bo, inputs: oIn, kept: keptO, full: gO,
                                               layer: l, what: "o_proj")
            (cut.wDown, cut.bDown, downFit) = try refit(original.wDown, bias: original.bDown, inputs: s.intermediateSize,
                                                        kept: keptI, full: gD, layer: l, what: "down_proj")
        case .lstsqSequential:
            let pruned = pruned!
            // Pass 1: o's inputs in both models (nothing moves: outputs go to scratch).
            var grams = Grams(full: oIn, kept: keptO.count, affine: bias)
            forEachPair { x, xp, g in
                run(original, l, x: x, out: scratchOut.p, t: denseT, g: g)
                run(cut, l, x: xp, out: scratchOut.p, t: prunedT, g: g)
                grams.add(dense: denseT.attn.p, pruned: prunedT.attn.p, rows: g.tokens)
            }
            (cut.wo, cut.bo, oFit) = try refitSequential(original.wo, bias: original.bo, grams, kept: keptO, reduce: reduce,
                                                         layer: l, what: "o_proj")
            // Pass 2: down's inputs, the pruned layer now with its refit o; the dense stream moves on.
            grams = Grams(full: s.intermediateSize, kept: keptI.count, affine: bias)
            forEachPair { x, xp, g in
                run(original, l, x: x, out: x, t: denseT, g: g)
                run(cut, l, x: xp, out: scratchOut.p, t: prunedT, g: g)
                grams.add(dense: denseT.act.p, pruned: prunedT.act.p, rows: g.tokens)
            }
            (cut.wDown, cut.bDown, downFit) = try refitSequential(original.wDown, bias: original.bDown, grams, kept: keptI,
                                                                  reduce: reduce, layer: l, what: "down_proj")
            // Pass 3: the pruned stream moves on through the refit layer.
            forEachChunk(pruned) { x, g in run(cut, l, x: x, out: x, t: prunedT, g: g) }
        }
        return (RefitWeights(wo: cut.wo, wDown: cut.wDown, bo: bias ? cut.bo : nil, bDown: bias ? cut.bDown : nil),
                ReconstructionLayerReport(layer: l, o: oFit, down: downFit))
    }

    /// Runs layer `l` (weights `w`) over every token: the dense stream moves on (a layer nothing reads from).
    public func advance(layer l: Int, weights w: LayerWeights) {
        forEachChunk { x, g in run(w, l, x: x, out: x, t: denseT, g: g) }
    }

    /// Runs layer `l` over every token, moving the dense stream on, and returns the Grams X Xᵀ of its o_proj input
    /// [nq·hd]² and down_proj input [I]² (Float64; with `affine`, of [X, 1]: GramAccumulator.matrix). What the
    /// `lstsq` refit and OBSCriterion read.
    public func inputGrams(layer l: Int, weights w: LayerWeights, affine: Bool = false) -> (o: [Double], down: [Double]) {
        let s = w.shape, oIn = s.numHeads * config.headDim
        let go = GramAccumulator(oIn, oIn, symmetric: true, affine: affine)
        let gd = GramAccumulator(s.intermediateSize, s.intermediateSize, symmetric: true, affine: affine)
        forEachChunk { x, g in
            run(w, l, x: x, out: x, t: denseT, g: g)
            go.add(x: denseT.attn.p, rows: g.tokens)
            gd.add(x: denseT.act.p, rows: g.tokens)
        }
        return (go.matrix(), gd.matrix())
    }

    // MARK: - internals

    /// The three Grams of the sequential refit: X Xᵀ, P Pᵀ and X Pᵀ.
    struct Grams {
        let xx: GramAccumulator, pp: GramAccumulator, xp: GramAccumulator
        init(full: Int, kept: Int, affine: Bool) {
            xx = GramAccumulator(full, full, symmetric: true, affine: affine)
            pp = GramAccumulator(kept, kept, symmetric: true, affine: affine)
            xp = GramAccumulator(full, kept, symmetric: false, affine: affine)
        }
        func add(dense: UnsafePointer<Float>, pruned: UnsafePointer<Float>, rows: Int) {
            xx.add(x: dense, rows: rows)
            pp.add(x: pruned, rows: rows)
            xp.add(x: dense, y: pruned, rows: rows)
        }
    }

    /// The refit of W [d × n] (and its bias b0, empty for none) from the full Gram `g` of its input — with a bias
    /// refit, of [input, 1] ([(n+1)²], GramAccumulator's affine matrix), and W's last column is then the bias.
    /// Returns the weight [d × K] and the bias [d] (b0 unchanged without a bias refit).
    func refit(_ w: [Float], bias b0: [Float], inputs n: Int, kept: [Int], full g: [Double], layer l: Int, what: String)
        throws -> ([Float], [Float], ProjectionFit)
    {
        let (wa, na, ka) = augmented(w, bias: b0, inputs: n, kept: kept)
        let (sol, fit) = try LeastSquaresRefit.solve(weight: wa, inputs: na, kept: ka,
                                                     gramKept: LeastSquaresRefit.submatrix(g, n: na, rows: ka, cols: ka),
                                                     cross: LeastSquaresRefit.submatrix(g, n: na, rows: nil, cols: ka),
                                                     gramFull: g, ridge: ridge, unpenalized: bias ? 1 : 0,
                                                     what: "layer \(l) \(what)")
        let (wk, b) = split(sol, kept: kept.count, bias: b0)
        return (wk, b, fit)
    }

    func refitSequential(_ w: [Float], bias b0: [Float], _ grams: Grams, kept: [Int], reduce: ([Double]) throws -> [Double],
                         layer l: Int, what: String) throws -> ([Float], [Float], ProjectionFit) {
        let (wa, na, ka) = augmented(w, bias: b0, inputs: grams.xx.a, kept: kept)
        let (sol, fit) = try LeastSquaresRefit.solve(weight: wa, inputs: na, kept: ka, gramKept: try reduce(grams.pp.matrix()),
                                                     cross: try reduce(grams.xp.matrix()),
                                                     gramFull: try reduce(grams.xx.matrix()), ridge: ridge,
                                                     unpenalized: bias ? 1 : 0, what: "layer \(l) \(what)")
        let (wk, b) = split(sol, kept: kept.count, bias: b0)
        return (wk, b, fit)
    }

    /// With a bias refit: [W, b0] [d × (n+1)] (b0 zero when the model has none), n+1 inputs, and the constant input
    /// n kept last; otherwise W, n and `kept` as they are.
    func augmented(_ w: [Float], bias b0: [Float], inputs n: Int, kept: [Int]) -> ([Float], Int, [Int]) {
        guard bias else { return (w, n, kept) }
        let d = w.count / n
        var wa = [Float](repeating: 0, count: d * (n + 1))
        for r in 0..<d {
            for c in 0..<n { wa[r * (n + 1) + c] = w[r * n + c] }
            wa[r * (n + 1) + n] = b0.isEmpty ? 0 : b0[r]
        }
        return (wa, n + 1, kept + [n])
    }

    /// The solution [d × (K+1)] split into the weight [d × K] and the bias [d]; without a bias refit the solution
    /// is the weight and `b0` stays.
    func split(_ sol: [Float], kept k: Int, bias b0: [Float]) -> ([Float], [Float]) {
        guard bias else { return (sol, b0) }
        let d = sol.count / (k + 1)
        var wk = [Float](repeating: 0, count: d * k), b = [Float](repeating: 0, count: d)
        for r in 0..<d {
            for j in 0..<k { wk[r * k + j] = sol[r * (k + 1) + j] }
            b[r] = sol[r * (k + 1) + k]
        }
        return (wk, b)
    }

    func run(_ w: LayerWeights, _ l: Int, x: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>,
             t: LayerInternals, g: BlockGeometry) {
        block.forward(w, layer: l, x: x, out: out, internals: t, h: h.p, geometry: g)
    }

    /// `body(rows, geometry)` over the micro-batches of `stream` (default: the dense one).
    func forEachChunk(_ stream: FloatBuffer? = nil, _ body: (UnsafeMutablePointer<Float>, BlockGeometry) -> Void) {
        let s = stream ?? dense, d = config.hiddenSize
        for b0 in stride(from: 0, to: batch, by: microBatch) {
            body(s.p + b0 * seqLen * d, BlockGeometry(batch: min(microBatch, batch - b0), seqLen: seqLen))
        }
    }

    /// `body(dense rows, pruned rows, geometry)` over the micro-batches of both streams.
    func forEachPair(_ body: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, BlockGeometry) -> Void) {
        let d = config.hiddenSize, p = pruned!
        for b0 in stride(from: 0, to: batch, by: microBatch) {
            let off = b0 * seqLen * d
            body(dense.p + off, p.p + off, BlockGeometry(batch: min(microBatch, batch - b0), seqLen: seqLen))
        }
    }
}

/// Reconstruction of a whole model in one process.
public enum Reconstructor {
    /// Refits o_proj and down_proj of every planned layer of `pruned` (the cut of `original` by `plan`, updated in
    /// place) on `tokens` ([batch × seqLen]). The sweep stops after the last planned layer.
    public static func run(original: LlamaWeights, pruned: LlamaWeights, plan: PrunePlan, tokens: [Int32], batch: Int,
                           seqLen: Int, settings: ReconstructionSettings, quiet: Bool,
                           microBatchTokens: Int = ReconstructionSweep.microBatchTokens) throws -> [ReconstructionLayerReport]
    {
        let settings = try settings.validated()
        let c = original.config
        precondition(tokens.count == batch * seqLen)
        try settings.check(for: c)
        let sweep = try ReconstructionSweep(config: c, batch: batch, seqLen: seqLen, method: settings.method,
                                            ridge: settings.ridge, bias: settings.bias, microBatchTokens: microBatchTokens,
                                            embedded: ReconstructionSweep.embedding(tokens, table: original.embed, config: c))
        let byLayer = Dictionary(uniqueKeysWithValues: plan.layers.map { ($0.layer, $0) })
        let last = plan.layers.map(\.layer).max() ?? -1
        var reports: [ReconstructionLayerReport] = []
        let bar = ProgressBar(total: last + 1, label: "reconstruction \(batch)×\(seqLen)", unit: "layer", quiet: quiet)
        for l in 0...max(last, 0) where last >= 0 {
            let lp = byLayer[l]
            if let (refit, report) = try sweep.step(layer: l, original: original.layers[l], plan: lp) {
                refit.install(in: &pruned.layers[l], headDim: c.headDim)
                reports.append(report)
            }
            bar.advance()
        }
        bar.finish()
        if settings.bias {
            // Every layer carries every bias (zero where not refit): the config's attention_bias/mlp_bias are global.
            pruned.config = pruned.config.withAllBiases()
            for l in pruned.layers.indices {
                pruned.layers[l] = pruned.layers[l].withAllBiases(headDim: c.headDim, hidden: c.hiddenSize)
            }
        }
        return reports
    }
}
