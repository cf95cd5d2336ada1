// Attention variants against transformers (scripts/reference/make_window_fixtures.py), tiny random models over
// 17-token sequences: Mistral's sliding window (5), and SmolLM3's layer without RoPE (with use_sliding_window, that
// layer's window of 5) — logits, loss and every linear weight's gradient.
import Foundation
import Testing
import TensorCore
@testable import LlamaModel

/// One golden fixture of make_window_fixtures.py.
struct VariantGolden {
    let name: String
    var dir: URL { resources.appendingPathComponent(name) }
    var index: [String: Any] {
        try! JSONSerialization.jsonObject(with: Data(contentsOf: resources.appendingPathComponent(name + ".json"))) as! [String: Any]
    }
    var ids: [[Int]] { index["input_ids"] as! [[Int]] }
    var tokens: [Int32] { ids.flatMap { $0.map(Int32.init) } }
    func floats(_ suffix: String) throws -> [Float] {
        try Data(contentsOf: resources.appendingPathComponent("golden/\(name)_\(suffix).bin"))
            .withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }
}

struct WindowTests {
    static let dir = resources.appendingPathComponent("tiny_mistral_swa")
    static let variants = ["tiny_mistral_swa", "tiny_smollm3"]

    @Test func configsCarryTheVariant() throws {
        let m = try ModelLoader.load(path: Self.dir.path, tokenizer: false)
        #expect(m.config.modelType == "mistral" && m.config.slidingWindow == 5)
        #expect((0..<m.config.numLayers).allSatisfy { m.config.attentionWindow(layer: $0) == 5 && m.config.usesRope(layer: $0) })
        let s = try ModelLoader.load(path: resources.appendingPathComponent("tiny_smollm3").path, tokenizer: false).config
        #expect(s.modelType == "smollm3" && (0..<4).map { s.usesRope(layer: $0) } == [true, true, true, false])
        #expect((0..<4).map { s.attentionWindow(layer: $0) } == [nil, nil, nil, 5])
        #expect(try LlamaConfig(configJSON: s.configJSON(), source: "config.json") == s)
    }

    @Test(arguments: variants)
    func logitsAndLossMatchTransformers(_ name: String) throws {
        let v = VariantGolden(name: name)
        let m = try ModelLoader.load(path: v.dir.path, tokenizer: false)
        let (b, t) = (v.ids.count, v.ids[0].count)
        let runner = LlamaRunner(weights: m.weights)
        let ours = try runner.logits(tokens: v.tokens, batch: b, seqLen: t), ref = try v.floats("logits")
        #expect(ours.count == ref.count)
        let maxDiff = zip(ours, ref).map { abs($0 - $1) }.max()!
        #expect(maxDiff <= 1e-4, "max |logit diff| \(maxDiff)")
        let loss = try runner.nextTokenNLL(tokens: v.tokens, batch: b, seqLen: t).reduce(0, +) / Double(b * (t - 1))
        let refLoss = (v.index["loss"] as! NSNumber).doubleValue
        #expect(abs(loss - refLoss) <= 1e-5, "loss \(loss) vs \(refLoss)")
        print("\(name) vs transformers: max |logit diff| \(maxDiff), loss \(loss) vs \(refLoss)")

        // The variant matters: as plain Llama math (full causal attention, RoPE everywhere) the same weights give
        // transformers' plain loss.
        var plain = m.weights.config
        plain.modelType = "llama"; plain.slidingWindow = nil; plain.windowedLayers = []; plain.ropeLayers = []
        let plainLoss = try LlamaRunner(weights: LlamaWeights(config: plain, embed: m.weights.embed, layers: m.weights.layers,
                                                              finalNorm: m.weights.finalNorm, lmHead: m.weights.lmHead))
            .nextTokenNLL(tokens: v.tokens, batch: b, seqLen: t).reduce(0, +) / Double(b * (t - 1))
        let refPlain = (v.index["loss_without_variant"] as! NSNumber).doubleValue
        #expect(abs(plainLoss - refPlain) <= 1e-5 && abs(plainLoss - refLoss) > 0.01, "plain \(plainLoss) vs \(refPlain)")
    }

