// What a LoRA adapter is attached to and how it is scaled: rank r, alpha (the update is (alpha/r)·B·A),
// dropout on the adapter input (peft semantics), the target projections, and the seed of its initialisation.
// Defaults are LLM-Pruner's recovery recipe (r 8, alpha 16, dropout 0.05, all seven projections).
import Foundation
import LlamaModel

/// A projection of a Llama layer that can carry an adapter, named as peft and transformers name it.
public enum LoRATarget: String, CaseIterable, Codable, Sendable, Comparable {
    case q, k, v, o, gate, up, down

    /// The Linear's attribute name ("q_proj").
    public var moduleName: String { rawValue + "_proj" }

    /// The module path inside a decoder layer ("self_attn.q_proj", "mlp.gate_proj").
    public var modulePath: String {
        switch self {
        case .q, .k, .v, .o: return "self_attn." + moduleName
        case .gate, .up, .down: return "mlp." + moduleName
        }
    }

    public init?(moduleName: String) {
        guard moduleName.hasSuffix("_proj"), let t = LoRATarget(rawValue: String(moduleName.dropLast(5))) else { return nil }
        self = t
    }

    public static func < (a: LoRATarget, b: LoRATarget) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }

    /// (in, out) features of this projection in a layer of the given shape.
    public func features(_ s: LayerShape, hidden d: Int, headDim hd: Int) -> (in: Int, out: Int) {
        switch self {
        case .q: return (d, s.numHeads * hd)
        case .k, .v: return (d, s.numKVHeads * hd)
        case .o: return (s.numHeads * hd, d)
        case .gate, .up: return (d, s.intermediateSize)
        case .down: return (s.intermediateSize, d)
        }
    }
}

public struct LoRAConfig: Equatable, Sendable {
    public var rank: Int
    public var alpha: Double
    /// Probability of zeroing an element of an adapter's input during training (never the base path's).
    public var dropout: Double
    public var targets: Set<LoRATarget>
    /// Seed of the adapter initialisation.
    public var seed: UInt64

    public init(rank: Int = 8, alpha: Double = 16, dropout: Double = 0.05,
                targets: Set<LoRATarget> = Set(LoRATarget.allCases), seed: UInt64 = 42) {
        self.rank = rank
        self.alpha = alpha
        self.dropout = dropout
        self.targets = targets
        self.seed = seed
    }

    /// alpha / r, the factor of B·A.
    public var scale: Float { Float(alpha / Double(rank)) }

    /// Targets in the fixed order used for the flat parameter layout (q, k, v, o, gate, up, down).
    public var orderedTargets: [LoRATarget] { targets.sorted() }

    public func validate() throws {
        guard rank > 0 else { throw LoRAError.invalidConfig("rank must be positive, got \(rank)") }
        guard alpha.isFinite, alpha > 0 else { throw LoRAError.invalidConfig("alpha must be positive, got \(alpha)") }
        guard dropout >= 0, dropout < 1 else { throw LoRAError.invalidConfig("dropout must be in [0, 1), got \(dropout)") }
        guard !targets.isEmpty else { throw LoRAError.invalidConfig("no target modules") }
    }

    /// Parses "q,k,v,o,gate,up,down" (peft names such as "q_proj" also accepted).
    public static func parseTargets(_ list: String) throws -> Set<LoRATarget> {
        var out = Set<LoRATarget>()
        for raw in list.split(separator: ",") {
            let name = raw.trimmingCharacters(in: .whitespaces)
            guard let t = LoRATarget(rawValue: name) ?? LoRATarget(moduleName: name) else {
                throw LoRAError.invalidConfig("unknown target \"\(name)\" (expected q, k, v, o, gate, up, down)")
            }
            out.insert(t)
        }
        guard !out.isEmpty else { throw LoRAError.invalidConfig("empty target list") }
        return out
    }
}
