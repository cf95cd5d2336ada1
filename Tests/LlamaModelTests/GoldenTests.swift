// The forward pass against golden outputs of transformers (scripts/reference/make_tiny_fixtures.py) for tiny
// random GQA Llamas: from safetensors (tied and untied heads), from an F32 GGUF with llama.cpp's q/k row
// permutation, and from a Q8_0 GGUF as transformers dequantizes it.
import Foundation
import Testing
@testable import LlamaModel

let resources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Resources")

struct Golden {
    let ids: [Int32]
    let batch: Int, seqLen: Int
    let models: [String: [String: Any]]

    nonisolated(unsafe) static let shared: Golden = {
        let data = try! Data(contentsOf: resources.appendingPathComponent("tiny_golden.json"))
        let obj = try! JSONSerialization.jsonObject(with: data) as! [String: Any]
        let ids = (obj["input_ids"] as! [[Int]])
        return Golden(ids: ids.flatMap { $0.map(Int32.init) }, batch: ids.count, seqLen: ids[0].count,
                      models: obj["models"] as! [String: [String: Any]])
    }()

    func logits(_ model: String) -> [Float] {
        let file = models[model]!["logits_file"] as! String
        let data = try! Data(contentsOf: resources.appendingPathComponent(file))
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    func loss(_ model: String) -> Double { (models[model]!["loss"] as! NSNumber).doubleValue }
}

@Test(arguments: [("tiny", "tiny"), ("tiny_untied", "tiny_untied"), ("tiny.gguf", "tiny"), ("tiny_q8.gguf", "tiny_q8_gguf")])
func logitsAndLossMatchTransformers(path: String, golden name: String) throws {
    let g = Golden.shared
    let m = try ModelLoader.load(path: resources.appendingPathComponent(path).path, tokenizer: false)
    let runner = LlamaRunner(weights: m.weights)
    let ours = try runner.logits(tokens: g.ids, batch: g.batch, seqLen: g.seqLen)
    let ref = g.logits(name)
    #expect(ours.count == ref.count)
    let maxDiff = zip(ours, ref).map { abs($0 - $1) }.max()!
    print("golden \(path): max abs logit diff \(maxDiff)")
    #expect(maxDiff <= 1e-4, "max |logit diff| \(maxDiff)")
    // Batch-mean next-token cross-entropy, as model(ids, labels=ids).loss.
    let sums = try runner.nextTokenNLL(tokens: g.ids, batch: g.batch, seqLen: g.seqLen)
    let loss = sums.reduce(0, +) / Double(g.batch * (g.seqLen - 1))
    print("golden \(path): loss \(loss) vs \(g.loss(name))")
    #expect(abs(loss - g.loss(name)) <= 1e-5, "loss \(loss) vs \(g.loss(name))")
}

@Test func ggufAndSafetensorsGiveIdenticalWeights() throws {
    let st = try ModelLoader.load(path: resources.appendingPathComponent("tiny").path, tokenizer: false).weights
    let gg = try ModelLoader.load(path: resources.appendingPathComponent("tiny.gguf").path, tokenizer: false).weights
    #expect(st.config.layers == gg.config.layers && st.config.tieWordEmbeddings && gg.config.tieWordEmbeddings)
    for (a, b) in zip(st.huggingFaceTensors(), gg.huggingFaceTensors()) {
        #expect(a.name == b.name && a.shape == b.shape)
        #expect(a.values == b.values, "\(a.name) differs")
    }
}
