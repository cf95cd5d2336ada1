import Cluster
import ClusterPrune
import Foundation
import LlamaModel
import Pruning

/// `llmprune cluster prune | status`: the distributed prune job (Sources/Cluster/ClusterPrune.swift,
/// docs/cluster.md), launched as `mpiexec -n N llmprune cluster prune …`.
enum ClusterCommand {
    static let booleans: Set<String> = ["json", "quiet", "force", "curve", "low-memory"]
    /// Flags that only steer this run; a resumed job takes everything else from its job.json (where a flag given
    /// again on the resume, e.g. --shard or --mem-per-rank, overrides the recorded one).
    static let runtimeFlags: Set<String> = ["json", "quiet", "threads", "bind", "heartbeat-interval", "heartbeat-timeout",
                                            "curve", "resume", "micro-batches"]

    static func run(_ argv: [String]) throws {
        guard let sub = argv.first else { throw UsageError("cluster: missing subcommand (prune, status or memory)") }
        let rest = Array(argv.dropFirst())
        switch sub {
        case "prune": try prune(rest)
        case "status": try status(rest)
        case "memory": try MemoryCommand.run(rest)
        default: throw UsageError("cluster: unknown subcommand \"\(sub)\" (prune, status or memory)")
        }
    }

    static func prune(_ given: [String]) throws {
        let start = Date()
        var (a, resumeDir) = try jobArguments(given, booleans: booleans)
        let modelPath = try a.required("model")
        let out = URL(fileURLWithPath: try a.required("out")).standardizedFileURL
        let jobDir = resumeDir ?? URL(fileURLWithPath: a.string("job-dir") ?? out.path + ".job").standardizedFileURL
        let force = a.flag("force"), json = a.flag("json"), quiet = a.flag("quiet") || json
        try CLI.applyThreads(&a)
        let shardText = a.string("shard") ?? "samples"
        guard let shard = ShardMode(rawValue: shardText) else {
            throw UsageError("--shard: \"\(shardText)\" is not samples or layers")
        }
        let config = try ModelLoader.config(path: modelPath)
        let settings = try PruneCommand.settings(&a, numLayers: config.numLayers)
        let calib = try PruneCommand.CalibrationFlags(&a)
        var options = ClusterPruneOptions(
            modelPath: modelPath, out: out, jobDir: jobDir, settings: settings,
            spec: JobSpec(command: "cluster prune", arguments: withoutRuntimeFlags(given)))
        options.shard = shard
        options.resume = resumeDir != nil
        options.force = force
        options.session = try sessionOptions(&a, quiet: quiet)
        options.microBatches = try a.int("micro-batches", min: 1)
        let lowMemory = a.flag("low-memory")
        let cache = try activationCache(&a)
        let budget = try memoryBudget(&a)
        try a.finish()
        if Communicator.world.size > config.numLayers {
            throw UsageError("cluster prune: \(Communicator.world.size) ranks for \(config.numLayers) layers (each rank needs a layer)")
        }
        if lowMemory && shard != .layers {
            throw UsageError("--low-memory: needs --shard layers (in samples mode every rank holds the whole model)")
        }
        // The memory plan, from headers only, before anything is loaded; with a budget, a job that cannot fit stops
        // here, and layers mode switches to low-memory execution when only that fits.
        var inputs = try memoryInputs(config: config, shard: shard, ranks: Communicator.world.size, lowMemory: lowMemory,
                                      fileBytesPerParameter: try ModelLoader.layerBytesPerParameter(path: modelPath),
                                      settings: settings, samples: calib.samples, length: calib.length,
                                      microBatches: options.microBatches ?? 1, activationCache: cache)
        options.memoryPlan = try planMemory(&inputs, budget: budget)
        options.lowMemory = inputs.lowMemory
        if let budget, let plan = options.memoryPlan, !quiet, Communicator.world.rank == 0 {
            let note = inputs.lowMemory && !lowMemory ? "; fp32 layers would not fit, so --low-memory" : ""
            FileHandle.standardError.write(("llmprune: memory plan: largest rank \(MemoryPlanner.formatGiB(plan.largest)) of "
                + "\(MemoryPlanner.formatGiB(budget)) per rank\(note)\n").data(using: .utf8)!)
        }
        let job = ClusterPruneJob(options: options) { model in try calib.draw(model: model, seed: settings.seed) }
        guard let report = try job.run() else { return }
        let html = ReportCommand.afterJob(report.jobDir)
        if json { try CLI.printJSON(report); return }
        print(String(format: "parameters   %ld → %ld (%.2f%% kept)", report.parametersBefore, report.parametersAfter,
                     100 * Double(report.parametersAfter) / Double(report.parametersBefore)))
        print("output       \(report.out) (\(report.ranks) shard(s))")
        print("job          \(report.jobDir)  plan \(report.plan)  trace \(report.trace)")
        print("phase        seconds      MPI bytes   control bytes")
        for p in PrunePhase.allCases {
            let ph = report.phases[p.rawValue]!
            print(p.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0)
                  + String(format: "%9.2f %14d %15d", ph.seconds, ph.mpiBytes, ph.controlBytes)
                  + (ph.fromCheckpoint ? "  (checkpoint)" : ""))
        }
        print("rank  layers     weights MB  activations MB  peak RSS MB  predicted MB")
        for r in report.perRank {
            let predicted = report.memoryPlan?.ranks.first { $0.rank == r.rank }.map { Double($0.peakBytes) / 1e6 } ?? 0
            print(String(format: "%4d  %3d..<%-3d %11.1f %15.1f %12.1f %13.1f", r.rank, r.layers.first ?? 0, (r.layers.last ?? -1) + 1,
                         Double(r.weightBytes) / 1e6, Double(r.peakActivationBytes) / 1e6, Double(r.peakRSSBytes) / 1e6,
                         predicted))
        }
        if let html { print("report       \(html)") }
        print(String(format: "total        %.2f s", Date().timeIntervalSince(start)))
    }

    /// The job's memory plan. With a budget: layers mode switches to low memory when only that fits, and a job
    /// that cannot fit throws the planner's refusal.
    static func planMemory(_ inputs: inout MemoryPlanInputs, budget: Int?) throws -> MemoryPlan {
        guard let budget else { return try MemoryPlanner.plan(inputs) }
        inputs.budget = budget
        if inputs.shard == .layers, !inputs.lowMemory, try MemoryPlanner.plan(inputs).largest > budget {
            inputs.lowMemory = true
        }
        return try MemoryPlanner.check(inputs, budget: budget)
    }

    /// What the memory planner needs to know of a job.
    static func memoryInputs(config: LlamaConfig, shard: ShardMode, ranks: Int, lowMemory: Bool,
                             fileBytesPerParameter: Double, settings: PruneSettings, samples: Int, length: Int,
                             microBatches: Int, activationCache: Int?) throws -> MemoryPlanInputs {
        let (criterion, _) = try Planner.parse(criterion: settings.criterion, reduction: settings.reduction)
        var x = MemoryPlanInputs(config: config, shard: shard, ranks: ranks, lowMemory: lowMemory,
                                 fileBytesPerParameter: fileBytesPerParameter, samples: samples, sampleLength: length,
                                 scored: settings.layerRange, needsGradient: criterion.needsGradient,
                                 needsFisher: criterion.needsFisher, microBatches: microBatches, ratio: settings.ratio)
        x.activationCache = activationCache
        return x
    }

    /// --mem-per-rank SIZE, or nil.
    static func memoryBudget(_ a: inout Arguments) throws -> Int? {
        guard let t = a.string("mem-per-rank") else { return nil }
        guard let b = MemoryPlanner.parseSize(t) else {
            throw UsageError("--mem-per-rank: \"\(t)\" is not a size (e.g. 6G, 512M, 1.5G)")
        }
        return b
    }

    /// --activation-cache auto|SIZE (0: recompute every layer's internals in the backward sweep).
    static func activationCache(_ a: inout Arguments) throws -> Int? {
        guard let t = a.string("activation-cache"), t != "auto" else { return nil }
        if t == "0" { return 0 }
        guard let b = MemoryPlanner.parseSize(t) else {
            throw UsageError("--activation-cache: \"\(t)\" is not auto, 0 or a size (e.g. 512M)")
        }
        return b
    }

    static func status(_ argv: [String]) throws {
        guard argv.count == 1, !argv[0].hasPrefix("--") else { throw UsageError("usage: llmprune cluster status JOB_DIR") }
        let dir = JobDirectory(URL(fileURLWithPath: argv[0]))
        let spec = try dir.spec()
        let state = try dir.state()
        print("job          \(dir.url.path): llmprune \(spec.command) \(spec.arguments.joined(separator: " "))")
        let phases = state.completed.sorted { $0.value < $1.value }.map { "\($0.key) ✓ (attempt \($0.value))" }
        print("done         " + (phases.isEmpty ? "nothing yet" : phases.joined(separator: ", ")))
        for a in state.attempts {
            for line in try dir.diagnose(epoch: a.epoch).lines { print(line) }
        }
        if state.attempts.last?.outcome != "complete" {
            print("resume with  mpiexec -n N llmprune \(spec.command) --resume \(dir.url.path)")
        }
    }

    /// The arguments of a job command. With `--resume DIR` they are the job's recorded arguments followed by this
    /// launch's (later flags win, so runtime flags such as --threads or --bind can change); returns the job directory.
    static func jobArguments(_ given: [String], booleans: Set<String>) throws -> (Arguments, URL?) {
        var peek = try Arguments(given, booleans: booleans)
        guard let r = peek.string("resume") else { return (try Arguments(given, booleans: booleans), nil) }
        let dir = JobDirectory(URL(fileURLWithPath: r))
        var a = try Arguments(try dir.spec().arguments + given, booleans: booleans)
        _ = a.string("resume")
        return (a, dir.url)
    }

    /// Flags whose value is a path, made absolute in job.json so a resume works from any directory.
    static let pathFlags: Set<String> = ["model", "out", "job-dir", "calib"]

    /// `args` as job.json records them: without the runtime flags, with absolute paths.
    static func withoutRuntimeFlags(_ args: [String]) -> [String] {
        var out: [String] = [], i = 0
        let cwd = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
        func absolute(_ name: String, _ v: String) -> String {
            guard pathFlags.contains(name), FileManager.default.fileExists(atPath: v) || name != "calib" else { return v }
            return URL(fileURLWithPath: v, relativeTo: cwd).standardizedFileURL.path
        }
        while i < args.count {
            let a = args[i]
            guard a.hasPrefix("--") else { out.append(a); i += 1; continue }
            let name = String(a.dropFirst(2).prefix { $0 != "=" })
            let inline = a.contains("=")
            let takes = !booleans.contains(name) && !inline
            if !runtimeFlags.contains(name) {
                if inline {
                    out.append("--\(name)=" + absolute(name, String(a[a.index(after: a.firstIndex(of: "=")!)...])))
                } else {
                    out.append(a)
                    if takes, i + 1 < args.count { out.append(absolute(name, args[i + 1])) }
                }
            }
            i += takes ? 2 : 1
        }
        return out
    }

    /// --bind, --heartbeat-interval, --heartbeat-timeout, --curve, and the test hooks of LLMPRUNE_FAULT.
    static func sessionOptions(_ a: inout Arguments, quiet: Bool) throws -> SessionOptions {
        var o = SessionOptions()
        o.quiet = quiet
        o.bind = a.string("bind") ?? o.bind
        o.heartbeatInterval = try double(&a, "heartbeat-interval", default: 1)
        o.heartbeatTimeout = try double(&a, "heartbeat-timeout", default: 5)
        guard o.heartbeatTimeout > o.heartbeatInterval else {
            throw UsageError("--heartbeat-timeout: \(o.heartbeatTimeout) s must exceed --heartbeat-interval \(o.heartbeatInterval) s")
        }
        o.curve = a.flag("curve")
        o.fault = FaultInjection.fromEnvironment()
        return o
    }

    static func double(_ a: inout Arguments, _ name: String, default d: Double) throws -> Double {
        guard let s = a.string(name) else { return d }
        guard let v = Double(s), v > 0, v.isFinite else { throw UsageError("--\(name): \"\(s)\" is not a positive number of seconds") }
        return v
    }
}
