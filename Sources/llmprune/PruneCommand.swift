import Cluster
import Eval
import Formats
import Foundation
import LlamaModel
import ModelExport
import Pruning
import Support
import Tokenizer

/// `llmprune plan | apply | prune`: the importance pass writes a plan; apply cuts a model by a plan and
/// exports it; prune does both, with perplexity before and after when asked.
enum PruneCommand {
    struct PhaseTimes: Encodable {
        var load = 0.0, calibration = 0.0, gradients = 0.0, scoring = 0.0, allocation = 0.0, apply = 0.0, export = 0.0
        var reconstruction = 0.0
        var evalBefore = 0.0, evalAfter = 0.0, total = 0.0
    }

    struct Report: Encodable {
        var plan: String?, out: String?
        /// The dtype of the written weights (nil: no model written).
        var dtype: String?
        var parametersBefore: Int, parametersAfter: Int, keptFraction: Double
        var ratio: Double, criterion: String, allocation: String, attentionUnit: String
        var layers: [LayerShape]
        var loss: Double?
        var perplexityBefore: [String: Double], perplexityAfter: [String: Double]
        var seconds: PhaseTimes
        var peakActivationMB: Double, peakRSSMB: Double
        /// The refit after the cut, when one ran.
        var reconstruction: ReconstructionReport?
    }

    // MARK: - flags

    static let out = Flag<String>("out", "DIR", path: true, help: "the pruned model (a Hugging Face directory)",
                                  parse: Parse.text)
    static let planFile = Flag<String>("plan", "FILE", path: true, help: "where the plan goes (prune: default DIR.plan.json)",
                                       parse: Parse.text)
    static let applyPlan = Flag<String>("plan", "FILE", path: true, help: "the plan to apply", parse: Parse.text)

    static let planFlags = CommandFlags(
        own: [CommonFlags.model.info, planFile.info, out.info, CommonFlags.threads.info, CommonFlags.json.info,
              CommonFlags.quiet.info, CommonFlags.force.info, JobFlags.microBatches.info],
        groups: [PruningFlags.group, CalibrationFlags.group])
    static let pruneFlags = CommandFlags(
        own: [CommonFlags.model.info, out.info, OutputFlags.dtype.info, planFile.info, CommonFlags.threads.info,
              CommonFlags.json.info, CommonFlags.quiet.info, CommonFlags.force.info, JobFlags.microBatches.info,
              Recipe.flag.info],
        groups: [PruningFlags.group, CalibrationFlags.group, ReconstructionFlags.group, EvalFlags.group])
    static let applyFlags = CommandFlags(
        own: [applyPlan.info, CommonFlags.model.info, out.info, OutputFlags.dtype.info, CommonFlags.force.info,
              CommonFlags.threads.info, CommonFlags.json.info],
        groups: [])

    static func evaluate(_ weights: LlamaWeights, tokenizer: BPETokenizer, datasets: [String], windows: Int?,
                         quiet: Bool) throws -> [String: Double] {
        var out: [String: Double] = [:]
        let runner = LlamaRunner(weights: weights)
        for ds in datasets {
            let file = try EvalDataset.resolve(ds)
            let ids = tokenizer.encode(try EvalDataset.text(of: file))
            out[ds] = try Perplexity.evaluate(runner: runner, ids: ids,
                                              options: PerplexityOptions(maxWindows: windows, quiet: quiet),
                                              source: file.path).perplexity
        }
        return out
    }

    // MARK: - commands

    static func plan(_ argv: [String]) throws {
        try run(argv, mode: .plan)
    }

