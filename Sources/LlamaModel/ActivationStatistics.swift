// Per-channel statistics of the inputs of o_proj and down_proj over calibration tokens: what FLAP's fluctuation
// metric reads (arXiv 2312.11983 §3.1; `BiasGPT.add_batch` in lib/layerwrapper.py of
// github.com/CASIA-IVA-Lab/FLAP). Forward only, over micro-batches of samples, so activation memory stays that
// of one micro-batch however many samples are accumulated; sums are in Double.
import Foundation
import TensorCore

/// Running Σx and Σx² of each channel over the tokens seen.
public struct ChannelMoments: Equatable, Sendable {
    public private(set) var count = 0
    public private(set) var sum: [Double]
    public private(set) var sumSquares: [Double]

    public init(channels: Int) {
        sum = Array(repeating: 0, count: channels)
        sumSquares = sum
    }

    /// Adds `rows` rows of a row-major [rows × channels] matrix.
    public mutating func add(_ x: UnsafePointer<Float>, rows: Int) {
        let c = sum.count
        sum.withUnsafeMutableBufferPointer { s in
            sumSquares.withUnsafeMutableBufferPointer { q in
                for r in 0..<rows {
                    let row = x + r * c
                    for j in 0..<c {
                        let v = Double(row[j])
                        s[j] += v
                        q[j] += v * v
                    }
                }
            }
        }
        count += rows
    }

    public var mean: [Double] { sum.map { $0 / Double(max(count, 1)) } }

    /// Population variance per channel, E[x²] − E[x]² (clamped at 0 against rounding). FLAP's running update
    /// (lib/layerwrapper.py) divides by the number of sequences rather than tokens and drops the first sequence's
    /// spread; both only rescale a layer's scores or add noise, so the plain variance over all tokens is used.
    public var variance: [Double] {
        let n = Double(max(count, 1))
        return zip(sum, sumSquares).map { s, q in max(0, q / n - (s / n) * (s / n)) }
    }
}

/// The moments of one layer's o_proj input [nq·hd] and down_proj input [I].
public struct LayerActivations: Equatable, Sendable {
    public var oInput: ChannelMoments
    public var downInput: ChannelMoments
}

/// Collects the moments of the products' inputs in the layers asked for.
final class MomentsHook: ProjectionHook {
    var layers: [Int: LayerActivations]

    init(layers: [Int: LayerActivations]) { self.layers = layers }

    func forward(_ p: Projection, layer: Int, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                 ld: Int, shape: LayerShape, geometry: BlockGeometry) {
        guard layers[layer] != nil else { return }
        switch p {
        case .o: layers[layer]!.oInput.add(input, rows: geometry.tokens)
        case .down: layers[layer]!.downInput.add(input, rows: geometry.tokens)
        default: break
        }
    }

    func wantsGradient(_ p: Projection, layer: Int) -> Bool { false }

    func backward(_ p: Projection, layer: Int, input: UnsafePointer<Float>, dY: UnsafePointer<Float>, ld: Int,
                  dX: UnsafeMutablePointer<Float>?, shape: LayerShape, geometry: BlockGeometry) {}
}

extension LlamaRunner {
    /// Moments of the o_proj and down_proj inputs of `layers` over `tokens` ([batch × seqLen], row-major), run
    /// forward `microBatch` sequences at a time up to the last layer asked for (later layers are not run).
    public func activationStatistics(tokens: [Int32], batch: Int, seqLen: Int, layers: [Int],
                                     microBatch: Int) throws -> [Int: LayerActivations] {
        try validate(tokens: tokens, batch: batch, seqLen: seqLen)
        guard let last = layers.max(), layers.allSatisfy({ $0 >= 0 && $0 < config.numLayers }) else {
            throw ModelError.invalidInput("activation statistics: layers \(layers) outside 0..<\(config.numLayers)")
        }
        guard microBatch > 0 else { throw ModelError.invalidInput("activation statistics: micro-batch \(microBatch)") }
        var initial: [Int: LayerActivations] = [:]
        for l in layers {
            let s = weights.layers[l].shape
            initial[l] = LayerActivations(oInput: ChannelMoments(channels: s.numHeads * config.headDim),
                                          downInput: ChannelMoments(channels: s.intermediateSize))
        }
        let hook = MomentsHook(layers: initial)
        var first = 0
        while first < batch {
            let b = min(microBatch, batch - first)
            let ws = prepare(tokens: Array(tokens[(first * seqLen)..<((first + b) * seqLen)]), batch: b, seqLen: seqLen)
            let g = BlockGeometry(batch: b, seqLen: seqLen)
            for l in 0...last {
                block.forward(weights.layers[l], layer: l, x: ws.x.p, out: ws.x.p, internals: ws.internals,
                              h: ws.h.p, geometry: g, hook: hook)
            }
            first += b
        }
        return hook.layers
    }
}
