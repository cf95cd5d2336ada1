// The prune plan: what to remove from which layer, with everything needed to check it later — the settings,
// the identity of the model it was made for, where the calibration data came from, the unit scores, and the
// parameter counts. Written as pretty JSON with sorted keys; `Pruner.apply` executes it.
import Foundation
import LlamaModel
import Support

/// Version written into plans (bump with incompatible plan or algorithm changes).
public let llmpruneVersion = "0.1.0"


/// Global allocation: `parameters` divides a unit's score by the parameters it removes; `layer` also divides
/// by the mean of that ratio over the unit's layer and module, so each unit is ranked by its importance
/// relative to its neighbours and the global cut follows where scores are uneven, not where they are small.
/// `standardized` is FLAP's (arXiv 2312.11983 §3.2, `standarlization` in `prune_flap`, lib/prune.py of
/// github.com/CASIA-IVA-Lab/FLAP): each layer's attention channel scores and MLP channel scores are standardized
/// separately ((x − mean) / std over the layer's channels of that module), a head or group takes the mean of its
/// channels' standardized scores, and all units are ranked by that value alone (parameters only count toward
/// the target).
public enum GlobalNormalization: String, Codable, CaseIterable, Sendable {
    case parameters, layer, standardized
}

/// A span of layers `start..<end` (END exclusive), as `--attention-layers` / `--mlp-layers` give it.
public struct LayerSpan: Codable, Equatable, Sendable {
    public var start: Int
    public var end: Int
    public init(start: Int, end: Int) { self.start = start; self.end = end }
    public var range: Range<Int> { start..<max(start, end) }
}

/// How units are ranked: inside each layer at one ratio (the reference) or across all pruned layers.
public enum AllocationMode: String, Codable, CaseIterable, Sendable {
    case local, global
}

/// The user's choices, as given on the command line.
public struct PruneSettings: Codable, Equatable, Sendable {
    /// Fraction of attention units and MLP channels removed in each pruned layer (local mode; in global mode it
    /// sets the parameter target unless `targetParams` is given).
    public var ratio: Double
    /// Pruned layers are `layerStart..<layerEnd`.
    public var layerStart: Int
    public var layerEnd: Int
    public var criterion: Criterion
    public var reduction: GroupReduction
    public var attentionUnit: AttentionUnit
    public var allocation: AllocationMode
    /// Fraction of the model's parameters to keep, in (0, 1]; overrides `ratio` (see `Allocator`).
    public var targetParams: Double?
    /// Kept MLP widths of pruned layers are rounded to a multiple of this (8, 64 or 128).
    public var roundTo: Int?
    /// Global allocation only: how unit scores are made comparable (see `GlobalNormalization`).
    public var globalNormalization: GlobalNormalization?
    public var seed: UInt64
    /// Prune in this many rounds, re-scoring the partly pruned model each time (LLM-Pruner's `--iterative_steps`,
    /// hf_prune.py); nil or 1: one round.
    public var iterativeSteps: Int?
    /// Layers whose attention units / MLP channels may be removed (LLM-Pruner's block_attention_layer_start/end
    /// and block_mlp_layer_start/end); nil: all of `layerStart..<layerEnd`. Both lie inside that range.
    public var attentionLayers: LayerSpan?
    public var mlpLayers: LayerSpan?
    /// Local allocation: relative weights of the layers of `layerStart..<layerEnd`, in order; layer i is pruned at
    /// ratio·wᵢ/mean(w) (capped below 1), so the schedule shapes the cut and `ratio` (or `targetParams`) sizes it.
    /// nil: `ratio` in every layer.
    public var ratioSchedule: [Double]?
    /// block (nil: plans from before strategies existed), channel or layer (Strategy.swift).
    public var strategy: PruneStrategy?
    /// Depth pruning only: how blocks are ranked (nil: taylor).
    public var blockImportance: BlockImportance?

    public static let validRoundTo = [8, 64, 128]

    public init(ratio: Double, layerStart: Int, layerEnd: Int, criterion: Criterion, reduction: GroupReduction = .sum,
                attentionUnit: AttentionUnit = .kvGroup, allocation: AllocationMode = .local,
                targetParams: Double? = nil, roundTo: Int? = nil, seed: UInt64 = 42) {
        self.ratio = ratio
        self.layerStart = layerStart
        self.layerEnd = layerEnd
        self.criterion = criterion
        self.reduction = reduction
        self.attentionUnit = attentionUnit
        self.allocation = allocation
        self.targetParams = targetParams
        self.roundTo = roundTo
        self.seed = seed
    }