    static func apply(_ argv: [String]) throws {
        var a = try Arguments(argv, accepting: applyFlags.all)
        let planPath = try a.required("plan"), modelPath = try a.required("model"), out = try a.required("out")
        let force = a.flag("force"), json = a.flag("json")
        let dtypeFlag = try a.optional(OutputFlags.dtype)
        try CLI.applyThreads(&a)
        try a.finish()
        var times = PhaseTimes()
        let start = Date()
        let plan = try PrunePlan.read(from: URL(fileURLWithPath: planPath))
        try refuseExisting(out, force: force)
        let dtype = try dtypeFlag ?? HFExport.defaultDType(modelPath: modelPath)
        let t0 = Date()
        let m = try CLI.loadModel(modelPath, tokenizer: false)
        times.load = Date().timeIntervalSince(t0)
        for w in try plan.check(against: m.config, modelPath: m.path) { FileHandle.standardError.write(Data("llmprune: warning: \(w)\n".utf8)) }
        if plan.reconstruction != nil {
            FileHandle.standardError.write(Data("llmprune: warning: \(planPath): the plan's model was reconstructed after the cut; apply only cuts (run prune --reconstruct to refit)\n".utf8))
        }
        var cutOnly = plan
        cutOnly.reconstruction = nil
        let (config, _, _) = try cutAndExport(plan: cutOnly, model: m, out: out, dtype: dtype, force: force,
                                              reconstruction: nil, evalSets: [], evalWindows: nil, quiet: true,
                                              times: &times)
        times.total = Date().timeIntervalSince(start)
        let r = report(plan: plan, planPath: planPath, out: out, dtype: dtype, config: config, loss: nil, before: [:],
                       after: [:], times: times, peak: 0)
        try emit(r, json: json)
    }

    static func prune(_ argv: [String]) throws {
        try run(argv, mode: .prune)
    }

    enum Mode { case plan, prune }

    static func run(_ argv: [String], mode: Mode) throws {
        guard Communicator.world.size == 1 else {
            throw UsageError("`llmprune \(mode)` runs in one process; under mpiexec use `llmprune cluster prune`")
        }
        // `--recipe NAME` (prune only) stands for flags; they are added here unless given (Recipe.swift).
        let (argv, recipe) = mode == .prune ? try Recipe.expand(argv) : (argv, nil)
        var a = try Arguments(argv, accepting: (mode == .prune ? pruneFlags : planFlags).all)
        let start = Date()
        let modelPath = try a.required("model")
        let out = mode == .prune ? try a.required("out") : a.string("out")
        let planArg = a.string("plan")
        let force = a.flag("force"), json = a.flag("json"), quiet = a.flag("quiet") || json
        let dtypeFlag = mode == .prune ? try a.optional(OutputFlags.dtype) : nil
        let evals = mode == .prune ? try EvalFlags(&a) : nil
        let evalSets = evals?.datasets ?? [], evalWindows = evals?.windows
        try CLI.applyThreads(&a)
        guard mode == .prune || planArg != nil else { throw UsageError("--plan is required (where to write the plan)") }
        let planPath = planArg ?? (out! + ".plan.json")
        // Every flag is checked against the model's header before the weights are loaded.
        let header = try ModelLoader.config(path: modelPath)
        let calibFlags = try CalibrationFlags(&a)
        let microBatches = try a.value(JobFlags.microBatches)
        var settings = try PruningFlags.settings(&a, numLayers: header.numLayers, seed: calibFlags.seed)
            .validated(config: header)
        let asParsed = settings
        if recipe == .best { settings = try Recipe.innerLayerBudget(settings, config: header, argv: argv) }
        try calibFlags.check(header)
        let recon = mode == .prune ? try ReconstructionFlags.settings(&a, config: header) : nil
        let reconWindows = try ReconstructionFlags.windows(&a, calibration: calibFlags, settings: recon)
        if recon?.eachRound == true, (settings.iterativeSteps ?? 1) < 2 {
            throw UsageError("--\(ReconstructionFlags.eachRound.info.name): needs --\(PruningFlags.iterativeSteps.info.name) 2 or more (it refits between rounds)")
        }
        try a.finish()
        if let recipe, !quiet {
            let flags = recipe.flags.map { "--\($0.name)" + ($0.value.map { " \($0)" } ?? "") }.joined(separator: " ")
            let placement = settings.layerStart != asParsed.layerStart
                ? String(format: ", layers %d:%d to %.4f%% of the parameters (LLM-Pruner's count at ratio %g)",
                         settings.layerStart, settings.layerEnd, 100 * settings.targetParams!, settings.ratio) : ""
            FileHandle.standardError.write(Data("llmprune: recipe \(recipe.rawValue): \(flags.isEmpty ? "the defaults" : flags)\(placement) (flags given on the command line win)\n".utf8))
        }
        try CLI.printParsedFlagsIfAsked(settings, calibFlags)
        _ = try calibFlags.file()
        if mode == .prune { try refuseExisting(out!, force: force) }
        let dtype = mode == .prune ? try dtypeFlag ?? HFExport.defaultDType(modelPath: modelPath) : nil
        if !force, FileManager.default.fileExists(atPath: planPath) {
            throw ExportError.outputExists(path: planPath)
        }
        var times = PhaseTimes()
        var t0 = Date()
        let m = try CLI.loadModel(modelPath, tokenizer: true)
        times.load = Date().timeIntervalSince(t0)
        t0 = Date()
        let calib = try calibFlags.draw(model: m)
        // The reconstruction's own windows (ReconstructionFlags.windows).
        let reconData = try recon.map { r in (r, try reconWindows!.draw(model: m)) }
        times.calibration = Date().timeIntervalSince(t0)
        let tokenizer = m.tokenizer!

        var before: [String: Double] = [:]
        if mode == .prune && !evalSets.isEmpty {
            t0 = Date()
            before = try evaluate(m.weights, tokenizer: tokenizer, datasets: evalSets, windows: evalWindows, quiet: quiet)
            times.evalBefore = Date().timeIntervalSince(t0)
        }
        if !quiet { FileHandle.standardError.write(Data("llmprune: importance pass on \(calib.samples.count)×\(calib.provenance.sampleLength) tokens, layers \(settings.layerStart)..<\(settings.layerEnd)\n".utf8)) }
        var (plan, pt) = try Planner.plan(model: m, settings: settings, calibration: calib, microBatches: microBatches,
                                          refit: reconData.flatMap { $0.0.eachRound ? $0 : nil })
        times.gradients = pt.gradientSeconds
        times.scoring = pt.scoringSeconds
        times.allocation = pt.allocationSeconds
        try plan.write(to: URL(fileURLWithPath: planPath))      // the plan exists before anything is cut
        var config = try plan.prunedConfig(m.config)
        var after: [String: Double] = [:]
        if mode == .prune {
            (config, after, plan) = try cutAndExport(plan: plan, model: m, out: out!, dtype: dtype ?? .f32, force: force,
                                                     reconstruction: reconData, evalSets: evalSets,
                                                     evalWindows: evalWindows, quiet: quiet, times: &times)
            if plan.reconstruction != nil { try plan.write(to: URL(fileURLWithPath: planPath)) }   // now with what was refit
        }
        times.total = Date().timeIntervalSince(start)
        let r = report(plan: plan, planPath: planPath, out: out, dtype: dtype, config: config, loss: pt.loss,
                       before: before, after: after, times: times, peak: pt.peakActivationBytes)
        try emit(r, json: json)
    }

