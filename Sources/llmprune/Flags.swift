// Every flag a command takes, defined once: name, default, help text and parser, in groups that the commands
// compose (pruning, calibration, job, session, evaluation, common). The help pages print these tables, and
// `Arguments(_:accepting:)` refuses anything a command's tables do not list, so what a command accepts, what its
// help says and what a job records cannot drift apart.
import Cluster
import ClusterPrune
import ClusterTune
import Eval
import Formats
import Foundation
import LlamaModel
import LoRA
import Pruning
import Support
import TensorCore
import Tokenizer

/// A titled list of flags, as a help page prints it.
struct FlagGroup {
    let title: String
    let flags: [FlagInfo]

    /// `  --name VALUE   help`, the value being the default when there is one.
    var help: String {
        ([title + ":"] + flags.map(Self.line)).joined(separator: "\n")
    }

    static func line(_ f: FlagInfo) -> String {
        var lhs = "--" + f.name
        if let v = f.defaultText ?? f.metavar { lhs += " " + v }
        let pad = 31
        let lines = f.help.split(separator: "\n", omittingEmptySubsequences: false)
        var out = "  " + lhs + String(repeating: " ", count: max(1, pad - lhs.count)) + lines[0]
        for l in lines.dropFirst() { out += "\n" + String(repeating: " ", count: pad + 2) + l }
        return out
    }
}

// MARK: - common

enum CommonFlags {
    static let model = Flag<String>("model", "PATH", path: true, help: "a .gguf file or a Hugging Face model directory",
                                    parse: Parse.text)
    static let threads = Flag<Int>("threads", "T", runtime: true, help: "BLAS and oneDNN threads (default: all cores)",
                                   parse: Parse.int(min: 1))
    static let json = Switch("json", runtime: true, help: "print the report as JSON on stdout")
    static let quiet = Switch("quiet", runtime: true, help: "no progress on stderr")
    static let force = Switch("force", help: "replace existing output")
}

// MARK: - output

/// The dtype of a written model (`prune`, `apply`, `cluster prune`, `merge`; ModelExport/OutputDType.swift).
enum OutputFlags {
    static let dtype = Flag<TensorDType>("dtype", "DTYPE",
        help: "f32|bf16|f16: the weights written, norms and biases too (default: the input's\n"
            + "float dtype; bf16 for a GGUF); fp32 values are rounded to nearest even",
        parse: Parse.choice(TensorDType.self))
}

// MARK: - pruning

/// The prune settings (`PruneSettings`); their ranges are checked by `PruneSettings.validated`, whose errors name the
/// setting, mapped back to these flags by `flagName(for:)`.
enum PruningFlags {
    static let ratio = Flag<Double>("ratio", "R", default: "0.25",
        help: "fraction of each scored layer's attention units and MLP channels to remove\n"
            + "(--strategy channel: of the hidden channels; layer: of the candidate blocks)", parse: Parse.double())
    static let criterion = Flag<Criterion>("criterion", "C", default: Criterion.element1.rawValue,
        help: Criterion.allCases.map(\.rawValue).joined(separator: "|") + " (LLM-Pruner's)",
        parse: Parse.choice(Criterion.self))
    static let reduction = Flag<GroupReduction>("reduction", "R", default: GroupReduction.sum.rawValue,
        help: GroupReduction.allCases.map(\.rawValue).joined(separator: "|") + ": how a group's element scores combine",
        parse: Parse.choice(GroupReduction.self))
    static let attentionUnit = Flag<AttentionUnit>("attention-unit", "U", default: AttentionUnit.kvGroup.rawValue,
        help: "kv-group|query-head: the attention unit scored and removed", parse: Parse.choice(AttentionUnit.self))
    static let allocation = Flag<AllocationMode>("allocation", "A", default: AllocationMode.local.rawValue,
        help: "local (same ratio per layer) | global (one threshold over all layers)",
        parse: Parse.choice(AllocationMode.self))
    static let globalNormalization = Flag<GlobalNormalization>("global-normalization", "P",
        help: GlobalNormalization.allCases.map(\.rawValue).joined(separator: "|")
            + ": score normalisation for global allocation (default\nparameters; standardized = FLAP's per-layer z-scores)",
        parse: Parse.choice(GlobalNormalization.self))
    static let targetParams = Flag<Double>("target-params", "F",
        help: "keep this fraction of the parameters (instead of --ratio)",
        parse: Parse.double())
    static let roundTo = Flag<Int>("round-to", "N", help: "keep MLP widths a multiple of N (8, 64 or 128)",
                                   parse: Parse.int())
    static let layers = Flag<(Int, Int)>("layers", "START:END",
        help: "scored layers, END exclusive (default 4:L-2, as the reference; with --strategy\n"
            + "layer the candidate blocks, default 0:L)", parse: { try span($0) })
    static let attentionLayers = Flag<(Int, Int)>("attention-layers", "START:END",
        help: "layers whose attention may be pruned (default --layers; LLM-Pruner's\nblock_attention_layer_start/end); the scored layers widen to cover it", parse: { try span($0) })
    static let mlpLayers = Flag<(Int, Int)>("mlp-layers", "START:END",
        help: "layers whose MLP may be pruned (default --layers; block_mlp_layer_start/end)", parse: { try span($0) })
    static let iterativeSteps = Flag<Int>("iterative-steps", "K", default: "1",
        help: "prune in K rounds, re-scoring the partly pruned model each time (LLM-Pruner's)",
        parse: Parse.int(min: 1))
    static let ratioSchedule = Flag<RatioSchedule>("ratio-schedule", "W",
        help: "local allocation: per-layer weights of the cut, W1,W2,… (one per scored layer) or\n"
            + "linear:FROM:TO; layer i is cut at ratio·Wi/mean(W)", parse: { try RatioSchedule.parse($0) })