    /// The reference's README run: keep the first 4 and the last 2 layers, i.e. `4..<L−2` (LLM-Pruner's README
    /// prunes LLaMA-7B's 32 layers with `--block_attention_layer_start 4 --block_attention_layer_end 30`, the same
    /// for the MLP).
    /// Models with fewer than 7 layers get an empty range, which `validated` refuses: pass `--layers`.
    public static func defaultLayerRange(numLayers: Int) -> (start: Int, end: Int) { (4, numLayers - 2) }

    public var layerRange: Range<Int> { layerStart..<max(layerStart, layerEnd) }

    /// Whether allocation may remove attention units / MLP channels of `layer`.
    public func prunesAttention(_ layer: Int) -> Bool { (attentionLayers?.range ?? layerRange).contains(layer) }
    public func prunesMLP(_ layer: Int) -> Bool { (mlpLayers?.range ?? layerRange).contains(layer) }

    /// The local ratio of scored `layer` when the whole cut is sized by `r`: r·wᵢ/mean(w) with a schedule, capped
    /// below 1, else r.
    public func layerRatio(_ layer: Int, base r: Double) -> Double {
        guard let w = ratioSchedule, layerRange.contains(layer), layer - layerStart < w.count else { return r }
        let mean = w.reduce(0, +) / Double(w.count)
        return min(r * w[layer - layerStart] / mean, (1.0).nextDown)
    }

    /// The settings, checked against a model with `numLayers` layers: the one place they are validated. Every
    /// entry point (planner, allocator, cluster job) calls this; a failure names the setting at fault
    /// (`PruneError.setting`), which the command line maps to its flag.
    public func validated(numLayers: Int) throws -> PruneSettings {
        guard ratio >= 0, ratio < 1, ratio.isFinite else {
            throw PruneError.setting(.ratio, reason: "\(ratio) is outside [0, 1): it is the fraction of heads and MLP channels removed per pruned layer")
        }
        for (span, setting) in [(attentionLayers, PruneSetting.attentionLayers), (mlpLayers, .mlpLayers)] {
            guard let sp = span else { continue }
            guard sp.start >= 0, sp.start < sp.end, sp.end <= numLayers else {
                throw PruneError.setting(setting, reason: "\(sp.start):\(sp.end) is an empty or inverted layer range (need 0 ≤ start < end ≤ \(numLayers); end is exclusive)")
            }
        }
        guard layerStart >= 0, layerStart < layerEnd, layerEnd <= numLayers else {
            throw PruneError.setting(.layers, reason: "\(layerStart):\(layerEnd) is an empty or inverted layer range (need 0 ≤ start < end ≤ \(numLayers); end is exclusive)")
        }
        if let t = targetParams, !(t > 0 && t <= 1) {
            throw PruneError.setting(.targetParams, reason: "\(t) is not a fraction of parameters to keep in (0, 1]")
        }
        if let r = roundTo, !Self.validRoundTo.contains(r) {
            throw PruneError.setting(.roundTo, reason: "\(r) is not one of 8, 64, 128")
        }
        if let k = iterativeSteps, k < 1 {
            throw PruneError.setting(.iterativeSteps, reason: "\(k) is not a number of rounds (need at least 1)")
        }
        for (span, setting) in [(attentionLayers, PruneSetting.attentionLayers), (mlpLayers, .mlpLayers)] {
            guard let sp = span else { continue }
            guard sp.start >= layerStart, sp.start < sp.end, sp.end <= layerEnd else {
                throw PruneError.setting(setting, reason: "\(sp.start):\(sp.end) is empty or outside the scored layers \(layerStart):\(layerEnd) (END exclusive)")
            }
        }
        if let sch = ratioSchedule {
            guard sch.count == layerRange.count else {
                throw PruneError.setting(.ratioSchedule, reason: "\(sch.count) layer weights for \(layerRange.count) scored layers \(layerStart):\(layerEnd)")
            }
            guard sch.allSatisfy({ $0 >= 0 && $0.isFinite }), sch.contains(where: { $0 > 0 }) else {
                throw PruneError.setting(.ratioSchedule, reason: "layer weights must be finite, non-negative and not all 0")
            }
            guard allocation == .local else {
                throw PruneError.setting(.ratioSchedule, reason: "a per-layer schedule needs local allocation")
            }
        }
        return self
    }
}

