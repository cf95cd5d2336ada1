// The real SmolLM2-135M-Instruct Q4_1 GGUF (models/smollm2/ under the package root; skipped when absent):
// tensor inventory, HF shapes, and values equal to what transformers 5 loads from the same file
// (Resources/smollm2_golden.json, written by scripts/reference/make_quant_fixtures.py --smollm2).
import Foundation
import Testing
@testable import Formats

@Suite(.enabled(if: Fixtures.hasSmolLM2, "models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf is not present under the package root"))
struct SmolLM2Tests {
    @Test func inventoryAndShapes() throws {
        let file = try GGUFFile(path: Fixtures.smolLM2.path)
        #expect(file.version == 3)
        #expect(file.tensors.count == 272)
        #expect(file.metadata["tokenizer.ggml.tokens"]?.stringArray?.count == 49152)
        #expect(file.metadata["tokenizer.ggml.merges"]?.stringArray?.count == 48900)
        let src = try GGUFLlamaSource(file)
        let hp = src.hyperparameters
        #expect(hp.blockCount == 30 && hp.embeddingLength == 576 && hp.feedForwardLength == 1536)
        #expect(hp.headCounts == [Int](repeating: 9, count: 30) && hp.kvHeadCounts == [Int](repeating: 3, count: 30))
        #expect(hp.vocabSize == 49152 && hp.tiedEmbeddings)
        #expect(hp.ropeFreqBase == 100000 && hp.rmsNormEpsilon == Double(Float(1e-5)))
        #expect(src.unmappedTensorNames.isEmpty)
        #expect(src.shape(of: "model.embed_tokens.weight") == [49152, 576])
        #expect(src.shape(of: "model.norm.weight") == [576])
        #expect(!src.contains("lm_head.weight"))
        for l in 0..<30 {
            let p = "model.layers.\(l)."
            #expect(src.shape(of: p + "self_attn.q_proj.weight") == [576, 576])
            #expect(src.shape(of: p + "self_attn.k_proj.weight") == [192, 576])
            #expect(src.shape(of: p + "self_attn.v_proj.weight") == [192, 576])
            #expect(src.shape(of: p + "self_attn.o_proj.weight") == [576, 576])
            #expect(src.shape(of: p + "mlp.gate_proj.weight") == [1536, 576])
            #expect(src.shape(of: p + "mlp.up_proj.weight") == [1536, 576])
            #expect(src.shape(of: p + "mlp.down_proj.weight") == [576, 1536])
            #expect(src.shape(of: p + "input_layernorm.weight") == [576])
            #expect(src.shape(of: p + "post_attention_layernorm.weight") == [576])
        }
        #expect(src.tensorNames.count == 272)
    }

    @Test func valuesMatchTransformers() throws {
        let data = try Data(contentsOf: Fixtures.resources.appendingPathComponent("smollm2_golden.json"))
        let golden = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let tensors = try #require(golden["tensors"] as? [String: [String: Any]])
        #expect(tensors.count >= 5)
        let src = try GGUFLlamaSource(path: Fixtures.smolLM2.path)
        for (name, g) in tensors.sorted(by: { $0.key < $1.key }) {
            let shape = try #require(g["shape"] as? [Int])
            #expect(src.shape(of: name) == shape, "\(name)")
            let v = try src.floats(name)
            let cols = shape.count > 1 ? shape[1...].reduce(1, *) : v.count
            let first = try #require(g["first64"] as? [Double])
            for (i, e) in first.enumerated() {
                #expect(close(Double(v[i]), e), "\(name)[\(i)] = \(v[i]), transformers \(e)")
            }
            let rows = try #require(g["rows"] as? [String: [Double]])
            for (r, expected) in rows {
                let row = try #require(Int(r))
                for (i, e) in expected.enumerated() {
                    #expect(close(Double(v[row * cols + i]), e), "\(name) row \(row) col \(i) = \(v[row * cols + i]), transformers \(e)")
                }
            }
            var sum = 0.0, absSum = 0.0, weighted = 0.0
            for r in 0..<(v.count / cols) {
                var rs = 0.0
                for c in 0..<cols {
                    let x = Double(v[r * cols + c])
                    rs += x
                    absSum += abs(x)
                }
                sum += rs
                weighted += rs * Double(r % 97 + 1)
            }
            let gs = try #require(g["sum"] as? Double), ga = try #require(g["abs_sum"] as? Double)
            let gw = try #require(g["row_weighted_sum"] as? Double)
            #expect(close(sum, gs, scale: ga), "\(name) sum \(sum) vs \(gs)")
            #expect(close(absSum, ga), "\(name) abs sum \(absSum) vs \(ga)")
            #expect(close(weighted, gw, scale: ga * 97), "\(name) row-weighted sum \(weighted) vs \(gw)")
        }
    }

    /// Loads and dequantizes every tensor; prints the time (meaningful in a release build:
    /// `swift test -c release --filter SmolLM2Tests/loadEverything`).
    @Test func loadEverything() throws {
        let start = Date()
        let src = try GGUFLlamaSource(path: Fixtures.smolLM2.path)
        let opened = Date()
        var total = 0
        for n in src.tensorNames { total += try src.floats(n).count }
        let end = Date()
        #expect(total == 134_515_008)
        print(String(format: "SmolLM2 GGUF: open+metadata %.3f s, dequantize %d values %.3f s, total %.3f s",
                     opened.timeIntervalSince(start), total, end.timeIntervalSince(opened), end.timeIntervalSince(start)))
    }
}

/// |a - b| <= 1e-6 * max(|b|, scale, tiny).
private func close(_ a: Double, _ b: Double, scale: Double = 0) -> Bool {
    abs(a - b) <= 1e-6 * max(abs(b), scale, 1e-30)
}