    static let strategy = Flag<PruneStrategy>("strategy", "S", default: PruneStrategy.block.rawValue,
        help: "block|channel|layer (LLM-Pruner's block_wise, channel_wise, layer_wise): heads and\n"
            + "MLP channels per layer | hidden channels of the whole model | whole blocks",
        parse: Parse.choice(PruneStrategy.self))
    static let blockImportance = Flag<BlockImportance>("block-importance", "I",
        help: "with --strategy layer: taylor (criterion salience summed over a block, default) |\n"
            + "influence (ShortGPT: 1 - mean cos(block input, block output))",
        parse: Parse.choice(BlockImportance.self))

    static let group = FlagGroup(title: "pruning flags", flags: [strategy.info, ratio.info, criterion.info, reduction.info,
        attentionUnit.info, allocation.info, globalNormalization.info, targetParams.info, roundTo.info, layers.info,
        attentionLayers.info, mlpLayers.info, iterativeSteps.info, ratioSchedule.info, blockImportance.info])

    static func span(_ s: String) throws -> (Int, Int) {
        let parts = s.split(separator: ":", omittingEmptySubsequences: false).map { Int($0) }
        guard parts.count == 2, let lo = parts[0], let hi = parts[1] else { throw FlagValueError("\"\(s)\" is not START:END") }
        return (lo, hi)
    }

    /// `--ratio-schedule`: explicit per-layer weights, or a linear ramp resolved once the scored layers are known.
    enum RatioSchedule {
        case weights([Double]), linear(Double, Double)

        static func parse(_ s: String) throws -> RatioSchedule {
            let bad = FlagValueError("\"\(s)\" is not W1,W2,… or linear:FROM:TO (non-negative numbers)")
            if s.hasPrefix("linear:") {
                let p = s.dropFirst(7).split(separator: ":", omittingEmptySubsequences: false).map { Double($0) }
                guard p.count == 2, let a = p[0], let b = p[1], a >= 0, b >= 0, a.isFinite, b.isFinite, a + b > 0 else { throw bad }
                return .linear(a, b)
            }
            let w = s.split(separator: ",", omittingEmptySubsequences: false).map { Double($0) }
            guard !w.isEmpty, w.allSatisfy({ $0 != nil && $0! >= 0 && $0!.isFinite }) else { throw bad }
            return .weights(w.map { $0! })
        }

