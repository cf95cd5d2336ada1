// Every flag a command takes, defined once: name, default, help text and parser, in groups that the commands
// compose (pruning, calibration, job, session, evaluation, common). The help pages print these tables, and
// `Arguments(_:accepting:)` refuses anything a command's tables do not list, so what a command accepts, what its
// help says and what a job records cannot drift apart.
import Cluster
import ClusterPrune
import Eval
import Formats
import Foundation
import LlamaModel
import Pruning
import Support
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
    static let threads = Flag<Int>("threads", "T", runtime: true, help: "BLAS threads (default: all cores)",
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
        help: "fraction of each scored layer's attention units and MLP channels to remove", parse: Parse.double())
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
        help: "parameters|layer: score normalisation for global allocation (default parameters)",
        parse: Parse.choice(GlobalNormalization.self))
    static let targetParams = Flag<Double>("target-params", "F",
        help: "keep this fraction of the parameters (instead of --ratio)",
        parse: Parse.double())
    static let roundTo = Flag<Int>("round-to", "N", help: "keep MLP widths a multiple of N (8, 64 or 128)",
                                   parse: Parse.int())
    static let layers = Flag<(Int, Int)>("layers", "START:END",
        help: "scored layers, END exclusive (default 4:L-2, as the reference)", parse: { s in
            let parts = s.split(separator: ":", omittingEmptySubsequences: false).map { Int($0) }
            guard parts.count == 2, let lo = parts[0], let hi = parts[1] else { throw FlagValueError("\"\(s)\" is not START:END") }
            return (lo, hi)
        })

    static let group = FlagGroup(title: "pruning flags", flags: [ratio.info, criterion.info, reduction.info,
        attentionUnit.info, allocation.info, globalNormalization.info, targetParams.info, roundTo.info, layers.info])

    /// The settings from the flags (with `seed` from the calibration flags), validated against the model.
    static func settings(_ a: inout Arguments, numLayers: Int, seed: UInt64) throws -> PruneSettings {
        let (start, end) = try a.optional(layers) ?? PruneSettings.defaultLayerRange(numLayers: numLayers)
        var s = PruneSettings(ratio: try a.value(ratio), layerStart: start, layerEnd: end, criterion: try a.value(criterion),
                              reduction: try a.value(reduction), attentionUnit: try a.value(attentionUnit),
                              allocation: try a.value(allocation), targetParams: try a.optional(targetParams),
                              roundTo: try a.optional(roundTo), seed: seed)
        s.globalNormalization = try a.optional(globalNormalization)
        return try s.validated(numLayers: numLayers)
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
        case .seed: CalibrationFlags.seed.info.name
        case .calibration: CalibrationFlags.calib.info.name
        case .calibrationSamples: CalibrationFlags.samples.info.name
        case .calibrationLength: CalibrationFlags.length.info.name
        }
    }
}

// MARK: - calibration

/// The calibration text, its samples and the seed that draws them (and breaks ties in the random criterion).
struct CalibrationFlags {
    static let calib = Flag<String>("calib", "SOURCE", default: "ptb-valid", orName: true,
                                    help: "calibration text: a named dataset or FILE", parse: Parse.text)
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

    /// The calibration file (a named dataset resolved in the shared data directory).
    func file() throws -> URL { try EvalDataset.resolve(source) }

    /// Refuses samples longer than the model's context.
    func check(_ config: LlamaConfig) throws {
        try CLI.checkContext(Self.length.info.name, sampleLength, config)
    }

    /// The calibration set, tokenized with the model's tokenizer.
    func draw(model: LoadedModel) throws -> CalibrationSet {
        guard let tokenizer = model.tokenizer else { throw UsageError("--model: no tokenizer to read the calibration text") }
        let file = try file()
        let bytes = try Data(contentsOf: file)
        let ids = tokenizer.encode(try EvalDataset.text(of: file))
        return try CalibrationSet.draw(ids: ids, file: file.path, fileSHA256: SHA256.hex(bytes), samples: sampleCount,
                                       sampleLength: sampleLength, seed: seed)
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
        help: "with --shard layers: layers stay mapped in their file dtype (bf16/f16) and are\n"
            + "widened to fp32 one at a time; the shards are written in --dtype")
    static let memPerRank = Flag<Int>("mem-per-rank", "SIZE",
        help: "e.g. 6G: predict each rank's peak before loading anything and refuse a job that\n"
            + "cannot fit (saying what would); picks --low-memory when only that fits.\n"
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
                                        help: "pipeline micro-batches with --shard layers", parse: Parse.int(min: 1))

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
