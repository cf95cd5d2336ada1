import Cluster
import ClusterPrune
import Foundation
import LlamaModel
import Pruning

/// `llmprune cluster prune | status`: the distributed prune job (Sources/Cluster/ClusterPrune.swift,
/// docs/cluster.md), launched as `mpiexec -n N llmprune cluster prune …`.
enum ClusterCommand {
    static let out = Flag<String>("out", "DIR", path: true, help: "the pruned model (sharded Hugging Face directory)",
                                  parse: Parse.text)
    /// A resumed job takes every flag that is not `runtime` from its job.json (where a flag given again on the resume,
    /// e.g. --shard or --mem-per-rank, overrides the recorded one).
    static let pruneFlags = CommandFlags(
        own: [CommonFlags.model.info, out.info, OutputFlags.dtype.info, CommonFlags.threads.info, CommonFlags.json.info,
              CommonFlags.quiet.info, CommonFlags.force.info],
        groups: [PruningFlags.group, CalibrationFlags.group, ReconstructionFlags.group, JobFlags.group,
                 JobDirectoryFlags.group, SessionFlags.group])

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
        var (a, resumeDir) = try jobArguments(given, flags: pruneFlags)
        let modelPath = try a.required("model")
        let out = URL(fileURLWithPath: try a.required("out")).standardizedFileURL
        let jobDirFlag = try a.optional(JobDirectoryFlags.jobDir)
        let jobDir = resumeDir ?? URL(fileURLWithPath: jobDirFlag ?? out.path + ".job").standardizedFileURL
        let force = a.flag("force"), json = a.flag("json"), quiet = a.flag("quiet") || json
        try CLI.applyThreads(&a)
        let config = try ModelLoader.config(path: modelPath)
        let calib = try CalibrationFlags(&a)
        let settings = try PruningFlags.settings(&a, numLayers: config.numLayers, seed: calib.seed)
        try PruningFlags.refuseInCluster(settings)
        try calib.check(config)
        let recon = try ReconstructionFlags.settings(&a, config: config)
        let reconWindows = try ReconstructionFlags.windows(&a, calibration: calib, settings: recon)
        if recon?.eachRound == true {
            throw UsageError("--\(ReconstructionFlags.eachRound.info.name): not available in cluster jobs (nor is --iterative-steps); run `llmprune prune` (one process)")
        }
        if recon?.method == .lstsqSequential {
            throw UsageError("--reconstruct: lstsq-seq runs in one process only (llmprune prune); use lstsq")
        }
        let jobFlags = try JobFlags(&a)
        var options = ClusterPruneOptions(
            modelPath: modelPath, out: out, jobDir: jobDir, settings: settings,
            spec: JobSpec(command: "cluster prune", arguments: pruneFlags.recorded(given)))
        options.shard = jobFlags.shard
        options.resume = resumeDir != nil
        options.force = force
        options.session = try SessionFlags.options(&a, quiet: quiet)
        options.microBatches = jobFlags.microBatches
        options.dtype = try a.optional(OutputFlags.dtype)
        options.reconstruction = recon
        try a.finish()
        try CLI.printParsedFlagsIfAsked(settings, calib, job: jobFlags)
        _ = try calib.file()
        if Communicator.world.size > config.numLayers {
            throw UsageError("cluster prune: \(Communicator.world.size) ranks for \(config.numLayers) layers (each rank needs a layer)")
        }
        // The memory plan, from headers only, before anything is loaded; with a budget, a job that cannot fit stops
        // here, and layers mode switches to low-memory execution when only that fits.
        var inputs = MemoryPlanInputs(config: config, shard: jobFlags.shard, ranks: Communicator.world.size,
                                      lowMemory: jobFlags.lowMemory,
                                      fileBytesPerParameter: try ModelLoader.layerBytesPerParameter(path: modelPath),
                                      settings: settings, samples: calib.sampleCount, length: calib.sampleLength,
                                      microBatches: jobFlags.microBatches, activationCache: jobFlags.activationCache)
        inputs.reconstruction = recon
        options.memoryPlan = try MemoryPlanner.decide(&inputs, budget: jobFlags.budget)
        options.lowMemory = inputs.lowMemory
        if let budget = jobFlags.budget, let plan = options.memoryPlan, !quiet, Communicator.world.rank == 0 {
            let note = inputs.lowMemory && !jobFlags.lowMemory ? "; fp32 layers would not fit, so --low-memory" : ""
            FileHandle.standardError.write(("llmprune: memory plan: largest rank \(MemoryPlanner.formatGiB(plan.largest)) of "
                + "\(MemoryPlanner.formatGiB(budget)) per rank\(note)\n").data(using: .utf8)!)
        }
        let job = ClusterPruneJob(options: options) { model in try calib.draw(model: model) }
        if let windows = reconWindows { job.drawReconstruction = { model in try windows.draw(model: model) } }
        guard let report = try job.run() else { return }
        let html = ReportCommand.afterJob(report.jobDir)
        if json { try CLI.printJSON(report); return }
        print(String(format: "parameters   %ld → %ld (%.2f%% kept)", report.parametersBefore, report.parametersAfter,
                     100 * Double(report.parametersAfter) / Double(report.parametersBefore)))
        print("output       \(report.out) (\(report.ranks) shard(s)" + (report.dtype.map { ", \($0)" } ?? "") + ")")
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
    static func jobArguments(_ given: [String], flags: CommandFlags) throws -> (Arguments, URL?) {
        var peek = try Arguments(given, accepting: flags.all)
        guard let r = peek.string("resume") else { return (peek, nil) }
        let dir = JobDirectory(URL(fileURLWithPath: r))
        var a = try Arguments(try dir.spec().arguments + given, accepting: flags.all)
        _ = a.string("resume")
        return (a, dir.url)
    }
}
