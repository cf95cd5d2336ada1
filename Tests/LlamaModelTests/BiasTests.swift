// Linear-layer biases against transformers (scripts/reference/make_bias_fixtures.py): a tiny random Qwen2ForCausalLM
// (q/k/v biases, tied, sliding window on layer 1 only) and a tiny LlamaForCausalLM with attention_bias and mlp_bias
// (q/k/v/o and gate/up/down biases, untied) — logits, loss, and the gradient of every linear weight and bias.
import Foundation
import Testing
@testable import LlamaModel
import TensorCore

struct BiasTests {
    static let names = ["tiny_qwen2_bias", "tiny_llama_bias"]

    static func meta(_ name: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: resources.appendingPathComponent(name + ".json"))) as! [String: Any]
    }
    static func tokens(_ m: [String: Any]) -> (tokens: [Int32], batch: Int, seqLen: Int) {
        let ids = m["input_ids"] as! [[Int]]
        return (ids.flatMap { $0.map(Int32.init) }, ids.count, ids[0].count)
    }
    static func floats(_ file: String) throws -> [Float] {
        try Data(contentsOf: resources.appendingPathComponent("golden/" + file)).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    @Test func configsDeclareTheirBiases() throws {
        let q = try ModelLoader.load(path: resources.appendingPathComponent("tiny_qwen2_bias").path, tokenizer: false).config
        #expect(q.modelType == "qwen2" && q.qkvBias && !q.oBias && !q.mlpBias && q.tieWordEmbeddings)
        #expect(q.slidingWindow == 5 && q.attentionWindow(layer: 0) == nil && q.attentionWindow(layer: 1) == 5)
        let l = try ModelLoader.load(path: resources.appendingPathComponent("tiny_llama_bias").path, tokenizer: false).config
        #expect(l.modelType == "llama" && l.qkvBias && l.oBias && l.mlpBias && l.slidingWindow == nil)
        // Parameter counts include the biases: 2 layers × (q/k/v 128 (+ o 64) (+ gate/up 192 + down 64)).
        let d = 64, hd = 16
        let weights = 256 * d + d + 2 * (2 * d + (4 + 2 * 2) * hd * d + d * 4 * hd + 3 * d * 96)
        #expect(q.parameterCount == weights + 2 * 128)
        #expect(l.parameterCount == weights + 256 * d + 2 * (128 + 64 + 192 + 64))
    }

    @Test(arguments: names) func logitsAndLossMatchTransformers(_ name: String) throws {
        let m = try ModelLoader.load(path: resources.appendingPathComponent(name).path, tokenizer: false)
        let meta = try Self.meta(name), (tokens, b, t) = Self.tokens(meta)
        let runner = LlamaRunner(weights: m.weights)
        let ours = try runner.logits(tokens: tokens, batch: b, seqLen: t), ref = try Self.floats(name + "_logits.bin")
        #expect(ours.count == ref.count)
        let maxDiff = zip(ours, ref).map { abs($0 - $1) }.max()!
        #expect(maxDiff <= 1e-4, "max |logit diff| \(maxDiff)")
        let loss = try runner.nextTokenNLL(tokens: tokens, batch: b, seqLen: t).reduce(0, +) / Double(b * (t - 1))
        let refLoss = (meta["loss"] as! NSNumber).doubleValue
        #expect(abs(loss - refLoss) <= 1e-5, "loss \(loss) vs \(refLoss)")
        #expect(abs(loss - (meta["loss_without_biases"] as! NSNumber).doubleValue) > 0.05)   // the biases matter
        print("\(name) vs transformers: max |logit diff| \(maxDiff), loss \(loss) vs \(refLoss) (|Δ| \(abs(loss - refLoss)))")
    }

    @Test(arguments: names) func gradientsMatchTransformers(_ name: String) throws {
        let m = try ModelLoader.load(path: resources.appendingPathComponent(name).path, tokenizer: false)
        let meta = try Self.meta(name), (tokens, b, t) = Self.tokens(meta)
        let c = m.config, d = c.hiddenSize, hd = c.headDim
        let r = try GradientPass(weights: m.weights).gradients(tokens: tokens, batch: b, seqLen: t, layers: 0..<c.numLayers,
                                                              fisher: false)
        #expect(abs(r.loss - (meta["loss"] as! NSNumber).doubleValue) <= 1e-5)
        let all = try Self.floats(name + "_grads.bin")
        var worst = 0.0, biases = 0
        for entry in meta["grads"] as! [[String: Any]] {
            let pname = entry["name"] as! String, shape = entry["shape"] as! [Int], offset = entry["offset"] as! Int
            let ref = Array(all[offset..<offset + shape.reduce(1, *)])
            let parts = pname.split(separator: "."), layer = Int(parts[2])!, s = c.layers[layer], g = r.gradients[layer]!
            let isBias = parts.last == "bias"
            let k = isBias ? 1 : d
            let nq = s.numHeads * hd * k, nkv = s.numKVHeads * hd * k, i = s.intermediateSize * k
            let qkv = isBias ? g.bqkv : g.wqkv, gu = isBias ? g.bGateUp : g.wGateUp
            let ours: [Float]
            switch parts[4] {
            case "q_proj": ours = Array(qkv[0..<nq])
            case "k_proj": ours = Array(qkv[nq..<nq + nkv])
            case "v_proj": ours = Array(qkv[(nq + nkv)...])
            case "o_proj": ours = isBias ? g.bo : g.wo
            case "gate_proj": ours = Array(gu[0..<i])
            case "up_proj": ours = Array(gu[i...])
            default: ours = isBias ? g.bDown : g.wDown
            }
            if isBias { biases += 1 }
            #expect(ours.count == ref.count, "\(pname)")
            let scale = Double(ref.map { abs($0) }.max()!)
            let err = zip(ours, ref).map { Double(abs($0 - $1)) }.max()! / scale
            #expect(err <= 1e-4, "\(pname): max error \(err) of max |g|")
            worst = max(worst, err)
        }
        #expect(biases == (name == "tiny_qwen2_bias" ? 6 : 14))
        print("\(name) gradients (weights and \(biases) biases) vs transformers: worst max error / max |g| = \(worst)")
    }

    /// A low-memory stage (layers widened from the mapped file one at a time) reads the biases too: its loss and
    /// gradients, biases included, are those of the full load bit for bit. Both passes run with OpenBLAS pinned to
    /// one thread: its rounding depends on the thread count, a process-wide setting that a test running alongside
    /// (any attention pass, in `BLAS.singleThreaded`) can change between the two (seen in CI as a loss 1e-8 apart).
    @Test(arguments: names) func streamedStageMatchesTheFullLoad(_ name: String) throws {
        try BLAS.singleThreaded { try streamedStageMatches(name) }
    }

    func streamedStageMatches(_ name: String) throws {
        let path = resources.appendingPathComponent(name).path
        let meta = try Self.meta(name), (tokens, b, t) = Self.tokens(meta)
        let full = try ModelLoader.load(path: path, tokenizer: false).weights
        let ref = try GradientPass(weights: full).gradients(tokens: tokens, batch: b, seqLen: t, layers: 0..<2, fisher: true)
        let stage = try ModelLoader.loadStage(path: path, layers: 0..<2, embedding: true, head: true, tokenizer: false,
                                              lowMemory: true)
        #expect(stage.streamed != nil && stage.weights.layers.allSatisfy { $0.biasCount == 0 })
        let pass = StageGradientPass(stage: stage, scored: 0..<2)
        _ = try pass.forward(tokens: tokens, batch: b, seqLen: t, input: nil)
        _ = try pass.lossBackward()
        _ = try pass.backward(outputGradient: nil, fisher: true)
        let r = pass.result()
        #expect(r.loss == ref.loss)
        for l in 0..<2 {
            #expect(r.gradients[l]!.parts == ref.gradients[l]!.parts, "layer \(l)")
            #expect(r.fisher![l]!.parts == ref.fisher![l]!.parts, "layer \(l)")
            #expect(r.gradients[l]!.bqkv.count == full.layers[l].bqkv.count && !r.gradients[l]!.bqkv.isEmpty)
        }
    }

    /// The same weights as F32 GGUFs: arch qwen2 (q/k in HF order) against transformers' own load of that GGUF (which
    /// has no sliding-window key, hence no window), and arch llama (q/k weights and biases permuted as llama.cpp's
    /// converter does) against the safetensors model (transformers' GGUF loader drops llama biases).
    @Test(arguments: names) func ggufGivesTheSameModel(_ name: String) throws {
        let m = try ModelLoader.load(path: resources.appendingPathComponent(name + ".gguf").path, tokenizer: false)
        let hf = try ModelLoader.load(path: resources.appendingPathComponent(name).path, tokenizer: false)
        let qwen = name == "tiny_qwen2_bias"
        #expect(m.config.modelType == (qwen ? "qwen2" : "llama") && m.config.slidingWindow == nil)
        #expect((m.config.qkvBias, m.config.oBias, m.config.mlpBias) == (hf.config.qkvBias, hf.config.oBias, hf.config.mlpBias))
        for (a, b) in zip(m.weights.layers, hf.weights.layers) {
            #expect(a.wqkv == b.wqkv && a.bqkv == b.bqkv && a.bo == b.bo && a.bGateUp == b.bGateUp && a.bDown == b.bDown)
        }
        let meta = try Self.meta(name), (tokens, b, t) = Self.tokens(meta)
        let ours = try LlamaRunner(weights: m.weights).logits(tokens: tokens, batch: b, seqLen: t)
        let ref = try Self.floats(qwen ? name + "_gguf_logits.bin" : name + "_logits.bin")
        let diff = zip(ours, ref).map { abs($0 - $1) }.max()!
        #expect(ours.count == ref.count && diff <= 1e-4, "max |logit diff| \(diff)")
        print("\(name).gguf vs \(qwen ? "transformers' load of the GGUF" : "the safetensors model"): max |logit diff| \(diff)")
    }
}
