// LLM-Pruner's three strategies (hf_prune.py `--block_wise`, `--channel_wise`, `--layer_wise`; arXiv 2305.11627
// §4, "Impact of different pruning strategies"), as plan settings, plus the checks a strategy adds to
// `PruneSettings.validated`:
//   block   (default): attention units and MLP channels inside layers (Allocation.swift).
//   channel: one set of hidden channels kept by the embedding, every norm, every projection and the LM head
//            (ChannelPruning.swift).
//   layer:   whole blocks removed (DepthPruning.swift). The reference's `--layer_wise` only truncates to the first
//            `--layer` blocks (`model.model.layers[:args.layer]`); llmprune ranks blocks instead, by Taylor
//            importance or by ShortGPT's Block Influence (arXiv 2403.03853), and removes the least important.
import Foundation
import LlamaModel
import ModelExport

public enum PruneStrategy: String, Codable, CaseIterable, Sendable {
    case block, channel, layer
}

/// How depth pruning ranks blocks.
public enum BlockImportance: String, Codable, CaseIterable, Sendable {
    /// Σ over the block's linear weights (and biases) of the criterion's element salience, e.g. |W⊙g| for
    /// element1: LLM-Pruner's Taylor importance of a group taken over a whole block.
    case taylor
    /// ShortGPT's Block Influence, 1 − mean over calibration tokens of cos(x_in, x_out).
    case influence
}

extension PruneSettings {
    /// The strategy of these settings; plans written before strategies existed are block-wise.
    public var resolvedStrategy: PruneStrategy { strategy ?? .block }

    /// `validated(numLayers:)` plus what the strategy needs from the model's shape; every refusal names a setting.
    /// Checked on the model's header before any weights are loaded, and again by the planner.
    public func validated(config: LlamaConfig) throws -> PruneSettings {
        let s = try validated(numLayers: config.numLayers)
        switch s.resolvedStrategy {
        case .block:
            if let b = s.blockImportance {
                throw PruneError.setting(.blockImportance, reason: "\(b.rawValue) ranks whole blocks: it needs strategy layer")
            }
        case .layer:
            try s.refuseUnitSettings("depth pruning removes whole blocks")
            if s.criterion.needsActivations {
                throw PruneError.setting(.criterion, reason: "\(s.criterion.rawValue) scores heads and channels of o_proj/down_proj (strategy block only)")
            }
            if s.blockImportance == .influence && s.criterion != .element1 {
                throw PruneError.setting(.criterion, reason: "block importance influence uses no criterion (it compares hidden states)")
            }
            if s.targetParams == nil,
               DepthPruning.blocksToRemove(candidates: s.layerRange.count, ratio: s.ratio) >= config.numLayers {
                throw PruneError.setting(.ratio, reason: "\(s.ratio) removes all \(config.numLayers) layers")
            }
        case .channel:
            try s.refuseUnitSettings("channel-wise pruning keeps one hidden width for the whole model")
            if let b = s.blockImportance {
                throw PruneError.setting(.blockImportance, reason: "\(b.rawValue) ranks whole blocks: it needs strategy layer")
            }
            guard s.layerStart == 0, s.layerEnd == config.numLayers else {
                throw PruneError.setting(.layers, reason: "channel-wise pruning cuts the hidden size of every layer; it takes no layer range")
            }
            if s.criterion == .random || s.criterion.needsFisher || s.criterion.needsActivations {
                throw PruneError.setting(.criterion, reason: "\(s.criterion.rawValue) is not available for channel-wise pruning (element1, vector, l1, l2)")
            }
            // (a parameter target always keeps at least one channel: `ChannelPruning.width` searches 1...d)
            if s.targetParams == nil, ChannelPruning.keptWidth(hidden: config.hiddenSize, ratio: s.ratio) < 1 {
                throw PruneError.setting(.ratio, reason: "\(s.ratio) leaves no hidden channel of \(config.hiddenSize)")
            }
        }
        return s
    }

    /// The block-wise allocation's settings have no meaning for the other strategies: refused, not ignored.
    func refuseUnitSettings(_ why: String) throws {
        if allocation != .local { throw PruneError.setting(.allocation, reason: "\(why): no allocation across units") }
        if roundTo != nil { throw PruneError.setting(.roundTo, reason: "\(why): no MLP widths to round") }
        if attentionUnit != .kvGroup { throw PruneError.setting(.attentionUnit, reason: "\(why): no attention units") }
        if globalNormalization != nil { throw PruneError.setting(.globalNormalization, reason: "\(why): no allocation across units") }
        if reduction != .sum { throw PruneError.setting(.reduction, reason: "\(why): its scores sum the members (reduction sum only)") }
    }
}

extension PrunePlan {
    /// `config` after the strategy's cut (the block-wise layer plans are applied before, by `prunedConfig`).
    func strategyConfig(_ config: LlamaConfig) throws -> LlamaConfig {
        var c = config
        if let d = depth {
            try d.validate(numLayers: c.numLayers, source: sourcePath ?? "<plan>")
            c = d.config(c)
        }
        if let ch = channels { c.hiddenSize = ch.keptChannels.count }
        return c
    }

