// Weight gradients of the linear layers of one transformer layer, in the same fused layouts as
// `LayerWeights` (q|k|v rows, gate|up rows), so that scoring reads weights and gradients with one index.
public struct LayerGradients: Sendable {
    public var wqkv: [Float]      // [(nq + 2·nkv)·hd × d]
    public var wo: [Float]        // [d × nq·hd]
    public var wGateUp: [Float]   // [2·I × d]
    public var wDown: [Float]     // [d × I]
    // Bias gradients (column sums of each product's output gradient), empty when the layer has no such bias.
    public var bqkv: [Float]      // [W]
    public var bo: [Float]        // [d]
    public var bGateUp: [Float]   // [2·I]
    public var bDown: [Float]     // [d]

    public init(wqkv: [Float], wo: [Float], wGateUp: [Float], wDown: [Float], bqkv: [Float] = [], bo: [Float] = [],
                bGateUp: [Float] = [], bDown: [Float] = []) {
        self.wqkv = wqkv
        self.wo = wo
        self.wGateUp = wGateUp
        self.wDown = wDown
        self.bqkv = bqkv
        self.bo = bo
        self.bGateUp = bGateUp
        self.bDown = bDown
    }

    /// Zero gradients shaped like `w` (its biases included).
    public init(zerosLike w: LayerWeights) {
        func z(_ a: [Float]) -> [Float] { .init(repeating: 0, count: a.count) }
        self.init(wqkv: z(w.wqkv), wo: z(w.wo), wGateUp: z(w.wGateUp), wDown: z(w.wDown), bqkv: z(w.bqkv), bo: z(w.bo),
                  bGateUp: z(w.bGateUp), bDown: z(w.bDown))
    }

    /// Every array, weights then biases, in a fixed order (for flattening and element-wise maps).
    public var parts: [[Float]] { [wqkv, wo, wGateUp, wDown, bqkv, bo, bGateUp, bDown] }

    /// Gradients from `parts` in that order.
    public init(parts p: [[Float]]) {
        precondition(p.count == 8)
        self.init(wqkv: p[0], wo: p[1], wGateUp: p[2], wDown: p[3], bqkv: p[4], bo: p[5], bGateUp: p[6], bDown: p[7])
    }
}

/// What one gradient pass over a calibration batch produces.
public struct GradientResult: Sendable {
    /// Batch-mean next-token cross-entropy (labels = inputs shifted, every position scored).
    public var loss: Double
    /// ∂loss/∂W for each requested layer, keyed by layer index.
    public var gradients: [Int: LayerGradients]
    /// Empirical Fisher diagonal (1/N)·Σⱼ gⱼ², gⱼ the gradient of sample j's mean token loss; only when asked.
    public var fisher: [Int: LayerGradients]?
    /// Peak bytes of activations and gradient buffers held by the pass (weights excluded).
    public var peakActivationBytes: Int

    public init(loss: Double, gradients: [Int: LayerGradients], fisher: [Int: LayerGradients]?, peakActivationBytes: Int) {
        self.loss = loss
        self.gradients = gradients
        self.fisher = fisher
        self.peakActivationBytes = peakActivationBytes
    }
}