        /// The weights of `n` layers (a ramp from FROM at the first scored layer to TO at the last).
        func resolved(layers n: Int) -> [Double] {
            switch self {
            case .weights(let w): return w
            case .linear(let a, let b): return (0..<n).map { n == 1 ? a : a + (b - a) * Double($0) / Double(n - 1) }
            }
        }
    }

    /// The settings from the flags (with `seed` from the calibration flags), validated against the model.
    static func settings(_ a: inout Arguments, numLayers: Int, seed: UInt64) throws -> PruneSettings {
        let strategy = try a.value(strategy)
        // Depth candidates and channel-wise cuts cover every layer unless told otherwise.
        var (start, end) = try a.optional(layers)
            ?? (strategy == .block ? PruneSettings.defaultLayerRange(numLayers: numLayers) : (0, numLayers))
        let att = try a.optional(attentionLayers).map { LayerSpan(start: $0.0, end: $0.1) }
        let mlp = try a.optional(mlpLayers).map { LayerSpan(start: $0.0, end: $0.1) }
        if att != nil || mlp != nil {
            // the scored layers cover both spans (each defaults to --layers)
            let spans = [att ?? LayerSpan(start: start, end: end), mlp ?? LayerSpan(start: start, end: end)]
            (start, end) = (spans.map(\.start).min()!, spans.map(\.end).max()!)
        }
        var s = PruneSettings(ratio: try a.value(ratio), layerStart: start, layerEnd: end, criterion: try a.value(criterion),
                              reduction: try a.value(reduction), attentionUnit: try a.value(attentionUnit),
                              allocation: try a.value(allocation), targetParams: try a.optional(targetParams),
                              roundTo: try a.optional(roundTo), seed: seed)
        s.globalNormalization = try a.optional(globalNormalization)
        s.attentionLayers = att
        s.mlpLayers = mlp
        let k = try a.value(iterativeSteps)
        s.iterativeSteps = k == 1 ? nil : k
        s.ratioSchedule = try a.optional(ratioSchedule)?.resolved(layers: max(0, end - start))
        if strategy != .block { s.strategy = strategy }
        s.blockImportance = try a.optional(blockImportance)
        return try s.validated(numLayers: numLayers)
    }

    /// Cluster jobs (and their memory plans) run the block-wise strategy only: the job writes each rank's block of
    /// pruned layers as its own shard, and a depth or channel cut changes every rank's tensors (layer numbering,
    /// hidden size), which that commit does not handle. Nor do they run re-scoring rounds or activation-statistics
    /// criteria, which exist in the single-process importance pass only.
    static func refuseInCluster(_ s: PruneSettings) throws {
        guard s.resolvedStrategy == .block else {
            throw UsageError("--\(strategy.info.name): \(s.resolvedStrategy.rawValue) is not available in cluster jobs; run `llmprune prune` (one process)")
        }
        if s.iterativeSteps != nil {
            throw UsageError("--\(iterativeSteps.info.name): not available in cluster jobs; run `llmprune prune` (one process)")
        }
        if s.criterion.needsActivations {
            throw UsageError("--\(criterion.info.name): \(s.criterion.rawValue) is not available in cluster jobs; run `llmprune prune` (one process)")
        }
    }

    /// The flag of a setting named by `PruneError.setting`.
    static func flagName(for s: PruneSetting) -> String {
        switch s {
        case .ratio: ratio.info.name
        case .layers: layers.info.name
        case .criterion: criterion.info.name
        case .reduction: reduction.info.name
        case .attentionUnit: attentionUnit.info.name
        case .allocation: allocation.info.name
        case .globalNormalization: globalNormalization.info.name
        case .targetParams: targetParams.info.name
        case .roundTo: roundTo.info.name
        case .iterativeSteps: iterativeSteps.info.name
        case .attentionLayers: attentionLayers.info.name
        case .mlpLayers: mlpLayers.info.name
        case .ratioSchedule: ratioSchedule.info.name
        case .strategy: strategy.info.name
        case .blockImportance: blockImportance.info.name
        case .seed: CalibrationFlags.seed.info.name
        case .calibration: CalibrationFlags.calib.info.name
        case .calibrationSamples: CalibrationFlags.samples.info.name
        case .calibrationLength: CalibrationFlags.length.info.name
        case .ridge: ReconstructionFlags.ridge.info.name
        case .reconSamples: ReconstructionFlags.samples.info.name
        case .reconLength: ReconstructionFlags.length.info.name
        case .biasCompensation: ReconstructionFlags.bias.info.name
        case .iterativeRefit: ReconstructionFlags.eachRound.info.name
        }
    }
}

