// LoRA recovery cut at layer boundaries: one pipeline stage of `LoRAPass`, as `StageGradientPass` cuts the
// gradient pass. The stage runs its block forward from the residual stream it receives (the first stage embeds
// the tokens), keeping only the input [N × d] of each of its layers; the last stage adds the final norm, the loss
// and ∂loss/∂(block output) at once (in 1F1B the last stage's forward is followed by its backward). The backward
// re-runs each layer forward from its kept input (the same dropout masks: a mask is a function of seed, layer,
// target and row) and goes through the one `TransformerBlock.backward` with the same `AdapterHook`, adding the
// stage's adapter gradients into the flat gradient buffer and handing ∂loss/∂(block input) back.
// Several micro-batches can be in flight (1F1B holds up to P − stage of them): each is keyed by an id.
// No transport here: the caller moves the [N × d] buffers. The products are those of one process, in the same
// order, so a pipeline reproduces the single-process gradients (up to nothing: the same kernels on the same data).
import Foundation
import LlamaModel
import TensorCore

public final class LoRAStagePass {
    public let stage: StageWeights
    public let pass: LoRAPass
    /// The stage's adapters in the flat layout: slots are laid out layer by layer, so a block is one range.
    public let parameterRange: Range<Int>

    private struct InFlight {
        let batch: TokenBatch
        let seed: UInt64?
        let inputs: [FloatBuffer]      // input of each layer of the block, in order
        let dOut: FloatBuffer?         // last stage: ∂loss/∂(block output), from the loss
    }
    private var inFlight: [Int: InFlight] = [:]
    /// Most bytes of activations (kept layer inputs + one pass's work buffers) held at once.
    public private(set) var peakActivationBytes = 0

    public init(stage: StageWeights, adapters: LoRAAdapters) throws {
        self.stage = stage
        pass = try LoRAPass(base: stage.weights, adapters: adapters)
        parameterRange = adapters.parameterRange(layers: stage.layers)
    }

    public var isFirst: Bool { stage.layers.lowerBound == 0 }
    public var isLast: Bool { stage.layers.upperBound == stage.config.numLayers }
    /// Micro-batches run forward and not yet backward.
    public var inFlightCount: Int { inFlight.count }

    /// Runs micro-batch `id` forward through the block. `input` is the residual stream [batch·seqLen × d] from the
    /// previous stage (nil on the first stage, which embeds the tokens). Training (`lossDivisor` given): the layer
    /// inputs are kept for `backward`, and the last stage also computes ∂(Σ NLL / lossDivisor)/∂(block output).
    /// Evaluation (nil): nothing is kept and there is no dropout. Returns the block's output (not on the last stage)
    /// and the micro-batch's NLL sum (last stage only).
    public func forward(id: Int, batch tb: TokenBatch, input: [Float]?, lossDivisor: Double?, dropoutSeed: UInt64?)
        throws -> (output: [Float]?, loss: LossSum?)
    {
        try pass.validate(tb)
        let c = pass.config, d = c.hiddenSize
        let geo = BlockGeometry(batch: tb.batch, seqLen: tb.seqLen), n = geo.tokens
        let training = lossDivisor != nil
        if let lossDivisor, lossDivisor <= 0 { throw LoRAError.invalidInput("loss divisor must be positive") }
        guard inFlight[id] == nil else { throw LoRAError.invalidInput("stage: micro-batch \(id) is already in flight") }
        let seed = training && pass.adapters.config.dropout > 0 ? dropoutSeed : nil
        pass.block.ensureRope(tb.seqLen)
        defer { pass.pool.recycle() }
        var x = FloatBuffer(n * d)
        if isFirst {
            guard input == nil else { throw LoRAError.invalidInput("stage: the first stage embeds the tokens") }
            try stage.embed(tokens: tb.tokens, into: x.p)
        } else {
            guard let input, input.count == n * d else {
                throw LoRAError.invalidInput("stage: input has \(input?.count ?? 0) values, expected \(n) × \(d)")
            }
            input.withUnsafeBufferPointer { x.p.update(from: $0.baseAddress!, count: n * d) }
        }
        var kept: [FloatBuffer] = []
        let result: (output: [Float]?, loss: LossSum?) = try pass.adapters.parameters.withUnsafeBufferPointer { P in
            let h = pass.pool.take(n * d), cache = pass.maxCache(geo)
            let hook = AdapterHook(pass: pass, P: P.baseAddress!, seed: seed, scratch: pass.pool.take(n * pass.maxInFeatures),
                                   du: nil)
            var spare = FloatBuffer(n * d)
            for l in stage.layers {
                if training { kept.append(x) }
                let out = training ? FloatBuffer(n * d) : spare
                try stage.withLayer(l) { pass.forwardLayer(l, x: x, out: out, cache: cache, h: h, hook: hook, geo: geo) }
                if !training { spare = x }
                x = out
            }
            guard isLast else { return (x.array(n * d), nil) }
            pass.base.finalNorm.withUnsafeBufferPointer { w in
                Kernels.rmsNorm(x.p, weight: w.baseAddress!, out: h.p, rows: n, dim: d, eps: c.rmsNormEps)
            }
            guard let lossDivisor else {
                return (nil, pass.lossAndGradient(hidden: h.p, batch: tb, divisor: 1, dHidden: nil))
            }
            let dx = FloatBuffer(n * d)
            let loss = pass.lossAndGradient(hidden: h.p, batch: tb, divisor: lossDivisor, dHidden: dx.p)
            pass.finalNormBackward(xFinal: x, dx: dx, rows: n)
            inFlight[id] = InFlight(batch: tb, seed: seed, inputs: kept, dOut: dx)
            return (nil, loss)
        }
        if training && !isLast { inFlight[id] = InFlight(batch: tb, seed: seed, inputs: kept, dOut: nil) }
        noteActivations()
        return result
    }