/// Which model a plan belongs to. Hashing a multi-gigabyte model is too slow, so the identity is the file size
/// and modification time plus a fingerprint: SHA-256 of the config JSON and every tensor's name and shape.
public struct ModelIdentity: Codable, Equatable, Sendable {
    public var path: String
    public var format: String
    /// Bytes of the model file (for a directory: its config.json and weight files).
    public var fileSize: Int
    /// Latest modification time of those files, seconds since 1970.
    public var modified: Double
    public var configFingerprint: String
    public var vocabSize: Int
    public var hiddenSize: Int
    public var headDim: Int
    public var layers: [LayerShape]

    public init(path: String, format: String, config: LlamaConfig) throws {
        self.path = path
        self.format = format
        (fileSize, modified) = try Self.sizeAndTime(path: path)
        configFingerprint = try Self.fingerprint(config)
        vocabSize = config.vocabSize
        hiddenSize = config.hiddenSize
        headDim = config.headDim
        layers = config.layers
    }

    /// SHA-256 over `config.fingerprintJSON()` and the Hugging Face tensor names and shapes the config implies.
    public static func fingerprint(_ c: LlamaConfig) throws -> String {
        var text = String(decoding: try c.fingerprintJSON(), as: UTF8.self)
        let d = c.hiddenSize, hd = c.headDim
        text += "\nmodel.embed_tokens.weight \(c.vocabSize)x\(d)"
        for (i, l) in c.layers.enumerated() {
            let q = l.numHeads * hd, kv = l.numKVHeads * hd, m = l.intermediateSize
            text += "\nlayer \(i): q \(q)x\(d) k \(kv)x\(d) v \(kv)x\(d) o \(d)x\(q) gate \(m)x\(d) up \(m)x\(d) down \(d)x\(m)"
        }
        text += c.tieWordEmbeddings ? "\ntied" : "\nlm_head.weight \(c.vocabSize)x\(d)"
        return SHA256.hex(Data(text.utf8))
    }

    static func sizeAndTime(path: String) throws -> (Int, Double) {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDir) else {
            throw PruneError.io(path: path, reason: "model not found")
        }
        var files = [path]
        if isDir.boolValue {
            let names = (try? fm.contentsOfDirectory(atPath: path)) ?? []
            files = names.filter { $0 == "config.json" || $0.hasSuffix(".safetensors") || $0.hasSuffix(".gguf") }
                .sorted().map { URL(fileURLWithPath: path).appendingPathComponent($0).path }
        }
        var size = 0, time = 0.0
        for f in files {
            let a = try fm.attributesOfItem(atPath: f)
            size += (a[.size] as? NSNumber)?.intValue ?? 0
            time = max(time, (a[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0)
        }
        return (size, time)
    }
}

/// What happens to one pruned layer. Indices are the ORIGINAL ones, sorted ascending.
public struct LayerPlan: Codable, Equatable, Sendable {
    public var layer: Int
    public var original: LayerShape
    public var keptKVHeads: [Int]
    public var keptQueryHeads: [Int]
    public var keptMLPChannels: [Int]
    /// Scores per attention unit (per KV group or per query head, as `PruneSettings.attentionUnit`).
    public var attentionScores: [Double]
    /// Scores per MLP channel.
    public var mlpScores: [Double]

    public init(layer: Int, original: LayerShape, keptKVHeads: [Int], keptQueryHeads: [Int], keptMLPChannels: [Int],
                attentionScores: [Double], mlpScores: [Double]) {
        self.layer = layer
        self.original = original
        self.keptKVHeads = keptKVHeads
        self.keptQueryHeads = keptQueryHeads
        self.keptMLPChannels = keptMLPChannels
        self.attentionScores = attentionScores
        self.mlpScores = mlpScores
    }

    public var pruned: LayerShape {
        LayerShape(numHeads: keptQueryHeads.count, numKVHeads: keptKVHeads.count, intermediateSize: keptMLPChannels.count)
    }

