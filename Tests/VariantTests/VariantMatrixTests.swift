// The variant matrix: every Llama-family variant llmprune computes (RoPE scalings, biases, sliding windows, NoPE
// layers, tied/untied, GQA, explicit head_dim), each checked the same five ways against transformers, PyTorch and
// peft (scripts/reference/make_variant_matrix.py on the tiny random fixtures in Tests/LlamaModelTests/Resources):
// logits and loss, the gradient of every layer weight and bias, element1 unit scores, and one LoRA optimizer step.
// Each case prints its measured row; with LLMPRUNE_VARIANT_TABLE=FILE it also appends it to FILE as a JSON line
// (scripts/bench/variant_table.sh makes the table from those lines).
import Foundation
import Formats
import LlamaModel
import Testing
@testable import LoRA
@testable import Pruning

private enum Matrix {
    static let resources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Resources")
    static let packageRoot = resources.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let names = ["llama", "llama_untied", "rope_linear", "rope_linear_v4", "rope_dynamic", "rope_yarn",
                        "rope_yarn_mscale", "llama3_2", "qwen2_5", "llama_bias", "mistral", "smollm3"]
}

private struct Golden: Decodable {
    struct Example: Decodable { var ids: [Int32]; var labels: [Int32] }
    struct Scores: Decodable { var attention_kv: [Double]; var attention_qhead: [Double]; var mlp: [Double] }
    struct Lora: Decodable {
        var lr: Double
        var weight_decay: Double
        var max_grad_norm: Double
        var micro_batch_size: Int
        var examples: [Example]
        var loss: Double
        var num_items_in_batch: Int
        var grad_norm: Double
    }
    var variant: String
    var description: String
    var model: String
    var model_type: String
    var input_ids: [[Int32]]
    var loss: Double
    var gradients: [String]
    var element1_sum: [String: Scores]
    var lora: Lora
}

/// What one variant measured; every number is a worst case over its tensors / units.
private struct Row: Encodable {
    var variant = "", description = "", modelType = ""
    var logitsMaxAbs = 0.0, lossAbs = 0.0
    var gradientMaxRel = 0.0, gradientTensors = 0, biasTensors = 0
    var element1MaxRel = 0.0, units = 0
    var loraLossRel = 0.0, loraGradientMaxRel = 0.0, loraStepMaxRel = 0.0, loraGradNormRel = 0.0
    /// The step over the elements whose gradient is at least 1e-4 of its matrix's largest (see the step check).
    var loraStepConditionedMaxRel = 0.0
}

private func sci(_ x: Double) -> String { String(format: "%.2e", x) }

/// max |a − b| / max |b| over one tensor.
private func relativeToScale(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    var diff = 0.0, scale = 0.0
    for (x, y) in zip(a, b) {
        diff = max(diff, Double(abs(x - y)))
        scale = max(scale, Double(abs(y)))
    }
    return scale > 0 ? diff / scale : diff
}

/// The slice of a layer's gradients that transformers calls `name` (model.layers.L.self_attn.q_proj.weight, …).
private func ourGradient(_ name: String, _ r: GradientResult, _ c: LlamaConfig) -> [Float] {
    let parts = name.split(separator: "."), layer = Int(parts[2])!, s = c.layers[layer], g = r.gradients[layer]!
    let isBias = parts.last == "bias", k = isBias ? 1 : c.hiddenSize
    let nq = s.numHeads * c.headDim * k, nkv = s.numKVHeads * c.headDim * k, i = s.intermediateSize * k
    let qkv = isBias ? g.bqkv : g.wqkv, gu = isBias ? g.bGateUp : g.wGateUp
    switch parts[4] {
    case "q_proj": return Array(qkv[0..<nq])
    case "k_proj": return Array(qkv[nq..<nq + nkv])
    case "v_proj": return Array(qkv[(nq + nkv)...])
    case "o_proj": return isBias ? g.bo : g.wo
    case "gate_proj": return Array(gu[0..<i])
    case "up_proj": return Array(gu[i...])
    default: return isBias ? g.bDown : g.wDown
    }
}

