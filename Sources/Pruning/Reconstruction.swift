// Reconstruction after the cut: for every pruned layer, o_proj and down_proj are refit on calibration activations
// so that the layer's projections reproduce the unpruned layer's outputs (a ridge least squares per projection).
// The idea is the "layer-wise reconstruction" of SlimGPT (arXiv 2412.18110), ZipLM (arXiv 2302.04089) and FLAP's
// bias compensation (arXiv 2312.11983) generalised to a full refit; the dampening of the Gram diagonal follows
// SparseGPT (arXiv 2301.00774, `percdamp` × mean(diag H)).
//
// Per projection with weight W [d × in] (o: in = nq·hd, columns of the kept query heads K; down: in = I, columns
// of the kept channels K), X [in × N] its input in the unpruned model, P [K × N] the input the pruned model gives
// the kept columns:
//     W' = argmin ‖W'·P − W·X‖² + λ‖W' − W_K‖²  ⇒  W'·(P Pᵀ + λI) = W·(X Pᵀ) + λ·W_K
// with λ = ridge · mean(diag(P Pᵀ)), so one `--ridge` means the same on every layer. Two inputs:
//   - `lstsq`: P = X[K] (the unpruned model's activations): P Pᵀ = G[K,K], X Pᵀ = G[:,K] with G = X Xᵀ; one Gram
//     per projection, a sum over tokens (so ranks can each sum their samples and add the results).
//   - `lstsq-seq`: P from the already pruned and refit earlier layers (and, for down, this layer's refit o);
//     needs P Pᵀ and the cross Gram X Pᵀ per projection, and both models' residual streams.
// Everything is in Float64 from the activations on: each micro-batch of ≈2048 tokens is widened and its Gram
// taken in Float64 (an fp32 product per micro-batch made the result depend on how tokens were split over ranks,
// by up to 7.5e-6 relative on the tiny model), and the system is solved by Cholesky (TensorCore/Gram.swift).
import Foundation
import LlamaModel
import Support
import TensorCore

/// Which inputs the refit sees (see the file comment).
public enum ReconstructionMethod: String, Codable, CaseIterable, Sendable {
    case none
    case lstsq
    case lstsqSequential = "lstsq-seq"
}

/// The reconstruction settings: the method, the ridge and its own calibration windows (drawn from the
/// calibration text with the calibration seed).
public struct ReconstructionSettings: Codable, Equatable, Sendable {
    public static let defaultRidge = 0.1
    public static let defaultSamples = 256
    public static let defaultSampleLength = 128

    public var method: ReconstructionMethod
    /// λ relative to the mean diagonal of the kept inputs' Gram.
    public var ridge: Double
    public var samples: Int
    public var sampleLength: Int
    /// An affine refit: o_proj and down_proj also get a bias (unregularised), so what the removed heads and channels
    /// contributed on average is put back exactly — FLAP's bias compensation (arXiv 2312.11983) inside the refit.
    /// The model then carries Llama's `attention_bias` and `mlp_bias` (q/k/v and gate/up biases zero).
    public var bias: Bool
    /// With iterative pruning (`--iterative-steps K`), also refit the partly pruned model after each of the first
    /// K − 1 rounds, so the next round scores the model as the refit will leave it (Iterative.swift). The written
    /// model's refit is the same either way: the final cut of the original, refit once.
    public var eachRound: Bool

    public init(method: ReconstructionMethod, ridge: Double = defaultRidge, samples: Int = defaultSamples,
                sampleLength: Int = defaultSampleLength, bias: Bool = false, eachRound: Bool = false) {
        self.method = method
        self.ridge = ridge
        self.samples = samples
        self.sampleLength = sampleLength
        self.bias = bias
        self.eachRound = eachRound
    }

    enum CodingKeys: String, CodingKey { case method, ridge, samples, sampleLength, bias, eachRound }

    /// Plans written before `bias` existed decode with `bias` false (what they did).
    public init(from decoder: Decoder) throws {
        let k = try decoder.container(keyedBy: CodingKeys.self)
        self.init(method: try k.decode(ReconstructionMethod.self, forKey: .method), ridge: try k.decode(Double.self, forKey: .ridge),
                  samples: try k.decode(Int.self, forKey: .samples), sampleLength: try k.decode(Int.self, forKey: .sampleLength),
                  bias: try k.decodeIfPresent(Bool.self, forKey: .bias) ?? false,
                  eachRound: try k.decodeIfPresent(Bool.self, forKey: .eachRound) ?? false)
    }

