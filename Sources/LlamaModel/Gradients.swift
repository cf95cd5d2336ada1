// Weight gradients of the linear layers of one transformer layer, in the same fused layouts as
// `LayerWeights` (q|k|v rows, gate|up rows), so that scoring reads weights and gradients with one index.
public struct LayerGradients: Sendable {
    public var wqkv: [Float]      // [(nq + 2·nkv)·hd × d]
    public var wo: [Float]        // [d × nq·hd]
    public var wGateUp: [Float]   // [2·I × d]
    public var wDown: [Float]     // [d × I]

    public init(wqkv: [Float], wo: [Float], wGateUp: [Float], wDown: [Float]) {
        self.wqkv = wqkv
        self.wo = wo
        self.wGateUp = wGateUp
        self.wDown = wDown
    }

    /// Zero gradients shaped like `w`.
    public init(zerosLike w: LayerWeights) {
        wqkv = .init(repeating: 0, count: w.wqkv.count)
        wo = .init(repeating: 0, count: w.wo.count)
        wGateUp = .init(repeating: 0, count: w.wGateUp.count)
        wDown = .init(repeating: 0, count: w.wDown.count)
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
