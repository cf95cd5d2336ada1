// Depth and channel-wise pruning against PyTorch (scripts/reference/make_strategy_fixtures.py on the tiny GQA
// model): block scores (Taylor, ShortGPT Block Influence), hidden-channel scores, the blocks/channels chosen, and
// the logits of the physically cut model; plans round-trip and re-apply; nonsense settings are refused by name.
import Foundation
import Testing
import LlamaModel
@testable import Pruning

private enum StrategyFixtures {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Resources/strategy")
    static let tiny = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("LlamaModelTests/Resources/tiny")

    static func index() throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("index.json"))) as! [String: Any]
    }

    static func logits(_ name: String) throws -> [Float] {
        let data = try Data(contentsOf: dir.appendingPathComponent("logits_\(name).bin"))
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    /// The fixture's ids as a calibration set (one sample per row).
    static func calibration(_ index: [String: Any]) -> CalibrationSet {
        let rows = (index["ids"] as! [[Int]]).map { $0.map(Int32.init) }
        let samples = rows.enumerated().map { CalibrationSample(offset: $0.offset * rows[0].count, tokens: $0.element) }
        return CalibrationSet(samples: samples, provenance: CalibrationProvenance(
            file: "make_strategy_fixtures.py ids", fileSHA256: "", seed: 0, samples: rows.count,
            sampleLength: rows[0].count, offsets: samples.map(\.offset), tokenCount: rows.count * rows[0].count))
    }

    static func expectClose(_ ours: [Double], _ ref: [Double], rel: Double, _ what: String) {
        #expect(ours.count == ref.count, "\(what): \(ours.count) vs \(ref.count)")
        for (i, (x, y)) in zip(ours, ref).enumerated() {
            #expect(abs(x - y) <= rel * max(abs(y), 1e-30), "\(what)[\(i)]: \(x) vs \(y)")
        }
    }
}

@Suite struct StrategyTests {
    func plan(_ s: PruneSettings) throws -> (PrunePlan, LoadedModel, [String: Any]) {
        let index = try StrategyFixtures.index()
        let model = try ModelLoader.load(path: StrategyFixtures.tiny.path, tokenizer: false)
        let (plan, _) = try Planner.plan(model: model, settings: s, calibration: StrategyFixtures.calibration(index))
        return (plan, model, index)
    }

    static func depthSettings(_ importance: BlockImportance) -> PruneSettings {
        var s = PruneSettings(ratio: 0.25, layerStart: 0, layerEnd: 3, criterion: .element1)   // 3 − Int(3·0.75) = 1 block
        s.strategy = .layer
        s.blockImportance = importance
        return s
    }

    static var channelSettings: PruneSettings {
        var s = PruneSettings(ratio: 0.25, layerStart: 0, layerEnd: 3, criterion: .element1)
        s.strategy = .channel
        return s
    }

    /// Scores, choice and cut logits of one strategy against the fixture; the plan, re-read from JSON, re-applies.
    func check(_ s: PruneSettings, scores key: String, removedKey: String?, logits: String) throws {
        let (plan, model, index) = try plan(s)
        let ref = index["scores"] as! [String: [Double]]
        if let d = plan.depth {
            StrategyFixtures.expectClose(d.scores, ref[key]!, rel: 1e-4, key)
            #expect(d.removedLayers == (index["depth"] as! [String: Any])[removedKey!] as! [Int])
            #expect(plan.channels == nil && plan.layers.isEmpty)
        } else {
            let ch = try #require(plan.channels)
            StrategyFixtures.expectClose(ch.scores, ref[key]!, rel: 1e-4, key)
            #expect(ch.keptChannels == (index["channel"] as! [String: Any])["kept"] as! [Int])
        }
        let dir = try PlanTempDir()
        let url = dir.url.appendingPathComponent("plan.json")
        try plan.write(to: url)
        let reread = try PrunePlan.read(from: url)
        #expect(reread == plan)
        try reread.check(against: model.config, modelPath: model.path)
        let pruned = try Pruner.apply(plan: reread, to: model.weights)
        #expect(pruned.config == (try plan.prunedConfig(model.config)))
        #expect(pruned.config.parameterCount == plan.parametersAfter)
        #expect(pruned.huggingFaceTensors().reduce(0) { $0 + $1.values.count } == plan.parametersAfter)
        let cal = StrategyFixtures.calibration(index)
        let got = try LlamaRunner(weights: pruned).logits(tokens: cal.batchTokens, batch: cal.samples.count,
                                                          seqLen: cal.sampleLength)
        let want = try StrategyFixtures.logits(logits)
        #expect(got.count == want.count)
        let diff = zip(got, want).map { abs($0 - $1) }.max()!
        #expect(diff <= 1e-4, "\(logits): max |Δlogit| = \(diff)")
        print("strategy golden \(logits): max |Δlogit| \(diff)")
    }