@Suite(.serialized) struct VariantMatrixTests {
    @Test(arguments: Matrix.names) func variantMatchesTransformersPyTorchAndPeft(_ name: String) throws {
        let dir = Matrix.resources.appendingPathComponent(name)
        let golden = try JSONDecoder().decode(Golden.self, from: Data(contentsOf: dir.appendingPathComponent("golden.json")))
        let ref = try SafetensorsFile(path: dir.appendingPathComponent("golden.safetensors").path)
        let model = try ModelLoader.load(path: Matrix.packageRoot.appendingPathComponent(golden.model).path, tokenizer: false)
        let c = model.config
        #expect(c.modelType == golden.model_type)
        var row = Row(variant: name, description: golden.description, modelType: c.modelType)
        let b = golden.input_ids.count, t = golden.input_ids[0].count, tokens = golden.input_ids.flatMap { $0 }

        // Logits and loss.
        let runner = LlamaRunner(weights: model.weights)
        let logits = try runner.logits(tokens: tokens, batch: b, seqLen: t), refLogits = try ref.floats("logits")
        #expect(logits.count == refLogits.count)
        row.logitsMaxAbs = zip(logits, refLogits).map { Double(abs($0 - $1)) }.max()!
        let loss = try runner.nextTokenNLL(tokens: tokens, batch: b, seqLen: t).reduce(0, +) / Double(b * (t - 1))
        row.lossAbs = abs(loss - golden.loss)

        // Gradients of every layer weight and bias.
        let grads = try GradientPass(weights: model.weights).gradients(tokens: tokens, batch: b, seqLen: t,
                                                                       layers: 0..<c.numLayers, fisher: false)
        #expect(abs(grads.loss - golden.loss) <= 1e-5)
        for pname in golden.gradients {
            let ours = ourGradient(pname, grads, c), theirs = try ref.floats(pname)
            #expect(ours.count == theirs.count, "\(pname)")
            row.gradientMaxRel = max(row.gradientMaxRel, relativeToScale(ours, theirs))
            row.gradientTensors += 1
            if pname.hasSuffix(".bias") { row.biasTensors += 1 }
        }
        #expect(row.gradientTensors == c.numLayers * 7 + row.biasTensors)

        // element1 unit scores (sum reduction): KV groups, query heads, MLP channels of every layer.
        for l in 0..<c.numLayers {
            let want = golden.element1_sum["\(l)"]!
            for (unit, theirs) in [(AttentionUnit.kvGroup, want.attention_kv), (.queryHead, want.attention_qhead)] {
                let s = try Importance.scores(layer: l, weights: model.weights.layers[l], gradient: grads.gradients[l],
                                              fisher: nil, config: c, criterion: .element1, reduction: .sum,
                                              attentionUnit: unit, seed: 0)
                let pairs = Array(zip(s.attention, theirs)) + (unit == .kvGroup ? Array(zip(s.mlp, want.mlp)) : [])
                #expect(s.attention.count == theirs.count && s.mlp.count == want.mlp.count)
                for (x, y) in pairs {
                    row.element1MaxRel = max(row.element1MaxRel, abs(x - y) / max(abs(y), 1e-30))
                    row.units += 1
                }
            }
        }

        // One LoRA optimizer step from peft's initial adapters.
        let adapters = try PEFTFormat.load(from: dir.appendingPathComponent("adapter_init"), model: c)
        var o = TrainingOptions()
        o.learningRate = golden.lora.lr
        o.weightDecay = golden.lora.weight_decay
        o.maxGradNorm = golden.lora.max_grad_norm
        o.warmupSteps = 0
        o.microBatchSize = golden.lora.micro_batch_size
        o.batchSize = golden.lora.examples.count
        let trainer = try LoRATrainer(pass: try LoRAPass(base: model.weights, adapters: adapters), options: o, totalSteps: 1)
        let (lsum, _) = try trainer.accumulate(golden.lora.examples.map { TokenizedExample(ids: $0.ids, labels: $0.labels) })
        #expect(lsum.predictions == golden.lora.num_items_in_batch)
        row.loraLossRel = abs(lsum.mean - golden.lora.loss) / golden.lora.loss
        func flat(_ prefix: String) throws -> [Float] {
            var out = [Float](repeating: 0, count: adapters.parameterCount)
            for s in adapters.slots {
                for (matrix, off) in [("lora_A", s.aOffset), ("lora_B", s.bOffset)] {
                    let v = try ref.floats(prefix + PEFTFormat.tensorName(layer: s.layer, target: s.target, matrix: matrix))
                    out.replaceSubrange(off..<off + v.count, with: v)
                }
            }
            return out
        }
        /// Worst over matrices of max |a − b| / max |b|; with `where`, only over the elements it admits.
        func worstPerMatrix(_ got: [Float], _ want: [Float], where admit: ((Int, Int, Int) -> Bool)? = nil) -> Double {
            let r = adapters.config.rank
            var worst = 0.0
            for s in adapters.slots {
                for (off, n) in [(s.aOffset, r * s.inFeatures), (s.bOffset, r * s.outFeatures)] {
                    let kept = (off..<off + n).filter { admit?(off, n, $0) ?? true }
                    worst = max(worst, relativeToScale(kept.map { got[$0] }, kept.map { want[$0] }))
                }
            }
            return worst
        }
        let refGrads = try flat("lora.grad.")
        row.loraGradientMaxRel = worstPerMatrix(trainer.pass.flatGradients, refGrads)
        let (norm, _) = trainer.applyUpdate()
        row.loraGradNormRel = abs(norm - golden.lora.grad_norm) / golden.lora.grad_norm
        let refStep = try flat("lora.step.")
        row.loraStepMaxRel = worstPerMatrix(adapters.parameters, refStep)
        // AdamW's first step moves each element by lr · g / (|g| + eps): an element whose gradient is as small as
        // the float32 rounding of its matrix's gradient (≈1e-6 of the largest) moves by an amount that rounding
        // decides, in PyTorch as here. Over the elements with |g| ≥ 1e-4 · max |g| the step is held to 1e-5.
        row.loraStepConditionedMaxRel = worstPerMatrix(adapters.parameters, refStep) { off, n, i in
            let scale = refGrads[off..<off + n].map { abs($0) }.max()!
            return abs(refGrads[i]) >= 1e-4 * scale
        }

        let measured = [
            "logits max|Δ| \(sci(row.logitsMaxAbs))", "loss |Δ| \(sci(row.lossAbs))",
            "gradients (\(row.gradientTensors), \(row.biasTensors) biases) max rel \(sci(row.gradientMaxRel))",
            "element1 (\(row.units) units) max rel \(sci(row.element1MaxRel))",
            "LoRA loss rel \(sci(row.loraLossRel)), gradients max rel \(sci(row.loraGradientMaxRel)), "
                + "step max rel \(sci(row.loraStepMaxRel)) (\(sci(row.loraStepConditionedMaxRel)) where |g| ≥ 1e-4 max |g|)",
        ]
        print("variant \(name) (\(c.modelType)): " + measured.joined(separator: ", "))
        if let path = ProcessInfo.processInfo.environment["LLMPRUNE_VARIANT_TABLE"], !path.isEmpty {
            let line = String(decoding: try JSONEncoder().encode(row), as: UTF8.self) + "\n"
            if let h = FileHandle(forWritingAtPath: path) {
                h.seekToEndOfFile()
                h.write(Data(line.utf8))
                h.closeFile()
            } else {
                try line.write(toFile: path, atomically: true, encoding: .utf8)
            }
        }
        #expect(row.logitsMaxAbs <= 1e-4)
        #expect(row.lossAbs <= 1e-5)
        #expect(row.gradientMaxRel <= 1e-4)
        #expect(row.element1MaxRel <= 1e-4)
        #expect(row.loraLossRel <= 1e-5)
        #expect(row.loraGradientMaxRel <= 1e-4)
        #expect(row.loraStepMaxRel <= 1e-4)
        #expect(row.loraStepConditionedMaxRel <= 1e-5)
    }
}
