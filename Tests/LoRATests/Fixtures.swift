// Test support: fixture paths from #filePath, the golden index written by
// scripts/reference/make_lora_fixtures.py, and comparison helpers that report what they measured.
import Foundation
import Formats
import LlamaModel
import Testing
@testable import LoRA

enum LoRAFixtures {
    static let testsDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    static let resources = testsDir.appendingPathComponent("Resources")
    static let packageRoot = testsDir.deletingLastPathComponent().deletingLastPathComponent()
    static let modelDir = resources.appendingPathComponent("model")
    static let adapterInit = resources.appendingPathComponent("adapter_init")
    static var smolGGUF: URL {
        if let p = ProcessInfo.processInfo.environment["LLMPRUNE_SMOLLM2_GGUF"], !p.isEmpty { return URL(fileURLWithPath: p) }
        return packageRoot.appendingPathComponent("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    }
    static var smolExists: Bool { FileManager.default.fileExists(atPath: smolGGUF.path) }
    static let alpaca = packageRoot.deletingLastPathComponent().appendingPathComponent("shared/data/alpaca/alpaca_data_1k.json")

    /// The same fixtures for the model with attention_bias and mlp_bias (make_lora_fixtures.py --bias).
    static let biasResources = resources.appendingPathComponent("bias")

    static func load<T: Decodable>(_ t: T.Type, _ name: String, in dir: URL = resources) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(contentsOf: dir.appendingPathComponent(name)))
    }

    /// A safetensors file with peft tensor names, read into the flat layout of `like`.
    static func flat(_ name: String, like a: LoRAAdapters, in dir: URL = resources) throws -> [Float] {
        let f = try SafetensorsFile(path: dir.appendingPathComponent(name).path)
        var out = [Float](repeating: 0, count: a.parameterCount)
        for s in a.slots {
            let av = try f.floats(PEFTFormat.tensorName(layer: s.layer, target: s.target, matrix: "lora_A"))
            let bv = try f.floats(PEFTFormat.tensorName(layer: s.layer, target: s.target, matrix: "lora_B"))
            out.replaceSubrange(s.aOffset..<s.aOffset + av.count, with: av)
            out.replaceSubrange(s.bOffset..<s.bOffset + bv.count, with: bv)
        }
        return out
    }
}

struct LoRAGolden: Decodable {
    struct Example: Decodable { var ids: [Int32]; var labels: [Int32] }
    struct Step: Decodable {
        var examples: [Int]
        var loss: Double
        var num_items_in_batch: Int
        var grad_norm: Double
        var lr: Double
        var clipped: Bool
    }
    var rank: Int
    var alpha: Double
    var lr: Double
    var weight_decay: Double
    var max_grad_norm: Double
    var warmup_steps: Int
    var total_steps: Int
    var micro_batch_size: Int
    var examples: [Example]
    var steps: [Step]
}

/// Worst over slots and matrices of max|a − b| / max|b| (the error relative to each tensor's scale).
func maxRelativeDiff(_ got: [Float], _ want: [Float], slots: [AdapterSlot], rank: Int) -> Double {
    var worst = 0.0
    for s in slots {
        for (off, count) in [(s.aOffset, rank * s.inFeatures), (s.bOffset, rank * s.outFeatures)] {
            var diff = 0.0, scale = 0.0
            for i in off..<off + count {
                diff = max(diff, Double(abs(got[i] - want[i])))
                scale = max(scale, Double(abs(want[i])))
            }
            worst = max(worst, scale > 0 ? diff / scale : diff)
        }
    }
    return worst
}

/// A small heterogeneous GQA config (per-layer widths differ), for Swift-only tests.
let heterogeneousConfig = LlamaConfig(
    vocabSize: 80, hiddenSize: 24, headDim: 6,
    layers: [LayerShape(numHeads: 4, numKVHeads: 2, intermediateSize: 40),
             LayerShape(numHeads: 3, numKVHeads: 1, intermediateSize: 28),
             LayerShape(numHeads: 2, numKVHeads: 2, intermediateSize: 36)],
    rmsNormEps: 1e-5, ropeTheta: 10000, maxPositionEmbeddings: 64, tieWordEmbeddings: true, bosTokenId: 1, eosTokenId: 2)

/// Adapters with random A and random nonzero B (so every gradient is nonzero).
func randomAdapters(_ c: LlamaConfig, config: LoRAConfig, seed: UInt64, bScale: Float = 0.2) throws -> LoRAAdapters {
    let a = try LoRAAdapters.initialized(config: config, model: c)
    var rng = SplitMix64(seed: seed)
    for s in a.slots {
        a.setB(s, (0..<config.rank * s.outFeatures).map { _ in rng.nextGaussian() * bScale })
    }
    return a
}

/// Examples with a masked prompt of varying length.
func syntheticExamples(vocab: Int, lengths: [Int], masked: [Int], seed: UInt64) -> [TokenizedExample] {
    var rng = SplitMix64(seed: seed)
    return zip(lengths, masked).map { n, m in
        let ids = (0..<n).map { _ in Int32(3 + Int(rng.next() % UInt64(vocab - 3))) }
        return TokenizedExample(ids: ids, labels: (0..<n).map { $0 < m ? TokenBatch.ignoreIndex : ids[$0] })
    }
}