    @Test(arguments: variants)
    func gradientsMatchTransformers(_ name: String) throws {
        let v = VariantGolden(name: name)
        let m = try ModelLoader.load(path: v.dir.path, tokenizer: false)
        let c = m.config, d = c.hiddenSize, hd = c.headDim
        let r = try GradientPass(weights: m.weights).gradients(tokens: v.tokens, batch: v.ids.count,
                                                              seqLen: v.ids[0].count, layers: 0..<c.numLayers, fisher: false)
        #expect(abs(r.loss - (v.index["loss"] as! NSNumber).doubleValue) <= 1e-5)
        let all = try v.floats("grads")
        var worst = 0.0
        for entry in v.index["grads"] as! [[String: Any]] {
            let pname = entry["name"] as! String, shape = entry["shape"] as! [Int], offset = entry["offset"] as! Int
            let ref = Array(all[offset..<offset + shape.reduce(1, *)])
            let layer = Int(pname.split(separator: ".")[2])!, s = c.layers[layer], g = r.gradients[layer]!
            let nq = s.numHeads * hd * d, nkv = s.numKVHeads * hd * d, i = s.intermediateSize * d
            let ours: [Float]
            switch pname.split(separator: ".")[4] {
            case "q_proj": ours = Array(g.wqkv[0..<nq])
            case "k_proj": ours = Array(g.wqkv[nq..<nq + nkv])
            case "v_proj": ours = Array(g.wqkv[(nq + nkv)...])
            case "o_proj": ours = g.wo
            case "gate_proj": ours = Array(g.wGateUp[0..<i])
            case "up_proj": ours = Array(g.wGateUp[i...])
            default: ours = g.wDown
            }
            #expect(ours.count == ref.count, "\(pname)")
            let scale = Double(ref.map { abs($0) }.max()!)
            let err = zip(ours, ref).map { Double(abs($0 - $1)) }.max()! / scale
            #expect(err <= 1e-4, "\(pname): max error \(err) of max |g|")
            worst = max(worst, err)
        }
        print("\(name) gradients vs transformers: worst max error / max |g| = \(worst)")
    }

    /// Past one block of scores (512 query rows) the window still holds: blocked attention with a window of 100
    /// against plain windowed attention in Double.
    @Test func windowHoldsAcrossScoreBlocks() {
        let T = AttentionCore.scoreBlockRows + 88, B = BlockTests.B, nq = BlockTests.nq, nkv = BlockTests.nkv, hd = BlockTests.hd
        let x = BlockTests.qkv(T: T), W = 100, width = (nq + 2 * nkv) * hd
        var out = [Float](repeating: .nan, count: B * T * nq * hd)
        x.withUnsafeBufferPointer { q in
            out.withUnsafeMutableBufferPointer { o in
                AttentionCore.forward(qkv: q.baseAddress!, probs: nil, attn: o.baseAddress!, batch: B, seqLen: T, nq: nq,
                                      nkv: nkv, hd: hd, window: W)
            }
        }
        var worst = 0.0
        for b in 0..<B { for h in 0..<nq { for t in [0, 98, 99, 100, 511, 512, 513, T - 1] {
            let g = h / (nq / nkv), lo = max(0, t + 1 - W)
            func at(_ row: Int, _ col: Int) -> Double { Double(x[(b * T + row) * width + col]) }
            let s = (lo...t).map { u in (0..<hd).reduce(0.0) { $0 + at(t, h * hd + $1) * at(u, (nq + g) * hd + $1) } / Double(hd).squareRoot() }
            let m = s.max()!, e = s.map { exp($0 - m) }, z = e.reduce(0, +)
            for j in 0..<hd {
                let ref = zip(lo...t, e).reduce(0.0) { $0 + $1.1 / z * at($1.0, (nq + nkv + g) * hd + j) }
                worst = max(worst, abs(Double(out[(b * T + t) * nq * hd + h * hd + j]) - ref))
            }
        }}}
        #expect(worst < 1e-5, "worst |windowed − reference| \(worst)")
    }
}