    /// Refuses a bias refit where the model's architecture has no place for the biases: only Llama's config has
    /// o_proj and down_proj biases (`attention_bias`, `mlp_bias`); Qwen2, Mistral and SmolLM3 have none.
    public func check(for config: LlamaConfig) throws {
        guard bias else { return }
        guard config.modelType == "llama" else {
            throw PruneError.setting(.biasCompensation, reason: "model_type \(config.modelType) has no o_proj/down_proj bias in transformers (only llama's attention_bias/mlp_bias)")
        }
    }

    /// The settings, checked: the one place their ranges are validated (errors name the setting).
    public func validated() throws -> ReconstructionSettings {
        guard eachRound == false || method != .none else {
            throw PruneError.setting(.iterativeRefit, reason: "needs --reconstruct lstsq or lstsq-seq (it runs the refit between rounds)")
        }
        guard bias == false || method != .none else {
            throw PruneError.setting(.biasCompensation, reason: "needs --reconstruct lstsq or lstsq-seq (the bias is part of the refit)")
        }
        guard ridge > 0, ridge.isFinite else {
            throw PruneError.setting(.ridge, reason: "\(ridge) is not a positive number (the ridge keeps the refit near the kept weights)")
        }
        guard samples > 0 else { throw PruneError.setting(.reconSamples, reason: "must be positive, got \(samples)") }
        guard sampleLength > 1 else { throw PruneError.setting(.reconLength, reason: "must be at least 2, got \(sampleLength)") }
        return self
    }
}

/// How well one projection's output was matched, on the reconstruction data: ‖Ŵ·P − W·X‖² / ‖W·X‖².
public struct ProjectionFit: Codable, Equatable, Sendable {
    /// With the cut weights W_K (no reconstruction).
    public var errorCut: Double
    /// With the refit weights W'.
    public var errorRefit: Double
}

public struct ReconstructionLayerReport: Codable, Equatable, Sendable {
    public var layer: Int
    public var o: ProjectionFit
    public var down: ProjectionFit
}

/// What was reconstructed, recorded in the plan written with the model.
public struct ReconstructionReport: Codable, Equatable, Sendable {
    public var settings: ReconstructionSettings
    public var calibration: CalibrationProvenance
    public var layers: [ReconstructionLayerReport]

    public init(settings: ReconstructionSettings, calibration: CalibrationProvenance, layers: [ReconstructionLayerReport]) {
        self.settings = settings
        self.calibration = calibration
        self.layers = layers
    }
}

/// A pruned layer's refit projections, in the cut layer's layout: o_proj [d × nq'·hd], down_proj [d × I'], and
/// with a bias refit their biases [d].
public struct RefitWeights: Sendable {
    public var wo: [Float]
    public var wDown: [Float]
    public var bo: [Float]?
    public var bDown: [Float]?

    public init(wo: [Float], wDown: [Float], bo: [Float]? = nil, bDown: [Float]? = nil) {
        self.wo = wo
        self.wDown = wDown
        self.bo = bo
        self.bDown = bDown
    }

    /// Replaces o_proj and down_proj of `layer`, the layer cut by the same plan (and their biases, giving the layer
    /// every bias a biased Llama layer has: `LayerWeights.withAllBiases`).
    public func install(in layer: inout LayerWeights, headDim hd: Int) {
        precondition(layer.wo.count == wo.count && layer.wDown.count == wDown.count, "refit of another shape")
        layer.wo = wo
        layer.wDown = wDown
        if let bo, let bDown {
            layer = layer.withAllBiases(headDim: hd, hidden: bo.count)
            precondition(layer.bo.count == bo.count && layer.bDown.count == bDown.count)
            layer.bo = bo
            layer.bDown = bDown
        }
    }
}

extension LayerWeights {
    /// The layer with every bias of a Llama layer with `attention_bias` and `mlp_bias` (q, k, v, o, gate, up,
    /// down); the ones it lacked are zero, which computes what the layer computed before.
    public func withAllBiases(headDim hd: Int, hidden d: Int) -> LayerWeights {
        var l = self
        let s = shape
        if l.bqkv.isEmpty { l.bqkv = [Float](repeating: 0, count: (s.numHeads + 2 * s.numKVHeads) * hd) }
        if l.bo.isEmpty { l.bo = [Float](repeating: 0, count: d) }
        if l.bGateUp.isEmpty { l.bGateUp = [Float](repeating: 0, count: 2 * s.intermediateSize) }
        if l.bDown.isEmpty { l.bDown = [Float](repeating: 0, count: d) }
        return l
    }
}