    /// Checks that the kept sets describe a valid layer: sorted unique in-range indices, every kept query head
    /// in a kept KV group, the same number of query heads in each kept group, at least one unit of each kind.
    func validate(source: String) throws {
        func fail(_ r: String) -> PruneError { .invalidPlan(path: source, reason: "layer \(layer): \(r)") }
        func sortedUnique(_ a: [Int], below n: Int) -> Bool {
            zip(a, a.dropFirst()).allSatisfy { $0 < $1 } && (a.first ?? 0) >= 0 && (a.last ?? 0) < n
        }
        let o = original
        guard o.numKVHeads > 0, o.numHeads % o.numKVHeads == 0 else { throw fail("original shape \(o) is not a GQA shape") }
        guard !keptKVHeads.isEmpty, !keptQueryHeads.isEmpty, !keptMLPChannels.isEmpty else {
            throw fail("keeps no KV head, query head or MLP channel")
        }
        guard sortedUnique(keptKVHeads, below: o.numKVHeads), sortedUnique(keptQueryHeads, below: o.numHeads),
              sortedUnique(keptMLPChannels, below: o.intermediateSize) else {
            throw fail("kept indices must be ascending, unique and inside the original widths \(o.numHeads)/\(o.numKVHeads)/\(o.intermediateSize)")
        }
        let rep = o.numHeads / o.numKVHeads
        let perGroup = Dictionary(grouping: keptQueryHeads, by: { $0 / rep }).mapValues(\.count)
        guard Set(perGroup.keys) == Set(keptKVHeads), Set(perGroup.values).count == 1 else {
            throw fail("kept query heads must fill the kept KV groups evenly (GQA)")
        }
    }
}

public struct PrunePlan: Codable, Equatable, Sendable {
    public var version: String
    /// ISO 8601, UTC.
    public var created: String
    public var settings: PruneSettings
    /// The ratio the local allocation used: `settings.ratio`, or the one solved for `targetParams`.
    public var resolvedRatio: Double
    public var model: ModelIdentity
    public var calibration: CalibrationProvenance?
    /// Pruned layers only, ascending; every other layer is copied unchanged.
    public var layers: [LayerPlan]
    public var parametersBefore: Int
    public var parametersAfter: Int
    /// The reconstruction after the cut, when one was run (`prune --reconstruct`): settings, data, per-layer fit.
    public var reconstruction: ReconstructionReport? = nil
    /// Strategy layer: the blocks removed (DepthPruning.swift); strategy channel: the hidden channels kept
    /// (ChannelPruning.swift). nil otherwise, and in plans written before strategies existed.
    public var depth: DepthPlan? = nil
    public var channels: ChannelPlan? = nil

    /// The file this plan was read from (not stored, not compared).
    public var sourcePath: String? = nil

    public static func == (a: PrunePlan, b: PrunePlan) -> Bool {
        a.version == b.version && a.created == b.created && a.settings == b.settings && a.resolvedRatio == b.resolvedRatio
            && a.model == b.model && a.calibration == b.calibration && a.layers == b.layers
            && a.parametersBefore == b.parametersBefore && a.parametersAfter == b.parametersAfter
            && a.reconstruction == b.reconstruction
            && a.depth == b.depth && a.channels == b.channels
    }

    enum CodingKeys: String, CodingKey {
        case version, created, settings, resolvedRatio, model, calibration, layers, parametersBefore, parametersAfter
        case reconstruction
        case depth, channels
    }

    public init(version: String = llmpruneVersion, created: Date = Date(), settings: PruneSettings, resolvedRatio: Double,
                model: ModelIdentity, calibration: CalibrationProvenance?, layers: [LayerPlan], parametersBefore: Int,
                parametersAfter: Int) {
        self.version = version
        self.created = ISO8601DateFormatter().string(from: created)
        self.settings = settings
        self.resolvedRatio = resolvedRatio
        self.model = model
        self.calibration = calibration
        self.layers = layers
        self.parametersBefore = parametersBefore
        self.parametersAfter = parametersAfter
    }

    /// Runs the allocation on `scores` (one entry per layer of `settings.layerRange`) and records the result.
    public static func make(settings: PruneSettings, config: LlamaConfig, model: ModelIdentity,
                            calibration: CalibrationProvenance?, scores: [AllocationScores],
                            created: Date = Date()) throws -> PrunePlan {
        let result = try Allocator.allocate(config: config, settings: settings, scores: scores)
        var plan = PrunePlan(created: created, settings: settings, resolvedRatio: result.ratio, model: model,
                             calibration: calibration, layers: result.layers, parametersBefore: config.parameterCount,
                             parametersAfter: 0)
        plan.parametersAfter = try plan.prunedConfig(config).parameterCount
        return plan
    }

