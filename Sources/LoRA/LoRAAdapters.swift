// The trainable LoRA parameters of a model: per layer and target, A [r × in] and B [out × r], all in ONE flat
// fp32 buffer (slot by slot, A then B). Gradients, AdamW moments and a later MPI_Allreduce all use the same
// flat layout, so each of them is a single loop or a single call.
import Foundation
import LlamaModel

/// Where one adapter pair lives in the flat buffer.
public struct AdapterSlot: Equatable, Sendable {
    public let layer: Int
    public let target: LoRATarget
    public let inFeatures: Int
    public let outFeatures: Int
    public let aOffset: Int      // A [r × in]
    public let bOffset: Int      // B [out × r]
}

public final class LoRAAdapters: @unchecked Sendable {
    public let config: LoRAConfig
    public let model: LlamaConfig
    public let slots: [AdapterSlot]
    /// All A and B matrices, slot after slot.
    public var parameters: [Float]
    private let index: [[LoRATarget: Int]]   // layer → target → slot

    /// Zero adapters shaped for `model` (per-layer widths respected).
    public init(config: LoRAConfig, model: LlamaConfig) throws {
        try config.validate()
        self.config = config
        self.model = model
        let r = config.rank
        var slots: [AdapterSlot] = []
        var index: [[LoRATarget: Int]] = []
        var offset = 0
        for (l, shape) in model.layers.enumerated() {
            var row: [LoRATarget: Int] = [:]
            for t in config.orderedTargets {
                let f = t.features(shape, hidden: model.hiddenSize, headDim: model.headDim)
                row[t] = slots.count
                slots.append(AdapterSlot(layer: l, target: t, inFeatures: f.in, outFeatures: f.out,
                                         aOffset: offset, bOffset: offset + r * f.in))
                offset += r * (f.in + f.out)
            }
            index.append(row)
        }
        self.slots = slots
        self.index = index
        parameters = [Float](repeating: 0, count: offset)
    }

    /// Adapters initialised as peft does: A ~ kaiming_uniform(a = √5) = U(−1/√in, 1/√in), B = 0, drawn from
    /// SplitMix64(config.seed) slot by slot.
    public static func initialized(config: LoRAConfig, model: LlamaConfig) throws -> LoRAAdapters {
        let a = try LoRAAdapters(config: config, model: model)
        var rng = SplitMix64(seed: config.seed)
        for s in a.slots {
            let bound = 1 / Double(s.inFeatures).squareRoot()
            for i in 0..<config.rank * s.inFeatures {
                a.parameters[s.aOffset + i] = Float((2 * rng.nextUniform() - 1) * bound)
            }
        }
        return a
    }

    public var parameterCount: Int { parameters.count }

    public func slot(layer: Int, target: LoRATarget) -> AdapterSlot? {
        index[layer][target].map { slots[$0] }
    }

    /// The flat range of the adapters of a block of layers (slots are laid out layer by layer, so it is one range).
    public func parameterRange(layers: Range<Int>) -> Range<Int> {
        let mine = slots.filter { layers.contains($0.layer) }
        let lo = mine.first?.aOffset ?? 0
        return lo..<(mine.last.map { $0.bOffset + config.rank * $0.outFeatures } ?? lo)
    }

    /// A copy of A [r × in] of a slot.
    public func a(_ s: AdapterSlot) -> [Float] { Array(parameters[s.aOffset..<s.aOffset + config.rank * s.inFeatures]) }
    /// A copy of B [out × r] of a slot.
    public func b(_ s: AdapterSlot) -> [Float] { Array(parameters[s.bOffset..<s.bOffset + config.rank * s.outFeatures]) }

    public func setA(_ s: AdapterSlot, _ values: [Float]) {
        precondition(values.count == config.rank * s.inFeatures)
        parameters.replaceSubrange(s.aOffset..<s.aOffset + values.count, with: values)
    }

    public func setB(_ s: AdapterSlot, _ values: [Float]) {
        precondition(values.count == config.rank * s.outFeatures)
        parameters.replaceSubrange(s.bOffset..<s.bOffset + values.count, with: values)
    }

    /// Throws unless these adapters were shaped for `other` (same layers and widths).
    public func checkFits(_ other: LlamaConfig) throws {
        guard other.numLayers == model.numLayers, other.hiddenSize == model.hiddenSize, other.headDim == model.headDim,
              other.layers == model.layers else {
            throw LoRAError.shapeMismatch("adapters are for \(model.numLayers) layers of hidden \(model.hiddenSize), "
                + "the model has \(other.numLayers) layers of hidden \(other.hiddenSize) (or other per-layer widths)")
        }
    }
}