    /// The depth and channel parts of a decoded plan against the model it records.
    func validateStrategy(source: String) throws {
        if depth != nil && channels != nil {
            throw PruneError.invalidPlan(path: source, reason: "both depth and channels: a plan has one strategy")
        }
        try depth?.validate(numLayers: model.layers.count, source: source)
        try channels?.validate(hiddenSize: model.hiddenSize, source: source)
        if (depth != nil || channels != nil) && !layers.isEmpty {
            throw PruneError.invalidPlan(path: source, reason: "a depth or channel plan has no per-layer cuts")
        }
    }
}

extension Pruner {
    /// A depth or channel plan applied to the whole model; nil for a block-wise plan. Such a plan changes what
    /// every stage holds (the layer count or the hidden size), so it is cut in one process only.
    static func applyStrategy(plan: PrunePlan, to weights: LlamaWeights, layers range: Range<Int>) throws -> LlamaWeights? {
        guard plan.depth != nil || plan.channels != nil else { return nil }
        let c = weights.config, source = plan.sourcePath ?? "<plan>"
        try plan.validateStrategy(source: source)
        guard range == 0..<c.numLayers, weights.layers.allSatisfy({ $0.holdsWeights(config: c) }) else {
            throw PruneError.invalidSetting(flag: "--shard", reason: "a \(plan.depth != nil ? "depth" : "channel-wise") plan is applied to the whole model in one process (not per pipeline stage)")
        }
        var w = weights
        if let ch = plan.channels { w = ChannelPruning.cut(w, kept: ch.keptChannels) }
        if let d = plan.depth { w = DepthPruning.cut(w, plan: d) }
        let config = try plan.prunedConfig(c)
        try config.validate(source: source)
        precondition(w.config == config, "strategy cut and pruned config disagree")
        return w
    }
}

/// The importance pass of the channel and layer strategies (`Planner.plan` hands them over).
enum StrategyPlanner {
    static func plan(model: LoadedModel, settings: PruneSettings, calibration: CalibrationSet?) throws
        -> (PrunePlan, PlanTimings)
    {
        let config = model.config, s = settings
        var timings = PlanTimings()
        let strategy = s.resolvedStrategy
        let influence = strategy == .layer && s.blockImportance == .influence
        func needCalibration(_ what: String) throws -> CalibrationSet {
            guard let calibration else { throw PruneError.setting(.calibration, reason: "\(what) needs calibration data") }
            return calibration
        }
        // Gradients down to the lowest layer scored: all of them for channel-wise, the candidates for depth.
        var gradients: GradientResult? = nil
        if !influence && (s.criterion.needsGradient || s.criterion.needsFisher) {
            let calib = try needCalibration("criterion \(s.criterion.rawValue)")
            let t0 = Date()
            let range = strategy == .channel ? 0..<config.numLayers : s.layerRange
            gradients = try GradientPass(weights: model.weights).gradients(
                tokens: calib.batchTokens, batch: calib.samples.count, seqLen: calib.sampleLength, layers: range,
                fisher: s.criterion.needsFisher)
            timings.gradientSeconds = Date().timeIntervalSince(t0)
            timings.peakActivationBytes = gradients!.peakActivationBytes
            timings.loss = gradients!.loss
        }
        var t0 = Date()
        var depth: DepthPlan? = nil, channels: ChannelPlan? = nil
        switch strategy {
        case .layer:
            let candidates = Array(s.layerRange)
            let scores: [Double]
            if influence {
                let calib = try needCalibration("block importance influence")
                scores = try DepthPruning.influenceScores(layers: candidates, model: model.weights, tokens: calib.batchTokens,
                                                          batch: calib.samples.count, seqLen: calib.sampleLength)
            } else {
                scores = try DepthPruning.taylorScores(layers: candidates, model: model.weights, gradients: gradients,
                                                       criterion: s.criterion, seed: s.seed)
            }
            timings.scoringSeconds = Date().timeIntervalSince(t0)
            t0 = Date()
            let removed = try DepthPruning.select(scores: scores, candidates: candidates, config: config, settings: s)
            depth = DepthPlan(importance: s.blockImportance ?? .taylor, candidates: candidates, scores: scores,
                              removedLayers: removed)
        case .channel:
            let scores = try ChannelPruning.scores(model: model.weights, gradients: gradients, criterion: s.criterion)
            timings.scoringSeconds = Date().timeIntervalSince(t0)
            t0 = Date()
            channels = ChannelPlan(keptChannels: try ChannelPruning.select(scores: scores, config: config, settings: s),
                                   scores: scores)
        case .block:
            preconditionFailure("block-wise plans are made by Planner")
        }
        let identity = try ModelIdentity(path: model.path, format: model.format, config: config)
        var plan = PrunePlan(settings: s, resolvedRatio: s.ratio, model: identity, calibration: calibration?.provenance,
                             layers: [], parametersBefore: config.parameterCount, parametersAfter: 0)
        plan.depth = depth
        plan.channels = channels
        let after = try plan.prunedConfig(config)
        plan.parametersAfter = after.parameterCount
        // The share actually removed: of the candidate blocks, or of the hidden channels.
        plan.resolvedRatio = depth.map { Double($0.removedLayers.count) / Double($0.candidates.count) }
            ?? 1 - Double(after.hiddenSize) / Double(config.hiddenSize)
        timings.allocationSeconds = Date().timeIntervalSince(t0)
        return (plan, timings)
    }
}
