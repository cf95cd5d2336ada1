// The residual stream around each block, for measures that compare a block's input with its output (ShortGPT's
// Block Influence, arXiv 2403.03853 §3.1: BI_i = 1 − E_t cos(x_{i,t}, x_{i+1,t}) over the hidden states that
// enter and leave layer i). The layers are the forward pass's own (`forwardLayer`), run in place; only one
// extra [N × d] copy of the stream is kept.
import Foundation
import TensorCore

extension LlamaRunner {
    /// Runs layers 0..<`through` over [batch × seqLen] tokens (row-major) and calls
    /// `visit(layer, before [N × d], after [N × d])` after each, N = batch·seqLen: the residual stream entering and
    /// leaving that layer. The pointers are valid only during the call.
    public func visitResidualStream(tokens: [Int32], batch: Int, seqLen: Int, through: Int? = nil,
                                    _ visit: (Int, UnsafePointer<Float>, UnsafePointer<Float>) throws -> Void) throws {
        try validate(tokens: tokens, batch: batch, seqLen: seqLen)
        let end = min(through ?? config.numLayers, config.numLayers)
        let ws = prepare(tokens: tokens, batch: batch, seqLen: seqLen)
        let count = batch * seqLen * config.hiddenSize
        let before = FloatBuffer(count)
        for l in 0..<end {
            before.p.update(from: ws.x.p, count: count)
            forwardLayer(weights.layers[l], l, ws: ws, batch: batch, seqLen: seqLen)
            try visit(l, UnsafePointer(before.p), UnsafePointer(ws.x.p))
        }
    }
}