    @Test func depthTaylorMatchesPyTorch() throws {
        try check(Self.depthSettings(.taylor), scores: "taylor", removedKey: "removed_taylor", logits: "depth_taylor")
    }

    @Test func depthInfluenceMatchesPyTorch() throws {
        try check(Self.depthSettings(.influence), scores: "influence", removedKey: "removed_influence",
                  logits: "depth_influence")
    }

    @Test func channelWiseMatchesPyTorch() throws {
        try check(Self.channelSettings, scores: "channel", removedKey: nil, logits: "channel")
    }

    @Test func gradientLossMatchesFixture() throws {
        let index = try StrategyFixtures.index()
        let model = try ModelLoader.load(path: StrategyFixtures.tiny.path, tokenizer: false)
        let cal = StrategyFixtures.calibration(index)
        let g = try GradientPass(weights: model.weights).gradients(tokens: cal.batchTokens, batch: cal.samples.count,
                                                                   seqLen: cal.sampleLength, layers: 0..<3, fisher: false)
        #expect(abs(g.loss - (index["loss"] as! Double)) <= 1e-4)
    }

    /// The parameter target picks the block count (or width) whose count is closest.
    @Test func parameterTargetPicksClosestCount() throws {
        let c = try ModelLoader.config(path: StrategyFixtures.tiny.path)
        let total = c.parameterCount, layer = c.layerParameterCount(c.layers[0])
        var s = Self.depthSettings(.taylor)
        s.targetParams = Double(total - 2 * layer + layer / 3) / Double(total)       // nearer 2 blocks than 1
        let removed = try DepthPruning.select(scores: [3, 1, 2], candidates: [0, 1, 2], config: c, settings: s)
        #expect(removed == [1, 2])
        var cs = Self.channelSettings
        cs.targetParams = 0.5
        let w = ChannelPruning.width(for: 0.5, config: c)
        var half = c
        for cand in [w - 1, w, w + 1] {
            half.hiddenSize = cand
            let miss = abs(half.parameterCount - total / 2)
            half.hiddenSize = w
            #expect(abs(half.parameterCount - total / 2) <= miss)
        }
        #expect(try ChannelPruning.select(scores: (0..<64).map(Double.init), config: c, settings: cs) == Array((64 - w)..<64))
    }

    /// Plans without strategy fields (all plans before this change) still decode as block-wise.
    @Test func blockPlansCarryNoStrategyFields() throws {
        let dir = try PlanTempDir()
        let c = PlanFixtures.config(tied: true)
        let plan = try PlanFixtures.plan(c, PruneSettings(ratio: 0.5, layerStart: 1, layerEnd: 5, criterion: .l1), dir: dir, seed: 3)
        let json = try JSONSerialization.jsonObject(with: try plan.encoded()) as! [String: Any]
        #expect(json["depth"] == nil && json["channels"] == nil)
        #expect((json["settings"] as! [String: Any])["strategy"] == nil)
        let back = try PrunePlan.decode(try plan.encoded(), source: "test")
        #expect(back.settings.resolvedStrategy == .block && back == plan)
    }

    @Test func nonsenseSettingsAreRefusedByName() throws {
        let c = try ModelLoader.config(path: StrategyFixtures.tiny.path)
        func refused(_ s: PruneSettings, _ setting: PruneSetting, sourceLocation: SourceLocation = #_sourceLocation) {
            do {
                _ = try s.validated(config: c)
                Issue.record("accepted", sourceLocation: sourceLocation)
            } catch PruneError.setting(let got, _) {
                #expect(got == setting, sourceLocation: sourceLocation)
            } catch { Issue.record("\(error)", sourceLocation: sourceLocation) }
        }
        var every = Self.depthSettings(.taylor)
        every.ratio = 0.9                                   // 3 − Int(0.3) = 3: every layer
        refused(every, .ratio)
        var nothing = Self.channelSettings
        nothing.ratio = 0.99                                // Int(64 · 0.01) = 0 channels
        refused(nothing, .ratio)
        var ranged = Self.channelSettings
        ranged.layerEnd = 2
        refused(ranged, .layers)
        var blockWithImportance = PruneSettings(ratio: 0.25, layerStart: 0, layerEnd: 3, criterion: .element1)
        blockWithImportance.blockImportance = .influence
        refused(blockWithImportance, .blockImportance)
        var unitFlag = Self.channelSettings
        unitFlag.attentionUnit = .queryHead
        refused(unitFlag, .attentionUnit)
        // a target that only removing every block comes near
        let total = c.parameterCount
        var tiny = Self.depthSettings(.taylor)
        tiny.targetParams = Double(total - 3 * c.layerParameterCount(c.layers[0]) + 10) / Double(total)
        #expect(throws: PruneError.self) {
            _ = try DepthPruning.select(scores: [1, 2, 3], candidates: [0, 1, 2], config: c, settings: tiny)
        }
    }
}