    /// The config of the model after this plan.
    public func prunedConfig(_ config: LlamaConfig) throws -> LlamaConfig {
        var c = config
        for l in layers {
            guard l.layer >= 0, l.layer < c.numLayers else {
                throw PruneError.invalidPlan(path: sourcePath ?? "<plan>", reason: "layer \(l.layer) is outside the model's \(c.numLayers) layers")
            }
            c.layers[l.layer] = l.pruned
        }
        return try strategyConfig(c)
    }

    // MARK: - file

    public func encoded() throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        for l in layers where !(l.attentionScores + l.mlpScores).allSatisfy(\.isFinite) {
            throw PruneError.invalidScores("layer \(l.layer) has a non-finite score")
        }
        if !((depth?.scores ?? []) + (channels?.scores ?? [])).allSatisfy(\.isFinite) {
            throw PruneError.invalidScores("a block or hidden-channel score is not finite")
        }
        return try enc.encode(self)
    }

    /// Writes the plan atomically (temporary sibling, then rename).
    public func write(to url: URL) throws {
        let data = try encoded()
        do { try AtomicFile.write(data, to: url) } catch let e as SystemError { throw e } catch {
            throw PruneError.io(path: url.path, reason: "cannot write plan: \(error)")
        }
    }

    public static func read(from url: URL) throws -> PrunePlan {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw PruneError.invalidPlan(path: url.path, reason: "cannot read the file")
        }
        return try decode(data, source: url.path)
    }

    /// A plan from its JSON (`encoded()`); `source` names it in errors (a path, or e.g. "plan from rank 0").
    public static func decode(_ data: Data, source: String) throws -> PrunePlan {
        var plan: PrunePlan
        do { plan = try JSONDecoder().decode(PrunePlan.self, from: data) } catch {
            throw PruneError.invalidPlan(path: source, reason: "not a prune plan (\(Self.describe(error)))")
        }
        plan.sourcePath = source
        for l in plan.layers { try l.validate(source: source) }
        try plan.validateStrategy(source: source)
        return plan
    }

    static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let k, _): return "missing key \"\(k.stringValue)\""
        case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c), DecodingError.dataCorrupted(let c):
            let path = c.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? c.debugDescription : "at \(path): \(c.debugDescription)"
        default: return "\(error)"
        }
    }

    // MARK: - identity check

    /// Refuses a plan made for another model: different architecture (config fingerprint or widths) or a model
    /// file of a different size. A different path or modification time alone is allowed (the model may have been
    /// copied) and returned as warnings.
    @discardableResult
    public func check(against config: LlamaConfig, modelPath: String) throws -> [String] {
        let name = sourcePath ?? "<plan>"
        func refuse(_ r: String) -> PruneError { .planForAnotherModel(plan: name, reason: r) }
        let m = model
        if config.vocabSize != m.vocabSize { throw refuse("vocab size \(config.vocabSize), plan has \(m.vocabSize)") }
        if config.hiddenSize != m.hiddenSize { throw refuse("hidden size \(config.hiddenSize), plan has \(m.hiddenSize)") }
        if config.headDim != m.headDim { throw refuse("head_dim \(config.headDim), plan has \(m.headDim)") }
        if config.numLayers != m.layers.count { throw refuse("\(config.numLayers) layers, plan has \(m.layers.count)") }
        for (i, (a, b)) in zip(config.layers, m.layers).enumerated() where a != b {
            throw refuse("layer \(i) has \(a.numHeads)/\(a.numKVHeads) heads and \(a.intermediateSize) MLP channels, "
                         + "plan has \(b.numHeads)/\(b.numKVHeads) and \(b.intermediateSize)")
        }
        if try ModelIdentity.fingerprint(config) != m.configFingerprint {
            throw refuse("config fingerprint differs (rope, norm epsilon, tied embeddings or token ids)")
        }
        let (size, time) = try ModelIdentity.sizeAndTime(path: modelPath)
        if size != m.fileSize { throw refuse("\(modelPath) has \(size) bytes, plan's model \(m.path) had \(m.fileSize)") }
        var warnings: [String] = []
        if modelPath != m.path { warnings.append("\(name): plan was made for \(m.path), applying to \(modelPath) (same size and architecture)") }
        if abs(time - m.modified) > 1e-3 { warnings.append("\(name): \(modelPath) was modified after the plan was made") }
        for l in layers {
            guard l.layer >= 0, l.layer < config.numLayers, l.original == config.layers[l.layer] else {
                throw PruneError.invalidPlan(path: name, reason: "layer \(l.layer)'s original shape does not match the model")
            }
        }
        return warnings
    }
}
