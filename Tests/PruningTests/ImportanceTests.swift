// Importance scores: golden values from PyTorch (scripts/reference/make_importance_fixtures.py, tiny GQA model,
// every criterion × reduction × unit kind), a hand-computed GQA mapping case, the random criterion and errors.
import Foundation
import Testing
import LlamaModel
@testable import Pruning

// MARK: - golden scores (PyTorch)

private enum ImportanceFixtures {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Resources/importance")
    static let tinyModel = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("LlamaModelTests/Resources/tiny")

    static func read<T>(_ file: String, as: T.Type) throws -> [T] {
        let data = try Data(contentsOf: dir.appendingPathComponent(file))
        return data.withUnsafeBytes { Array($0.bindMemory(to: T.self)) }
    }

    /// g (or F) of one layer in the fused layouts, from the fixture's HF-layout [out, in] matrices.
    static func layerTensors(_ layer: Int, _ kind: String) throws -> LayerGradients {
        func m(_ name: String) throws -> [Float] { try read("layer\(layer).\(name).\(kind).bin", as: Float.self) }
        return LayerGradients(wqkv: try m("q_proj") + m("k_proj") + m("v_proj"), wo: try m("o_proj"),
                              wGateUp: try m("gate_proj") + m("up_proj"), wDown: try m("down_proj"))
    }
}

@Test func scoresMatchPyTorchForEveryCriterionReductionAndUnit() throws {
    let indexData = try Data(contentsOf: ImportanceFixtures.dir.appendingPathComponent("index.json"))
    let index = try JSONSerialization.jsonObject(with: indexData) as! [String: Any]
    let sc = index["scores"] as! [String: Any]
    let shape = (sc["shape"] as! [Int])
    let criteria = (sc["criteria"] as! [String]).map { Criterion(rawValue: $0)! }
    let reductions = (sc["reductions"] as! [String]).map { GroupReduction(rawValue: $0)! }
    let segments = sc["unit_segments"] as! [String: [Int]]
    let fisherLayers = Set(index["fisher_full_layers"] as! [Int])
    let golden = try ImportanceFixtures.read(sc["file"] as! String, as: Double.self)
    #expect(golden.count == shape.reduce(1, *))
    let model = try ModelLoader.load(path: ImportanceFixtures.tinyModel.path, tokenizer: false).weights
    #expect(shape[0] == model.layers.count)
    var worst: [Criterion: Double] = [:]
    for layer in 0..<shape[0] {
        let g = try ImportanceFixtures.layerTensors(layer, "grad")
        let f = fisherLayers.contains(layer) ? try ImportanceFixtures.layerTensors(layer, "fisher") : nil
        for (ci, c) in criteria.enumerated() {
            if c.needsFisher && f == nil { continue }   // F is stored for layer 0 only
            for (ri, r) in reductions.enumerated() {
                let base = ((layer * shape[1] + ci) * shape[2] + ri) * shape[3]
                for (unit, seg) in [(AttentionUnit.kvGroup, "attention_kv"), (.queryHead, "attention_qhead")] {
                    let s = try Importance.scores(layer: layer, weights: model.layers[layer], gradient: g, fisher: f,
                                                  config: model.config, criterion: c, reduction: r,
                                                  attentionUnit: unit, seed: 0)
                    var pairs: [(ours: [Double], ref: ArraySlice<Double>)] = []
                    let a = segments[seg]!
                    pairs.append((s.attention, golden[(base + a[0])..<(base + a[1])]))
                    if unit == .kvGroup {
                        let mm = segments["mlp"]!
                        pairs.append((s.mlp, golden[(base + mm[0])..<(base + mm[1])]))
                    }
                    for (ours, ref) in pairs {
                        #expect(ours.count == ref.count, "layer \(layer) \(c) \(r) \(unit)")
                        for (x, y) in zip(ours, ref) {
                            let rel = abs(x - y) / max(abs(y), 1e-30)
                            worst[c] = max(worst[c] ?? 0, rel)
                            #expect(rel <= 1e-4, "layer \(layer) \(c.rawValue) \(r.rawValue) \(unit.rawValue): \(x) vs \(y)")
                        }
                    }
                }
            }
        }
    }
    for c in criteria { print("importance golden: \(c.rawValue) max relative error \(worst[c] ?? .nan)") }
    #expect(worst.count == criteria.count)
}