    /// Cuts `model` by `plan`, refits o/down when `reconstruction` is given (the plan returned records it), writes
    /// the output directory in `dtype` (with the plan inside), and evaluates the model as written. The model's own
    /// weights are released after the cut (nothing reads them again).
    static func cutAndExport(plan: PrunePlan, model m: LoadedModel, out: String, dtype: TensorDType, force: Bool,
                             reconstruction: (ReconstructionSettings, CalibrationSet)?, evalSets: [String],
                             evalWindows: Int?, quiet: Bool, times: inout PhaseTimes) throws
        -> (LlamaConfig, [String: Double], PrunePlan)
    {
        var t0 = Date()
        let pruned = try Pruner.apply(plan: plan, to: m.weights)
        var plan = plan
        if let (settings, data) = reconstruction {
            let t1 = Date()
            let layers = try Reconstructor.run(original: m.weights, pruned: pruned, plan: plan, tokens: data.batchTokens,
                                               batch: data.samples.count, seqLen: data.sampleLength, settings: settings,
                                               quiet: quiet)
            plan.reconstruction = ReconstructionReport(settings: settings, calibration: data.provenance, layers: layers)
            times.reconstruction = Date().timeIntervalSince(t1)
        }
        // The pruned model now owns the arrays it shares with the original (embedding, norms, unscored layers), so
        // rounding them below changes them in place instead of copying them.
        m.weights.embed = []
        m.weights.layers = []
        m.weights.finalNorm = []
        m.weights.lmHead = nil
        times.apply = Date().timeIntervalSince(t0) - times.reconstruction
        t0 = Date()
        try HFExport.write(weights: pruned, dtype: dtype, tokenizerSource: .of(m), to: URL(fileURLWithPath: out),
                           force: force, extraFiles: ["prune_plan.json": try plan.encoded()])
        times.export = Date().timeIntervalSince(t0)
        var after: [String: Double] = [:]
        if !evalSets.isEmpty {
            // The perplexity of the model written: its weights as they read back from the `dtype` file.
            pruned.roundAsWritten(in: dtype)
            t0 = Date()
            after = try evaluate(pruned, tokenizer: m.tokenizer!, datasets: evalSets, windows: evalWindows, quiet: quiet)
            times.evalAfter = Date().timeIntervalSince(t0)
        }
        return (pruned.config, after, plan)
    }

