// FLAP's ingredients against PyTorch (scripts/reference/make_flap_fixtures.py, tiny GQA model): activation
// variances of the o_proj / down_proj inputs, the `fluctuation` scores, the standardized keys and the kept sets of
// a standardized global allocation; micro-batching leaves the statistics unchanged.
import Foundation
import Testing
import LlamaModel
@testable import Pruning

private enum FLAPFixture {
    static let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Resources/flap/flap.json")
    static let tinyModel = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("LlamaModelTests/Resources/tiny")

    static func load() throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: file)) as! [String: Any]
    }

    static func ids(_ f: [String: Any]) -> (tokens: [Int32], batch: Int, seqLen: Int) {
        let rows = f["ids"] as! [[Int]]
        return (rows.flatMap { $0.map(Int32.init) }, rows.count, rows[0].count)
    }

    static func calibration(_ f: [String: Any]) -> CalibrationSet {
        let (t, n, l) = ids(f)
        let samples = (0..<n).map { CalibrationSample(offset: $0 * l, tokens: Array(t[($0 * l)..<(($0 + 1) * l)])) }
        return CalibrationSet(samples: samples, provenance: CalibrationProvenance(
            file: "fixture", fileSHA256: "", seed: 0, samples: n, sampleLength: l, offsets: samples.map(\.offset),
            tokenCount: t.count))
    }
}

private func expectClose(_ ours: [Double], _ ref: [Double], _ what: String, rel: Double = 1e-4, abs floor: Double = 1e-9) {
    #expect(ours.count == ref.count, "\(what): \(ours.count) vs \(ref.count)")
    for (i, (x, y)) in zip(ours, ref).enumerated() {
        #expect(Swift.abs(x - y) <= rel * Swift.abs(y) + floor, "\(what)[\(i)]: \(x) vs \(y)")
    }
}

@Test func fluctuationScoresMatchFLAPInPyTorch() throws {
    let f = try FLAPFixture.load()
    let model = try ModelLoader.load(path: FLAPFixture.tinyModel.path, tokenizer: false).weights
    let (tokens, n, len) = FLAPFixture.ids(f)
    let stats = try LlamaRunner(weights: model).activationStatistics(tokens: tokens, batch: n, seqLen: len,
                                                                    layers: [0, 1, 2], microBatch: n)
    for layer in f["layers"] as! [[String: Any]] {
        let l = layer["layer"] as! Int
        let a = stats[l]!
        #expect(a.oInput.count == n * len)
        expectClose(a.oInput.variance, layer["o_input_variance"] as! [Double], "layer \(l) o input variance", rel: 1e-4, abs: 1e-8)
        expectClose(a.downInput.variance, layer["down_input_variance"] as! [Double], "layer \(l) down input variance", rel: 1e-4, abs: 1e-8)
        for (unit, key) in [(AttentionUnit.kvGroup, "attention_kv"), (.queryHead, "attention_qhead")] {
            let s = try Importance.scores(layer: l, weights: model.layers[l], gradient: nil, fisher: nil, config: model.config,
                                          criterion: .fluctuation, reduction: .sum, attentionUnit: unit, seed: 0,
                                          activations: a)
            expectClose(s.attention, layer[key] as! [Double], "layer \(l) \(key)", rel: 1e-3, abs: 1e-12)
            expectClose(s.mlp, layer["mlp"] as! [Double], "layer \(l) mlp", rel: 1e-3, abs: 1e-12)
            expectClose(s.attentionChannels!, layer["attention_channels"] as! [Double], "layer \(l) channels", rel: 1e-3, abs: 1e-14)
        }
    }
    // Micro-batches of one sample each accumulate the same moments.
    let one = try LlamaRunner(weights: model).activationStatistics(tokens: tokens, batch: n, seqLen: len,
                                                                  layers: [0, 1, 2], microBatch: 1)
    for l in 0..<3 {
        expectClose(one[l]!.oInput.variance, stats[l]!.oInput.variance, "micro-batched o variance", rel: 1e-5, abs: 1e-9)
        expectClose(one[l]!.downInput.variance, stats[l]!.downInput.variance, "micro-batched down variance", rel: 1e-5, abs: 1e-9)
    }
    // The criterion refuses to score without statistics.
    #expect(throws: ImportanceError.missingActivations(layer: 0, criterion: .fluctuation)) {
        try Importance.scores(layer: 0, weights: model.layers[0], gradient: nil, fisher: nil, config: model.config,
                              criterion: .fluctuation, reduction: .sum, attentionUnit: .kvGroup, seed: 0)
    }
}