// MARK: - hand-computed cases

/// d = 4, hd = 2, 4 query heads over 2 KV heads (n_rep = 2), I = 3; all weights 1, gradients 0.
private func handLayer() -> (LlamaConfig, LayerWeights, LayerGradients) {
    let shape = LayerShape(numHeads: 4, numKVHeads: 2, intermediateSize: 3)
    let config = LlamaConfig(vocabSize: 8, hiddenSize: 4, headDim: 2, layers: [shape], rmsNormEps: 1e-5,
                             ropeTheta: 10000, maxPositionEmbeddings: 16, tieWordEmbeddings: true)
    let d = 4, hd = 2
    let w = LayerWeights(shape: shape, inputNorm: .init(repeating: 1, count: d),
                         wqkv: .init(repeating: 1, count: (4 + 2 * 2) * hd * d), wo: .init(repeating: 1, count: d * 4 * hd),
                         postNorm: .init(repeating: 1, count: d), wGateUp: .init(repeating: 1, count: 2 * 3 * d),
                         wDown: .init(repeating: 1, count: d * 3))
    return (config, w, LayerGradients(zerosLike: w))
}

private func score(_ config: LlamaConfig, _ w: LayerWeights, _ g: LayerGradients?, _ f: LayerGradients? = nil,
                   _ c: Criterion = .element1, _ r: GroupReduction = .sum, _ u: AttentionUnit = .kvGroup,
                   seed: UInt64 = 0) throws -> LayerScores {
    try Importance.scores(layer: 0, weights: w, gradient: g, fisher: f, config: config, criterion: c,
                          reduction: r, attentionUnit: u, seed: seed)
}

@Test func queryHeadImportanceLandsOnItsOwnKVGroup() throws {
    let (config, w, zero) = handLayer()
    var g = zero
    // Query head 2 = q rows 4, 5 (hd = 2, d = 4). It reads KV head 2 / n_rep = 1; the reference's modulo fold
    // would credit KV head 2 mod 2 = 0.
    g.wqkv[4 * 4 + 0] = 3
    g.wqkv[5 * 4 + 3] = -0.5
    var s = try score(config, w, g)
    #expect(s.attention == [0, 3.5])
    #expect(s.mlp == [0, 0, 0])
    s = try score(config, w, g, nil, .element1, .sum, .queryHead)
    #expect(s.attention == [0, 0, 3.5, 0])
    // The o columns of query head 3 (columns 6, 7 of the [d × nq·hd] o matrix) also belong to KV group 1.
    g = zero
    g.wo[2 * 8 + 7] = 2
    #expect(try score(config, w, g).attention == [0, 2])
    #expect(try score(config, w, g, nil, .element1, .sum, .queryHead).attention == [0, 0, 0, 2])
    // KV head 0's k rows (rows 8, 9) and v rows (rows 12, 13) stay in group 0.
    g = zero
    g.wqkv[9 * 4 + 1] = 1
    g.wqkv[12 * 4 + 2] = 4
    #expect(try score(config, w, g).attention == [5, 0])
    #expect(try score(config, w, g, nil, .element1, .sum, .queryHead).attention == [0, 0, 0, 0])
}