    static func refuseExisting(_ out: String, force: Bool) throws {
        if !force, FileManager.default.fileExists(atPath: out) { throw ExportError.outputExists(path: out) }
    }

    static func report(plan: PrunePlan, planPath: String?, out: String?, dtype: TensorDType?, config: LlamaConfig,
                       loss: Double?, before: [String: Double], after: [String: Double], times: PhaseTimes,
                       peak: Int) -> Report {
        Report(plan: planPath, out: out, dtype: dtype?.rawValue, parametersBefore: plan.parametersBefore, parametersAfter: plan.parametersAfter,
               keptFraction: Double(plan.parametersAfter) / Double(plan.parametersBefore), ratio: plan.resolvedRatio,
               criterion: plan.settings.criterion.rawValue, allocation: plan.settings.allocation.rawValue,
               attentionUnit: plan.settings.attentionUnit.rawValue, layers: config.layers, loss: loss,
               perplexityBefore: before, perplexityAfter: after, seconds: times,
               peakActivationMB: Double(peak) / 1e6, peakRSSMB: CLI.peakRSSMB(), reconstruction: plan.reconstruction)
    }

    static func emit(_ r: Report, json: Bool) throws {
        if json { try CLI.printJSON(r); return }
        print(String(format: "parameters   %ld → %ld (%.2f%% kept)", r.parametersBefore, r.parametersAfter, 100 * r.keptFraction))
        print("settings     ratio \(r.ratio), \(r.criterion), \(r.allocation) allocation, \(r.attentionUnit) attention units")
        for ds in r.perplexityBefore.keys.sorted() {
            print(String(format: "perplexity   %-10@ %10.3f → %10.3f", ds, r.perplexityBefore[ds]!, r.perplexityAfter[ds] ?? .nan))
        }
        print("layer  q-heads  kv-heads    mlp")
        for (i, l) in r.layers.enumerated() {
            print(String(format: "%5d  %7d  %8d  %5d", i, l.numHeads, l.numKVHeads, l.intermediateSize))
        }
        let t = r.seconds
        print(String(format: "seconds      load %.2f, calibration %.2f, gradients %.2f, scoring %.2f, allocation %.2f, apply %.2f, reconstruction %.1f, export %.2f, eval %.1f + %.1f, total %.1f",
                     t.load, t.calibration, t.gradients, t.scoring, t.allocation, t.apply, t.reconstruction, t.export, t.evalBefore, t.evalAfter, t.total))
        if let rc = r.reconstruction, !rc.layers.isEmpty {
            func mean(_ f: (ReconstructionLayerReport) -> Double) -> Double { rc.layers.map(f).reduce(0, +) / Double(rc.layers.count) }
            print(String(format: "refit        %@ ridge %g on %d×%d tokens; mean relative error o %.4f → %.4f, down %.4f → %.4f",
                         rc.settings.method.rawValue, rc.settings.ridge, rc.settings.samples, rc.settings.sampleLength,
                         mean(\.o.errorCut), mean(\.o.errorRefit), mean(\.down.errorCut), mean(\.down.errorRefit)))
        }
        print(String(format: "memory       activations %.1f MB, peak RSS %.0f MB", r.peakActivationMB, r.peakRSSMB))
        if let p = r.plan { print("plan         \(p)") }
        if let o = r.out { print("model        \(o)" + (r.dtype.map { " (\($0))" } ?? "")) }
    }
}
