// One pipeline stage of the gradient pass: `GradientPass` cut at layer boundaries. The stage runs its block
// forward from the residual stream it receives (the first stage embeds the tokens), keeping the input of every
// layer at or above the lowest scored layer; the last stage adds the final norm, the loss and its gradient;
// backward then runs through the block by recomputation (the same `backwardLayer` as one process), producing
// weight gradients (and the Fisher diagonal, split per sample) for the stage's scored layers only, and
// ∂loss/∂(block input) for the previous stage. No transport here: the caller moves the [N × d] buffers.
// Every stage sees the whole batch, so each product is the one a single process computes, in the same order.
import Foundation
import TensorCore

extension LlamaRunner {
    /// Sizes the workspace and rotary tables for [batch × seqLen] without embedding (the stage's input comes
    /// from the previous stage).
    func prepareWorkspace(batch: Int, seqLen: Int) -> Workspace {
        let n = batch * seqLen
        if ws?.tokens != n { ws = Workspace(tokens: n, config: config) }
        block.ensureRope(seqLen)
        return ws!
    }
}

public final class StageGradientPass {
    public let stage: StageWeights
    /// The globally scored layers (this stage scores `scored ∩ stage.layers`).
    public let scored: Range<Int>
    let pass: GradientPass
    private var ws: Workspace?
    private var inputs: [Int: FloatBuffer] = [:]
    private var caches: [Int: LayerInternals] = [:]
    /// How many of the block's top layers (at or above the lowest scored layer) keep their internals from the
    /// forward sweep, so their backward needs no recomputation: speed for memory, as the planner allows.
    public var cachedLayers = 0
    private var xFinal: FloatBuffer?
    private var dx: FloatBuffer?
    private var tokens: [Int32] = []
    private var batch = 0, seqLen = 0
    private var grads: [Int: LayerGradients] = [:]
    private var fishers: [Int: LayerGradients] = [:]
    private var withFisher = false
    /// Called after each layer's forward ("forward", l) and backward ("backward", l): progress of long stages.
    public var onLayer: ((_ sweep: String, _ layer: Int) -> Void)?
    /// Batch-mean loss; set on the last stage by `lossBackward()`.
    public private(set) var loss: Double?

    public convenience init(stage: StageWeights, scored: Range<Int>) {
        self.init(stage: stage, scored: scored, pass: GradientPass(weights: stage.weights))
    }

    init(stage: StageWeights, scored: Range<Int>, pass: GradientPass) {
        self.stage = stage
        self.scored = scored
        self.pass = pass
    }

    public var config: LlamaConfig { stage.config }
    public var isFirst: Bool { stage.layers.lowerBound == 0 }
    public var isLast: Bool { stage.layers.upperBound == config.numLayers }
    /// The layers this stage computes weight gradients for.
    public var scoredHere: Range<Int> {
        let lo = max(scored.lowerBound, stage.layers.lowerBound), hi = min(scored.upperBound, stage.layers.upperBound)
        return lo..<max(lo, hi)
    }
    /// The stage runs backward: some of its layers lie at or above the lowest scored layer. Stages entirely
    /// below the scored range run forward only.
    public var runsBackward: Bool { stage.layers.upperBound > scored.lowerBound }
    /// The previous stage needs ∂loss/∂(this block's input): it holds scored layers or layers above them.
    public var sendsInputGradient: Bool { !isFirst && stage.layers.lowerBound > scored.lowerBound }
    /// The next stage sends ∂loss/∂(this block's output).
    public var receivesOutputGradient: Bool { !isLast && runsBackward }
    /// Peak bytes of activations and gradient buffers held by this stage's pass (weights excluded).
    public var peakActivationBytes: Int { pass.peakBytes }

    /// Runs the block forward. `input` is the residual stream [batch·seqLen × d] from the previous stage; the
    /// first stage passes nil and embeds `tokens` (all stages get the tokens: the last one needs the targets).
    /// Returns the block's output for the next stage, or nil on the last stage (which keeps it for the loss).
    public func forward(tokens: [Int32], batch: Int, seqLen: Int, input: [Float]?) throws -> [Float]? {
        let c = config, d = c.hiddenSize, n = batch * seqLen
        try pass.runner.validate(tokens: tokens, batch: batch, seqLen: seqLen)
        guard seqLen >= 2 else { throw ModelError.invalidInput("gradients: sequences need at least 2 tokens") }
        guard !scored.isEmpty, scored.lowerBound >= 0, scored.upperBound <= c.numLayers else {
            throw ModelError.invalidInput("gradients: layer range \(scored) outside 0..<\(c.numLayers)")
        }
        self.tokens = tokens
        self.batch = batch
        self.seqLen = seqLen
        inputs = [:]; caches = [:]; grads = [:]; fishers = [:]; xFinal = nil; dx = nil; loss = nil
        let ws: Workspace
        if isFirst {
            guard input == nil, stage.holdsEmbedding else {
                throw ModelError.invalidInput("pipeline: the first stage embeds the tokens (no input, embedding loaded)")
            }
            if stage.weights.embed.isEmpty, let streamed = stage.streamed {
                ws = pass.runner.prepareWorkspace(batch: batch, seqLen: seqLen)
                try streamed.embed(tokens: tokens, into: ws.x.p)
            } else {
                ws = pass.runner.prepare(tokens: tokens, batch: batch, seqLen: seqLen)
            }
        } else {
            guard let input, input.count == n * d else {
                throw ModelError.invalidInput("pipeline: stage input has \(input?.count ?? 0) values, expected \(n) × \(d)")
            }
            ws = pass.runner.prepareWorkspace(batch: batch, seqLen: seqLen)
            input.withUnsafeBufferPointer { ws.x.p.update(from: $0.baseAddress!, count: n * d) }
        }
        self.ws = ws
        pass.bytes = ws.bytes
        pass.peakBytes = pass.bytes
        for l in stage.layers {
            if l >= scored.lowerBound {
                let saved = pass.buffer(n * d)
                saved.p.update(from: ws.x.p, count: n * d)
                inputs[l] = saved
            }
            if l >= scored.lowerBound && l >= stage.layers.upperBound - cachedLayers {
                caches[l] = try withLayer(l) { pass.forwardKeeping(l, ws: ws, batch: batch, seqLen: seqLen) }
            } else {
                try withLayer(l) { pass.forwardLayer(l, ws: ws, batch: batch, seqLen: seqLen) }
            }
            onLayer?("forward", l)
        }
        guard isLast else { return ws.x.array(n * d) }
        let xf = pass.buffer(n * d)
        xf.p.update(from: ws.x.p, count: n * d)
        xFinal = xf
        pass.runner.norm(stage.weights.finalNorm, ws: ws, rows: n)
        return nil
    }