// MARK: - calibration

/// The calibration text, its samples and the seed that draws them (and breaks ties in the random criterion).
struct CalibrationFlags {
    static let calib = Flag<String>("calib", "SOURCE", default: "ptb-valid", orName: true,
                                    help: "calibration text: a named dataset (ptb-valid, or alpaca: the Alpaca sample's\n"
                                        + "records as tuning prompts with their answers) or FILE", parse: Parse.text)
    static let samples = Flag<Int>("calib-samples", "N", default: "10", help: "calibration samples",
                                   parse: Parse.int(min: 1))
    static let length = Flag<Int>("calib-len", "N", default: "64",
                                  help: "tokens per calibration sample (at most the model's context)",
                                  parse: Parse.int(min: 2))
    static let seed = Flag<Int>("seed", "S", default: "42", help: "draws the samples; seeds the random criterion",
                                parse: Parse.int(min: 0))

    static let group = FlagGroup(title: "calibration flags", flags: [calib.info, samples.info, length.info,
                                                                     seed.info])

    var source: String, sampleCount: Int, sampleLength: Int, seed: UInt64

    init(_ a: inout Arguments) throws {
        source = try a.value(Self.calib)
        sampleCount = try a.value(Self.samples)
        sampleLength = try a.value(Self.length)
        seed = UInt64(try a.value(Self.seed))
    }

    /// `--calib alpaca`: the shared Alpaca sample, a JSON list of records rather than lines of text.
    static let alpaca = (name: "alpaca", path: "alpaca/alpaca_data_1k.json")

    /// The calibration file (a named dataset resolved in the shared data directory); errors name `flag`.
    func file(flag: String = Self.calib.info.name) throws -> URL {
        guard source == Self.alpaca.name else {
            do { return try EvalDataset.resolve(source) } catch EvalError.unknownDataset(let name) {
                throw UsageError("--\(flag): \"\(name)\" is neither a file nor ptb-valid or alpaca")
            }
        }
        guard let root = EvalDataset.dataDirectory() else {
            throw UsageError("--\(flag): shared data directory not found (set LLMPRUNE_DATA)")
        }
        let url = root.appendingPathComponent(Self.alpaca.path)
        guard FileManager.default.isReadableFile(atPath: url.path) else {
            throw UsageError("--\(flag): \(url.path): dataset file not found")
        }
        return url
    }

    /// The calibration text: Alpaca records rendered as the tuning prompt with its answer (AlpacaData.prompt),
    /// records separated by a blank line; any other source under the evaluation text protocol.
    func text(of file: URL) throws -> String {
        guard source == Self.alpaca.name else { return try EvalDataset.text(of: file) }
        return try AlpacaData.load(path: file.path)
            .map { AlpacaData.prompt(instruction: $0.instruction, input: $0.input, output: $0.output) }
            .joined(separator: "\n\n")
    }

    /// Refuses samples longer than the model's context.
    func check(_ config: LlamaConfig) throws {
        try CLI.checkContext(Self.length.info.name, sampleLength, config)
    }

    /// The calibration set, tokenized with the model's tokenizer.
    func draw(model: LoadedModel) throws -> CalibrationSet {
        guard let tokenizer = model.tokenizer else { throw UsageError("--model: no tokenizer to read the calibration text") }
        let file = try file()
        let bytes = try Data(contentsOf: file)
        let ids = tokenizer.encode(try text(of: file))
        return try CalibrationSet.draw(ids: ids, file: file.path, fileSHA256: SHA256.hex(bytes), samples: sampleCount,
                                       sampleLength: sampleLength, seed: seed)
    }
}

// MARK: - reconstruction