extension LlamaConfig {
    /// The config of a model whose layers all carry every bias (`LayerWeights.withAllBiases`): Llama's
    /// `attention_bias` and `mlp_bias`.
    public func withAllBiases() -> LlamaConfig {
        var c = self
        (c.qkvBias, c.oBias, c.mlpBias) = (true, true, true)
        return c
    }
}

/// The refit of one projection (Float64 throughout).
public enum LeastSquaresRefit {
    /// W' [d × K] from W [d × in] (row-major, fp32), the kept input columns `kept` (ascending), P Pᵀ [K × K],
    /// X Pᵀ [in × K] and X Xᵀ [in × in] (only for the reported errors). Throws when the system is not positive
    /// definite (non-finite activations).
    /// The last `unpenalized` kept columns (a bias's constant input) get no ridge and do not count in its scale.
    public static func solve(weight w: [Float], inputs: Int, kept: [Int], gramKept gpp: [Double], cross: [Double],
                             gramFull g: [Double], ridge: Double, unpenalized: Int = 0,
                             what: String) throws -> (weight: [Float], fit: ProjectionFit) {
        let n = inputs, k = kept.count, d = w.count / n, kr = k - unpenalized
        precondition(w.count == d * n && gpp.count == k * k && cross.count == n * k && g.count == n * n && kr >= 0)
        let wd = w.map(Double.init)                                             // [d × in]
        var wk = [Double](repeating: 0, count: d * k)                           // [d × K]
        for r in 0..<d { for (j, c) in kept.enumerated() { wk[r * k + j] = wd[r * n + c] } }
        let b = LinearSolve.dgemm(m: d, n: k, k: n, wd, cross)                  // W·X Pᵀ [d × K]
        let meanDiag = (0..<kr).reduce(0.0) { $0 + gpp[$1 * k + $1] } / Double(max(kr, 1))
        let lambda = ridge * meanDiag
        var a = gpp
        for i in 0..<kr { a[i * k + i] += lambda }
        var rhs = b
        for r in 0..<d { for j in 0..<kr { rhs[r * k + j] += lambda * wk[r * k + j] } }
        guard lambda.isFinite, let refit = LinearSolve.choleskySolveRight(a, n: k, rhs, m: d) else {
            throw PruneError.invalidScores("\(what): the reconstruction system is not positive definite (non-finite activations?)")
        }
        // ‖V P − W X‖² = tr(V PPᵀ Vᵀ) − 2 tr(V (W X Pᵀ)ᵀ) + tr(W G Wᵀ)
        let target = zip(LinearSolve.dgemm(m: d, n: n, k: n, wd, g), wd).reduce(0.0) { $0 + $1.0 * $1.1 }
        func error(_ v: [Double]) -> Double {
            let quad = zip(LinearSolve.dgemm(m: d, n: k, k: k, v, gpp), v).reduce(0.0) { $0 + $1.0 * $1.1 }
            let lin = zip(v, b).reduce(0.0) { $0 + $1.0 * $1.1 }
            return max(0, quad - 2 * lin + target) / max(target, .leastNormalMagnitude)
        }
        return (refit.map { Float($0) }, ProjectionFit(errorCut: error(wk), errorRefit: error(refit)))
    }

    /// The input columns of o_proj that the kept query heads read: head h covers columns h·hd ..< (h+1)·hd.
    public static func keptColumns(queryHeads: [Int], headDim hd: Int) -> [Int] {
        queryHeads.flatMap { h in (h * hd)..<((h + 1) * hd) }
    }

    /// G[rows, cols] of a square [n × n] matrix.
    static func submatrix(_ g: [Double], n: Int, rows: [Int]?, cols: [Int]) -> [Double] {
        let rs = rows ?? Array(0..<n)
        var out = [Double](repeating: 0, count: rs.count * cols.count)
        for (i, r) in rs.enumerated() { for (j, c) in cols.enumerated() { out[i * cols.count + j] = g[r * n + c] } }
        return out
    }
}