@Test func reductionsCombineMembersPerChannelThenSumTheHead() throws {
    let (config, w, zero) = handLayer()
    var g = zero
    // KV channel i = 1·hd + 0 = 2: q heads 2, 3 → q channels 4 and 6 (rows), o columns 4 and 6; k row 6, v row 10.
    g.wqkv[4 * 4] = 1; g.wqkv[6 * 4] = 2          // q: folded 3
    g.wqkv[(8 + 2) * 4] = 5                        // k row of KV channel 2
    g.wqkv[(12 + 2) * 4 + 1] = 7                   // v row
    g.wo[0 * 8 + 4] = 0.5; g.wo[3 * 8 + 6] = 0.5   // o: folded 1
    // KV channel 3 only has k = 1 (row 11).
    g.wqkv[11 * 4 + 3] = 1
    let expected: [GroupReduction: Double] = [.sum: 16 + 1, .mean: 16.0 / 4 + 0.25, .max: 7 + 1, .prod: 105, .first: 5 + 1]
    for (r, e) in expected {
        let s = try score(config, w, g, nil, .element1, r)
        #expect(s.attention == [0, e], "\(r)")
    }
    // Query-head unit: channel 4 (head 2, e = 0) has q = 1, o = 0.5; channel 6 (head 3) q = 2, o = 0.5.
    let qh: [GroupReduction: [Double]] = [.sum: [0, 0, 1.5, 2.5], .mean: [0, 0, 0.75, 1.25], .max: [0, 0, 1, 2],
                                          .prod: [0, 0, 0.5, 1], .first: [0, 0, 1, 2]]
    for (r, e) in qh { #expect(try score(config, w, g, nil, .element1, r, .queryHead).attention == e, "\(r)") }
    // MLP channel 1: gate row 1 = 2, up row 4 = 3, down column 1 = 4.
    g = zero
    g.wGateUp[1 * 4 + 2] = 2
    g.wGateUp[4 * 4] = -3
    g.wDown[2 * 3 + 1] = 4
    let mlp: [GroupReduction: Double] = [.sum: 9, .mean: 3, .max: 4, .prod: 24, .first: 2]
    for (r, e) in mlp { #expect(try score(config, w, g, nil, .element1, r).mlp == [0, e, 0], "\(r)") }
}

@Test func salienceFormulas() throws {
    let (config, w0, zero) = handLayer()
    var w = w0
    var g = zero, f = zero
    // Gate row 0: w = (2, -1, 1, 1), g = (1, 1, 0, 0), F = (4, 0, 0, 1).
    w.wGateUp[0] = 2; w.wGateUp[1] = -1
    g.wGateUp[0] = 1; g.wGateUp[1] = 1
    f.wGateUp[0] = 4; f.wGateUp[3] = 1
    func gate0(_ c: Criterion) throws -> Double { try score(config, w, g, f, c, .first).mlp[0] }
    #expect(try gate0(.element1) == 2 + 1)                        // |2| + |−1|
    #expect(try gate0(.vector) == 1)                              // |2 − 1|
    #expect(try gate0(.paramSecond) == 16 + 1)                    // 2·4·2 + 1·1·1
    #expect(try gate0(.element2) == abs(2 - 8) + 1 + 0 + 0.5)     // |wg − ½wFw| per element
    #expect(try gate0(.l1) == 5)
    #expect(try gate0(.l2) == 7)
    // Down column 0 (o/down are scored by columns): w = 1, g column = (1, −1, 1, 0) → vector |1| = 1, element1 3.
    g = zero
    g.wDown[0] = 1; g.wDown[3] = -1; g.wDown[6] = 1
    #expect(try score(config, w0, g, nil, .vector, .max).mlp == [1, 0, 0])
    #expect(try score(config, w0, g, nil, .element1, .max).mlp == [3, 0, 0])
}

@Test func randomScoresAreSeededPerLayer() throws {
    let (config, w, _) = handLayer()
    let a = try score(config, w, nil, nil, .random, .sum, .kvGroup, seed: 7)
    let b = try score(config, w, nil, nil, .random, .sum, .kvGroup, seed: 7)
    let c = try score(config, w, nil, nil, .random, .sum, .kvGroup, seed: 8)
    let q = try score(config, w, nil, nil, .random, .sum, .queryHead, seed: 7)
    #expect(a == b)
    #expect(a.attention != c.attention && a.mlp != c.mlp)
    #expect(a.attention.count == 2 && q.attention.count == 4 && a.mlp.count == 3)
    #expect((a.attention + a.mlp + q.attention).allSatisfy { $0 >= 0 && $0 < 1 })
    #expect(Set(a.mlp).count == 3)
}

@Test func missingGradientOrFisherIsATypedError() throws {
    let (config, w, zero) = handLayer()
    for c in Criterion.allCases where c.needsGradient {
        #expect(throws: ImportanceError.missingGradient(layer: 0, criterion: c)) { try score(config, w, nil, zero, c) }
    }
    #expect(throws: ImportanceError.missingFisher(layer: 0, criterion: .paramSecond)) {
        try score(config, w, zero, nil, .paramSecond)
    }
    #expect(throws: ImportanceError.missingFisher(layer: 0, criterion: .element2)) { try score(config, w, zero, nil, .element2) }
    // Magnitude and random criteria need neither.
    for c in [Criterion.l1, .l2, .random] { _ = try score(config, w, nil, nil, c) }
    let e = ImportanceError.missingGradient(layer: 3, criterion: .element1)
    #expect(!e.description.contains("\n") && e.description.contains("element1"))
    var bad = zero
    bad.wo.removeLast()
    #expect(throws: ImportanceError.shapeMismatch(layer: 0, tensor: "gradient wo", expected: 32, got: 31)) {
        try score(config, w, bad)
    }
    #expect(throws: ImportanceError.layerOutOfRange(layer: 1, layerCount: 1)) {
        try Importance.scores(layer: 1, weights: w, gradient: zero, fisher: nil, config: config, criterion: .element1,
                              reduction: .sum, attentionUnit: .kvGroup, seed: 0)
    }
}