/// The least-squares refit of o_proj and down_proj after the cut (`ReconstructionSettings`, Pruning/Reconstruction.swift).
/// It needs the unpruned model's activations, so `prune` and `cluster prune` take these, not `apply`.
enum ReconstructionFlags {
    static let reconstruct = Flag<ReconstructionMethod>("reconstruct", "M", default: ReconstructionMethod.none.rawValue,
        help: "none | lstsq (refit o/down to the unpruned layer's outputs on its activations) |\n"
            + "lstsq-seq (inputs from the already pruned layers; one process only)",
        parse: Parse.choice(ReconstructionMethod.self))
    static let ridge = Flag<Double>("ridge", "λ", default: String(ReconstructionSettings.defaultRidge),
        help: "ridge toward the kept weights, relative to the mean Gram diagonal (> 0)", parse: Parse.double())
    static let samples = Flag<Int>("recon-samples", "N", default: String(ReconstructionSettings.defaultSamples),
        help: "reconstruction windows, drawn from --recon-calib (else --calib) with --seed", parse: Parse.int(min: 1))
    static let length = Flag<Int>("recon-len", "N", default: String(ReconstructionSettings.defaultSampleLength),
        help: "tokens per reconstruction window (at most the model's context)", parse: Parse.int(min: 2))
    static let calib = Flag<String>("recon-calib", "SOURCE", orName: true,
        help: "the reconstruction windows' text, as --calib (default: --calib's): ptb-valid, alpaca\n"
            + "or FILE; never a test split", parse: Parse.text)
    static let eachRound = Switch("iterative-refit",
        help: "with --iterative-steps K: also refit the partly pruned model after each of the first\n"
            + "K−1 rounds, so the next round scores the refit model")
    static let bias = Switch("bias-compensation",
        help: "the refit also fits o_proj and down_proj biases (FLAP's bias compensation); the model\n"
            + "gets Llama's attention_bias and mlp_bias (llama models only)")

    static let group = FlagGroup(title: "reconstruction flags", flags: [reconstruct.info, ridge.info, samples.info,
                                                                        length.info, calib.info, bias.info, eachRound.info])

    /// The reconstruction windows (nil without a reconstruction): `--recon-samples` × `--recon-len` tokens from
    /// `--recon-calib`'s text (else `--calib`'s) with `--seed`. The file is checked here, before anything loads.
    static func windows(_ a: inout Arguments, calibration: CalibrationFlags,
                        settings: ReconstructionSettings?) throws -> CalibrationFlags? {
        let source = try a.optional(calib)
        guard let settings else { return nil }
        var f = calibration
        if let source { f.source = source }
        (f.sampleCount, f.sampleLength) = (settings.samples, settings.sampleLength)
        _ = try f.file(flag: source == nil ? CalibrationFlags.calib.info.name : calib.info.name)
        return f
    }

    /// The settings, validated; nil for `--reconstruct none`. The window length is checked against `config`.
    static func settings(_ a: inout Arguments, config: LlamaConfig) throws -> ReconstructionSettings? {
        let s = ReconstructionSettings(method: try a.value(reconstruct), ridge: try a.value(ridge),
                                       samples: try a.value(samples), sampleLength: try a.value(length),
                                       bias: a.flag(bias), eachRound: a.flag(eachRound))
        try CLI.checkContext(length.info.name, s.sampleLength, config)
        let valid = try s.validated()
        try valid.check(for: config)
        return valid.method == .none ? nil : valid
    }
}

// MARK: - job