    /// Backward of micro-batch `id` through the block: adds its adapter gradients into `pass`'s flat gradients.
    /// `outputGradient` is ∂loss/∂(block output) from the next stage (nil on the last stage). Returns
    /// ∂loss/∂(block input) for the previous stage (nil on the first stage).
    public func backward(id: Int, outputGradient: [Float]?) throws -> [Float]? {
        guard let f = inFlight[id] else { throw LoRAError.invalidInput("stage: micro-batch \(id) was not run forward") }
        let c = pass.config, d = c.hiddenSize
        let geo = BlockGeometry(batch: f.batch.batch, seqLen: f.batch.seqLen), n = geo.tokens
        let dx: FloatBuffer
        if let dOut = f.dOut {
            dx = dOut
        } else {
            guard let g = outputGradient, g.count == n * d else {
                throw LoRAError.invalidInput("stage: output gradient has \(outputGradient?.count ?? 0) values, expected \(n) × \(d)")
            }
            dx = FloatBuffer(n * d)
            g.withUnsafeBufferPointer { dx.p.update(from: $0.baseAddress!, count: n * d) }
        }
        pass.block.ensureRope(f.batch.seqLen)
        defer { pass.pool.recycle() }
        try pass.adapters.parameters.withUnsafeBufferPointer { P in
            let h = pass.pool.take(n * d), cache = pass.maxCache(geo)
            let hook = AdapterHook(pass: pass, P: P.baseAddress!, seed: f.seed, scratch: pass.pool.take(n * pass.maxInFeatures),
                                   du: pass.pool.take(n * pass.adapters.config.rank))
            let bw = BackwardScratch(tokens: n, config: c, pool: pass.pool)
            for (i, l) in stage.layers.enumerated().reversed() {
                try stage.withLayer(l) {
                    pass.forwardLayer(l, x: f.inputs[i], out: bw.discard, cache: cache, h: h, hook: hook, geo: geo)
                    pass.block.backward(pass.base.layers[l], layer: l, x: f.inputs[i].p, internals: cache.internals,
                                        dx: dx.p, h: h.p, buffers: bw.buffers, geometry: geo, hook: hook,
                                        needInputGradient: l > 0)
                }
            }
        }
        noteActivations()
        inFlight[id] = nil
        return isFirst ? nil : dx.array(n * d)
    }

    /// Drops every micro-batch in flight.
    public func reset() { inFlight = [:] }

    private func noteActivations() {
        let kept = inFlight.values.reduce(0) { $0 + $1.inputs.reduce(0) { $0 + 4 * $1.count } + 4 * ($1.dOut?.count ?? 0) }
        peakActivationBytes = max(peakActivationBytes, kept + pass.pool.bytesTaken)
    }
}

extension LoRAStagePass {
    /// Predicted peak bytes of activations of a stage over `layers` whose largest micro-batch is batch × seqLen with
    /// `inFlight` micro-batches in flight (1F1B: P − stage): the kept layer inputs, and the pass's reused buffers —
    /// the k-th request of a forward and of a backward share a pool slot, so the slots are the larger of the two
    /// sequences (`forward` / `backward` above take them in this order) — plus the transfer copies of the block's
    /// input, output and their gradients. The memory planner's activation term.
    public static func activationBytes(config c: LlamaConfig, layers: Range<Int>, lora: LoRAConfig, batch: Int,
                                       seqLen: Int, inFlight: Int) -> Int {
        let d = c.hiddenSize, hd = c.headDim, V = c.vocabSize, n = batch * seqLen, r = lora.rank
        let ls = c.layers
        let widest = LayerShape(numHeads: ls.map(\.numHeads).max()!, numKVHeads: ls.map(\.numKVHeads).max()!,
                                intermediateSize: ls.map(\.intermediateSize).max()!)
        let targets = lora.targets.count
        let maxIn = lora.orderedTargets.map { t in ls.map { t.features($0, hidden: d, headDim: hd).in }.max()! }.max()!
        let last = layers.upperBound == c.numLayers
        let geo = BlockGeometry(batch: batch, seqLen: seqLen)
        // Shared head of both sequences: h, one layer's internals, u per target, the masked-input scratch.
        var pool = n * d + LayerInternals.bytes(widest, config: c, geometry: geo) / 4 + targets * n * r + n * maxIn
        let chunk = min(512, n)
        let forwardTail = last ? [chunk * d, chunk * V, chunk * d, n * d] : []
        let I = widest.intermediateSize, W = (widest.numHeads + 2 * widest.numKVHeads) * hd
        let backwardTail = [n * r, n * I, 2 * n * I, n * d, n * widest.numHeads * hd, n * W, n * d]
        for i in 0..<max(forwardTail.count, backwardTail.count) {
            pool += max(i < forwardTail.count ? forwardTail[i] : 0, i < backwardTail.count ? backwardTail[i] : 0)
        }
        // Kept layer inputs of the micro-batches in flight; the last stage's ∂loss/∂output; transfer copies.
        let kept = inFlight * layers.count * n * d + (last ? n * d : 0)
        return 4 * (pool + kept + 3 * n * d)
    }
}