@Test func criterionNamesMatchTheCLI() {
    #expect(Criterion.allCases.map(\.rawValue) == ["element1", "element2", "param_second", "vector", "l1", "l2", "random", "fluctuation", "obs"])
    #expect(AttentionUnit.kvGroup.rawValue == "kv-group" && AttentionUnit.queryHead.rawValue == "query-head")
}

// MARK: - speed

/// SmolLM2-135M shapes (d 576, hd 64, 9 heads over 3 KV heads, I 1536), 24 layers sharing one set of buffers.
@Test func scoringSmolLM2SizedLayersIsFast() throws {
    let shape = LayerShape(numHeads: 9, numKVHeads: 3, intermediateSize: 1536)
    let config = LlamaConfig(vocabSize: 16, hiddenSize: 576, headDim: 64, layers: Array(repeating: shape, count: 24),
                             rmsNormEps: 1e-5, ropeTheta: 10000, maxPositionEmbeddings: 64, tieWordEmbeddings: true)
    var state: UInt32 = 12345
    let pool = (0..<(2 * 1536 * 576 + 7)).map { _ in
        state = state &* 1_664_525 &+ 1_013_904_223; return Float(Int32(bitPattern: state)) * 1e-10
    }
    var offset = 0
    func fill(_ n: Int) -> [Float] { offset = (offset + 1) % 7; return Array(pool[offset..<(offset + n)]) }
    let d = 576, hd = 64
    let w = LayerWeights(shape: shape, inputNorm: fill(d), wqkv: fill(15 * hd * d), wo: fill(d * 9 * hd), postNorm: fill(d),
                         wGateUp: fill(2 * 1536 * d), wDown: fill(d * 1536))
    let g = LayerGradients(wqkv: fill(w.wqkv.count), wo: fill(w.wo.count), wGateUp: fill(w.wGateUp.count), wDown: fill(w.wDown.count))
    for c in [Criterion.element1, .element2, .vector] {
        let t0 = Date()
        for l in 0..<24 {
            let s = try Importance.scores(layer: l, weights: w, gradient: g, fisher: g, config: config, criterion: c,
                                          reduction: .sum, attentionUnit: .kvGroup, seed: 0)
            #expect(s.attention.count == 3 && s.mlp.count == 1536)
        }
        let dt = Date().timeIntervalSince(t0)
        print("importance: 24 SmolLM2-sized layers, \(c.rawValue): \(String(format: "%.3f", dt)) s")
        #expect(dt < 3, "scoring took \(dt) s")
    }
}

@Test func modelLevelScoringMatchesPerLayerCalls() throws {
    let model = try ModelLoader.load(path: ImportanceFixtures.tinyModel.path, tokenizer: false).weights
    var grads: [Int: LayerGradients] = [:]
    for l in 0..<model.layers.count { grads[l] = try ImportanceFixtures.layerTensors(l, "grad") }
    let result = GradientResult(loss: 0, gradients: grads, fisher: nil, peakActivationBytes: 0)
    let all = try Importance.scores(layers: [2, 0], model: model, gradients: result, criterion: .vector,
                                    reduction: .mean, attentionUnit: .queryHead, seed: 1)
    #expect(all.map(\.layer) == [2, 0])
    let one = try Importance.scores(layer: 2, weights: model.layers[2], gradient: grads[2], fisher: nil,
                                    config: model.config, criterion: .vector, reduction: .mean,
                                    attentionUnit: .queryHead, seed: 1)
    #expect(all[0] == one)
    #expect(throws: ImportanceError.missingFisher(layer: 1, criterion: .element2)) {
        try Importance.scores(layers: [1], model: model, gradients: result, criterion: .element2, reduction: .sum,
                              attentionUnit: .kvGroup, seed: 0)
    }
}