/// How a prune job is spread over ranks and how much memory each may take.
struct JobFlags {
    static let shard = Flag<ShardMode>("shard", "MODE", default: ShardMode.samples.rawValue,
        help: "samples: every rank holds the model and takes 1/N of the calibration samples;\n"
            + "layers: every rank holds only its block of layers (models larger than a host)",
        parse: Parse.choice(ShardMode.self))
    static let lowMemory = Switch("low-memory",
        help: "layers stay mapped in their file dtype (bf16/f16) and are widened to fp32 one at\n"
            + "a time (cluster prune --shard layers: the shards are written in --dtype; tune: per stage)")
    static let memPerRank = Flag<Int>("mem-per-rank", "SIZE",
        help: "e.g. 6G: predict each rank's peak before loading anything and refuse a job that\n"
            + "cannot fit (saying what would); cluster prune picks --low-memory when only that fits.\n"
            + "Enforce it with cluster/mem-budget.sh SIZE -- llmprune … (a cgroup per rank)",
        parse: { s in
            guard let b = MemoryPlanner.parseSize(s) else { throw FlagValueError("\"\(s)\" is not a size (e.g. 6G, 512M, 1.5G)") }
            return b
        })
    /// nil: automatic.
    static let activationCache = Flag<Int?>("activation-cache", "SIZE", default: "auto",
        help: "keep the internals of a stage's top layers from the forward sweep so their\n"
            + "backward skips recomputation: auto (the budget's headroom, or 2 GiB), SIZE, 0",
        parse: { s in
            if s == "auto" { return nil }
            if s == "0" { return 0 }
            guard let b = MemoryPlanner.parseSize(s) else { throw FlagValueError("\"\(s)\" is not auto, 0 or a size (e.g. 512M)") }
            return b
        })
    static let microBatches = Flag<Int>("micro-batches", "N", default: "1", runtime: true,
                                        help: "pipeline micro-batches with --shard layers; in `plan`/`prune`: the calibration\n"
                                            + "batch runs in N parts (gradients accumulated, activations of one part)",
                                        parse: Parse.int(min: 1))

    static let group = FlagGroup(title: "job flags", flags: [shard.info, lowMemory.info, memPerRank.info,
                                                             activationCache.info, microBatches.info])

    var shard: ShardMode, lowMemory: Bool, budget: Int?, activationCache: Int?, microBatches: Int

    init(_ a: inout Arguments) throws {
        shard = try a.value(Self.shard)
        lowMemory = a.flag(Self.lowMemory)
        budget = try a.optional(Self.memPerRank)
        activationCache = try a.value(Self.activationCache)
        microBatches = try a.value(Self.microBatches)
        if lowMemory && shard != .layers {
            throw UsageError("--low-memory: needs --shard layers (in samples mode every rank holds the whole model)")
        }
    }
}

// MARK: - job directory and session

/// Where a job keeps its state, and resuming it.
enum JobDirectoryFlags {
    static let jobDir = Flag<String>("job-dir", "DIR", path: true,
                                     help: "checkpoints, state, trace, report (default OUT.job)", parse: Parse.text)
    static let resume = Flag<String>("resume", "JOB_DIR", runtime: true,
                                     help: "continue a failed job from its last completed phase", parse: Parse.text)
    static let group = FlagGroup(title: "job directory flags", flags: [jobDir.info, resume.info])
}

/// The control plane of a job (its coordinator address, heartbeats, encryption).
enum SessionFlags {
    static let bind = Flag<String>("bind", "tcp://HOST:PORT", runtime: true,
                                   help: "coordinator address (default a free loopback port)", parse: Parse.text)
    static let heartbeatInterval = Flag<Double>("heartbeat-interval", "S", default: "1", runtime: true,
                                                help: "seconds between heartbeats", parse: Parse.double(.positive))
    static let heartbeatTimeout = Flag<Double>("heartbeat-timeout", "S", default: "5", runtime: true,
                                               help: "seconds of silence after which a rank is declared lost",
                                               parse: Parse.double(.positive))
    static let curve = Switch("curve", runtime: true,
                              help: "encrypt the control plane (ZeroMQ CURVE) even on loopback (on by default for\na --bind beyond loopback)")
    static let insecure = Switch("insecure", runtime: true,
                                 help: "no CURVE on a --bind beyond loopback: the control plane and the job\ntoken travel in clear text")

    static let progressTimeout = Flag<Double>("progress-timeout", "S", runtime: true,
                                              help: "seconds a rank may go without progress in a phase before the job is\naborted (default: derived, see --progress-floor)",
                                              parse: Parse.double(.positive))
    static let progressFloor = Flag<Double>("progress-floor", "S", default: "60", runtime: true,
                                            help: "without --progress-timeout, a rank behind is aborted after 10 × the time\nthe slowest other rank took past it, and never before S seconds",
                                            parse: Parse.double(.positive))