@Test func standardizedGlobalAllocationMatchesFLAPRanking() throws {
    let f = try FLAPFixture.load()
    let g = f["standardized_global"] as! [String: Any]
    let loaded = try ModelLoader.load(path: FLAPFixture.tinyModel.path, tokenizer: false)
    var s = PruneSettings(ratio: 0, layerStart: 0, layerEnd: 3, criterion: .fluctuation, allocation: .global,
                          targetParams: g["keep_fraction"] as? Double)
    s.globalNormalization = .standardized
    // the keys the ranking uses
    var timings = PlanTimings()
    let scores = try Planner.layerScores(weights: loaded.weights, settings: s, calibration: FLAPFixture.calibration(f),
                                         microBatches: 1, timings: &timings)
    for (sc, layer) in zip(scores, f["layers"] as! [[String: Any]]) {
        let att = Allocator.moments(sc.attentionChannels!), mlp = Allocator.moments(sc.mlp)
        let block = Double(sc.attentionChannels!.count / sc.attention.count)
        expectClose(sc.attention.map { Allocator.standardize($0 / block, att) }, layer["key_kv"] as! [Double],
                    "layer \(sc.layer) attention keys", rel: 1e-3, abs: 1e-6)
        expectClose(sc.mlp.map { Allocator.standardize($0, mlp) }, layer["key_mlp"] as! [Double],
                    "layer \(sc.layer) MLP keys", rel: 1e-3, abs: 1e-6)
    }
    let (plan, _) = try Planner.plan(model: loaded, settings: s, calibration: FLAPFixture.calibration(f))
    #expect(plan.parametersBefore == g["parameters_total"] as! Int)
    #expect(plan.parametersAfter == g["parameters_after"] as! Int)
    for (lp, k) in zip(plan.layers, g["kept"] as! [[String: Any]]) {
        #expect(lp.keptKVHeads == k["kv"] as! [Int], "layer \(lp.layer)")
        #expect(lp.keptMLPChannels == k["mlp"] as! [Int], "layer \(lp.layer)")
    }
}

/// Standardizing undoes any per-layer scale: a layer whose scores are all 1000× larger loses the same share as
/// an identical layer, where the `parameters` normalization would spare it entirely.
@Test func standardizedRankingIgnoresPerLayerScale() throws {
    let c = PlanFixtures.config(heads: 4, kv: 4)
    let shape = (0..<48).map { Double(($0 * 7) % 48) + 1 }
    var s = PruneSettings(ratio: 0.3, layerStart: 1, layerEnd: 3, criterion: .l1, allocation: .global)
    s.globalNormalization = .standardized
    let scores = [AllocationScores(layer: 1, attention: [1, 2, 3, 4], mlp: shape),
                  AllocationScores(layer: 2, attention: [1000, 2000, 3000, 4000], mlp: shape.map { $0 * 1000 })]
    let r = try Allocator.allocate(config: c, settings: s, scores: scores)
    #expect(r.layers[0].keptMLPChannels.count == r.layers[1].keptMLPChannels.count)
    #expect(r.layers[0].keptMLPChannels.count < 48)
    s.globalNormalization = .parameters
    let p = try Allocator.allocate(config: c, settings: s, scores: scores)
    #expect(p.layers[1].keptMLPChannels.count == 48 && p.layers[1].keptKVHeads.count == 4)
}