    /// Last stage, after `forward`: the loss, and ∂loss/∂(block output) through the final norm (kept for
    /// `backward`). Returns the batch-mean loss.
    @discardableResult
    public func lossBackward() throws -> Double {
        guard isLast, stage.holdsHead, let ws, let xf = xFinal else {
            throw ModelError.invalidInput("pipeline: the loss runs on the last stage, after its forward")
        }
        let c = config, d = c.hiddenSize, n = batch * seqLen
        let dx = pass.buffer(n * d)
        let loss = pass.lossBackward(hidden: ws.h.p, tokens: tokens, batch: batch, seqLen: seqLen, dHidden: dx.p)
        let dNormed = pass.buffer(n * d)
        dNormed.p.update(from: dx.p, count: n * d)
        stage.weights.finalNorm.withUnsafeBufferPointer { w in
            Kernels.rmsNormBackward(x: xf.p, weight: w.baseAddress!, dy: dNormed.p, dx: dx.p, rows: n, dim: d,
                                    eps: c.rmsNormEps, accumulate: false)
        }
        pass.release(dNormed); pass.release(xf)
        xFinal = nil
        self.dx = dx
        self.loss = loss
        return loss
    }

    /// Backward through the block down to max(block start, lowest scored layer). `outputGradient` is
    /// ∂loss/∂(block output) from the next stage (nil on the last stage, after `lossBackward`). Returns
    /// ∂loss/∂(block input) when `sendsInputGradient`, else nil. With `consume`, each scored layer's gradient
    /// (and Fisher) is handed over as soon as the layer is done and not kept (so the stage holds at most one
    /// layer's gradients; `result()` then has none); layers arrive from the top down.
    public func backward(outputGradient: [Float]?, fisher: Bool,
                         consume: ((_ layer: Int, _ gradient: LayerGradients, _ fisher: LayerGradients?) throws -> Void)? = nil)
        throws -> [Float]?
    {
        guard runsBackward, let ws else { return nil }
        let d = config.hiddenSize, n = batch * seqLen
        if !isLast {
            guard let g = outputGradient, g.count == n * d else {
                throw ModelError.invalidInput("pipeline: output gradient has \(outputGradient?.count ?? 0) values, expected \(n) × \(d)")
            }
            let b = pass.buffer(n * d)
            g.withUnsafeBufferPointer { b.p.update(from: $0.baseAddress!, count: n * d) }
            dx = b
        }
        guard let dx else { throw ModelError.invalidInput("pipeline: backward on the last stage needs lossBackward() first") }
        withFisher = fisher
        let lowest = max(stage.layers.lowerBound, scored.lowerBound)
        for l in stride(from: stage.layers.upperBound - 1, through: lowest, by: -1) {
            // A streamed layer stays widened until its gradient has been consumed (scores read the weights).
            try withLayer(l) {
                let wantWeights = scored.contains(l)
                var g = wantWeights ? LayerGradients(zerosLike: stage.weights.layers[l]) : nil
                var f = wantWeights && fisher ? LayerGradients(zerosLike: stage.weights.layers[l]) : nil
                let cache = caches.removeValue(forKey: l)
                if let cache { pass.bytes -= cache.bytes }
                pass.backwardLayer(l, input: inputs[l]!, ws: ws, batch: batch, seqLen: seqLen, dx: dx, cache: cache,
                                   grads: &g, fisher: &f, needInputGradient: l > scored.lowerBound)
                pass.release(inputs[l]!)
                inputs[l] = nil
                if let consume, let g {
                    try consume(l, g, f)
                    return
                }
                if let g { grads[l] = g }
                if let f { fishers[l] = f }
            }
            onLayer?("backward", l)
        }
        return sendsInputGradient ? dx.array(n * d) : nil
    }

    /// Runs `body` with layer `l` in fp32: as loaded, or (low-memory stage) widened from the mapped file for the
    /// duration of `body` and dropped after it.
    public func withLayer<T>(_ l: Int, _ body: () throws -> T) throws -> T { try stage.withLayer(l, body) }

    /// This stage's share of the result: gradients (and Fisher) of `scoredHere`; the loss on the last stage (0
    /// elsewhere).
    public func result() -> GradientResult {
        GradientResult(loss: loss ?? 0, gradients: grads, fisher: withFisher ? fishers : nil,
                       peakActivationBytes: pass.peakBytes)
    }

    /// Drops activations, gradients and the workspace.
    public func reset() {
        inputs = [:]; caches = [:]; grads = [:]; fishers = [:]; xFinal = nil; dx = nil; ws = nil
        pass.runner.ws = nil
    }
}