    static let group = FlagGroup(title: "session flags", flags: [bind.info, heartbeatInterval.info,
                                                                 heartbeatTimeout.info, curve.info, insecure.info,
                                                                 progressTimeout.info, progressFloor.info])

    /// The session options, with the test hooks of LLMPRUNE_FAULT.
    static func options(_ a: inout Arguments, quiet: Bool) throws -> SessionOptions {
        var o = SessionOptions()
        o.quiet = quiet
        o.bind = try a.optional(bind) ?? o.bind
        o.heartbeatInterval = try a.value(heartbeatInterval)
        o.heartbeatTimeout = try a.value(heartbeatTimeout)
        guard o.heartbeatTimeout > o.heartbeatInterval else {
            throw UsageError("--heartbeat-timeout: \(o.heartbeatTimeout) s must exceed --heartbeat-interval \(o.heartbeatInterval) s")
        }
        o.curve = a.flag(curve)
        o.insecure = a.flag(insecure)
        o.progress.fixed = try a.optional(progressTimeout)
        o.progress.floor = try a.value(progressFloor)
        if let problem = o.problem { throw UsageError(problem) }
        o.fault = FaultInjection.fromEnvironment()
        return o
    }
}

// MARK: - evaluation

/// Perplexity before and after a prune or a tune.
struct EvalFlags {
    static let eval = Flag<[String]>("eval", "wikitext2,ptb", help: "perplexity on these datasets before and after",
                                     parse: { $0.split(separator: ",").map(String.init) })
    static let windows = Flag<Int>("eval-windows", "N", help: "only the first N windows of each dataset",
                                   parse: Parse.int(min: 1))
    static let group = FlagGroup(title: "evaluation flags", flags: [eval.info, windows.info])

    var datasets: [String], windows: Int?

    /// Resolves the datasets at once, so a misspelt one fails before any work.
    init(_ a: inout Arguments) throws {
        datasets = try a.optional(Self.eval) ?? []
        windows = try a.optional(Self.windows)
        for ds in datasets { _ = try EvalDataset.resolve(ds) }
    }
}

// MARK: - distillation

/// `tune --teacher`: recovery by distillation (Sources/LoRA/Distillation.swift, Sources/ClusterTune/TuneDistillation.swift).
enum DistillationFlags {
    static let teacher = Flag<String>("teacher", "PATH", path: true,
        help: "distil from this model (the unpruned one; same tokenizer): its logits' KL joins the loss",
        parse: Parse.text)
    static let weight = Flag<Double>("kd-weight", "W", default: "0.5",
        help: "loss (1-w)·CE + w·T²·KL(teacher ‖ model) per scored token (with --teacher)",
        parse: Parse.double(.closed(0, 1)))
    static let temperature = Flag<Double>("kd-temperature", "T", default: "1",
        help: "softmax temperature of both models in the KD term (with --teacher)", parse: Parse.double(.positive))
    static let group = FlagGroup(title: "distillation flags", flags: [teacher.info, weight.info, temperature.info])

    /// The teacher, or nil without --teacher. Before any work: the teacher must index the model's tokens (same
    /// vocabulary size and spelling), or the one line names --teacher.
    static func options(_ a: inout Arguments, model: String) throws -> TeacherOptions? {
        let settings = DistillationSettings(weight: try a.value(weight), temperature: try a.value(temperature))
        guard let path = try a.optional(teacher) else { return nil }
        try settings.validate()
        let s = try Checkpoint.open(path: model), t = try Checkpoint.open(path: path)
        if let why = Teacher.incompatibility(student: s.config, studentTokenizer: try s.tokenizer(), teacher: t.config,
                                             teacherTokenizer: try t.tokenizer()) {
            throw UsageError("--teacher: \(path): \(why)")
        }
        return TeacherOptions(path: path, settings: settings)
    }
}

// MARK: - compute

/// The arithmetic of the frozen base's products (`tune`, `eval`, `generate`): fp32 sgemm, or bf16 inputs with fp32
/// accumulation through oneDNN where the CPU has AVX512-BF16 (docs/bf16.md).
enum ComputeFlags {
    static let compute = Flag<ComputeType>("compute", "fp32|bf16", default: ComputeType.fp32.rawValue,
        help: "the frozen base's products: fp32, or bf16 inputs with fp32 accumulation\n"
            + "(oneDNN; needs AVX512-BF16, refused elsewhere; results differ slightly)",
        parse: Parse.choice(ComputeType.self))
    static let group = FlagGroup(title: "compute flags", flags: [compute.info])

    /// --compute, refused at once (one line naming the flag) when bf16 cannot run natively on this CPU.
    static func value(_ a: inout Arguments) throws -> ComputeType {
        let c = try a.value(compute)
        if c == .bf16, let why = BF16.unavailableReason { throw UsageError("--\(compute.info.name) bf16: \(why)") }
        return c
    }
}

// MARK: - a command's table

/// The flags of one command: its own, then the groups it composes.
struct CommandFlags {
    let own: [FlagInfo]
    let groups: [FlagGroup]

    var all: [FlagInfo] { own + groups.flatMap(\.flags) }

    func info(_ name: String) -> FlagInfo? { all.first { $0.name == name } }

    /// The help page: usage, what the command does, its own flags, then each group.
    func help(usage: String, about: String, ownTitle: String = "flags") -> String {
        var parts = [usage, about]
        if !own.isEmpty { parts.append(FlagGroup(title: ownTitle, flags: own).help) }
        parts += groups.map(\.help)
        return parts.filter { !$0.isEmpty }.joined(separator: "\n")
    }

    /// `args` as job.json records them: without the runtime flags, with the paths made absolute so a resume works
    /// from any directory. Which flags take a value, are paths or only steer this run comes from this table.
    func recorded(_ args: [String]) -> [String] {
        var out: [String] = [], i = 0
        let cwd = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
        func absolute(_ f: FlagInfo?, _ v: String) -> String {
            guard let f, f.isPath else { return v }
            if f.orName, !FileManager.default.fileExists(atPath: v) { return v }
            return URL(fileURLWithPath: v, relativeTo: cwd).standardizedFileURL.path
        }
        while i < args.count {
            let a = args[i]
            guard a.hasPrefix("--") else { out.append(a); i += 1; continue }
            let name = String(a.dropFirst(2).prefix { $0 != "=" })
            let f = info(name)
            let inline = a.contains("=")
            let takes = !(f?.isSwitch ?? false) && !inline
            if !(f?.runtime ?? false) {
                if inline {
                    out.append("--\(name)=" + absolute(f, String(a[a.index(after: a.firstIndex(of: "=")!)...])))
                } else {
                    out.append(a)
                    if takes, i + 1 < args.count { out.append(absolute(f, args[i + 1])) }
                }
            }
            i += takes ? 2 : 1
        }
        return out
    }
}

extension CLI {
    /// Refuses a sequence longer than the model's context, naming the flag, before anything large is allocated.
    /// Dynamic RoPE scaling has no such bound: rescaling the frequencies for sequences past max_position_embeddings
    /// is what it is for (transformers computes any length).
    static func checkContext(_ flag: String, _ length: Int, _ config: LlamaConfig) throws {
        guard length <= config.maxPositionEmbeddings || config.ropeScaling.kind == .dynamic else {
            throw UsageError("--\(flag): \(length) tokens exceed the model's context of \(config.maxPositionEmbeddings) tokens")
        }
    }

    /// A testing hook: with LLMPRUNE_PRINT_FLAGS=1 a command prints the settings it parsed, as JSON, and stops, so a
    /// test can compare what different commands make of the same flags.
    static func printParsedFlagsIfAsked(_ settings: PruneSettings, _ calib: CalibrationFlags, job: JobFlags? = nil) throws {
        guard ProcessInfo.processInfo.environment["LLMPRUNE_PRINT_FLAGS"] == "1" else { return }
        struct Parsed: Encodable {
            var settings: PruneSettings, calib: String, calibSamples: Int, calibLen: Int
            var shard: String?, activationCache: Int?, microBatches: Int?
        }
        try printJSON(Parsed(settings: settings, calib: calib.source, calibSamples: calib.sampleCount,
                             calibLen: calib.sampleLength, shard: job?.shard.rawValue, activationCache: job?.activationCache,
                             microBatches: job?.microBatches))
        exit(0)
    }
}
