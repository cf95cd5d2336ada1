// `llmprune tune`: LoRA recovery on Alpaca-format data in one process, writing a peft adapter directory and
// a per-step loss CSV; `llmprune merge`: fold an adapter into a model and write a plain HF directory.
import Cluster
import ClusterPrune
import ClusterTune
import Eval
import Formats
import Foundation
import LlamaModel
import LoRA
import ModelExport
import Support
import TensorCore

enum TuneCommand {

    static func run(_ command: String, _ argv: [String]) throws {
        if command == "merge" { try merge(argv) } else { try tune(argv) }
    }

    // The tune flags: the adapter and the training recipe (LLM-Pruner's), the data and where things go.
    static let data = Flag<String>("data", "FILE", path: true,
                                   help: "Alpaca JSON array or JSON Lines of {instruction, input, output}", parse: Parse.text)
    static let out = Flag<String>("out", "DIR", path: true,
                                  help: "adapter_config.json, adapter_model.safetensors (peft), loss.csv, loss.svg",
                                  parse: Parse.text)
    static let rank = Flag<Int>("rank", "R", default: "8", help: "LoRA rank", parse: Parse.int(min: 1))
    static let alpha = Flag<Double>("alpha", "A", default: "16", help: "LoRA scale numerator (scale alpha/rank)",
                                    parse: Parse.double())
    static let dropout = Flag<Double>("dropout", "P", default: "0.05", help: "dropout on the adapters' input",
                                      parse: Parse.double())
    static let targets = Flag<String>("targets", "LIST", default: "q,k,v,o,gate,up,down", help: "adapted projections",
                                      parse: Parse.text)
    static let lr = Flag<Double>("lr", "LR", default: "1e-4", help: "peak learning rate", parse: Parse.double())
    static let epochs = Flag<Int>("epochs", "N", default: "2", help: "passes over the training split",
                                  parse: Parse.int(min: 1))
    static let steps = Flag<Int>("steps", "N", help: "stop after N optimizer steps (instead of --epochs)",
                                 parse: Parse.int(min: 1))
    static let batch = Flag<Int>("batch", "N", default: "64", help: "examples per optimizer step", parse: Parse.int(min: 1))
    static let microBatch = Flag<Int>("micro-batch", "N", default: "4", help: "examples per forward/backward",
                                      parse: Parse.int(min: 1))
    static let warmup = Flag<Int>("warmup", "N", default: "100", help: "linear warm-up steps", parse: Parse.int(min: 0))
    static let weightDecay = Flag<Double>("weight-decay", "W", default: "0", help: "AdamW weight decay",
                                          parse: Parse.double())
    static let maxGradNorm = Flag<Double>("max-grad-norm", "G", default: "1", help: "gradient clipping norm",
                                          parse: Parse.double())
    static let cutoff = Flag<Int>("cutoff", "N", default: "256",
                                  help: "tokens per example, longer ones cut (at most the model's context)",
                                  parse: Parse.int(min: 2))
    static let valSize = Flag<Int>("val-size", "N", help: "validation examples (default min(2000, records/10))",
                                   parse: Parse.int(min: 0))
    static let evalEvery = Flag<Int>("eval-every", "N", help: "validation loss every N steps", parse: Parse.int(min: 1))
    static let trainOnInputs = Switch("train-on-inputs", help: "the loss covers the prompt too")
    static let seed = Flag<Int>("seed", "S", default: "42", help: "adapter initialisation, dropout, data order",
                                parse: Parse.int(min: 0))
    static let checkpointEvery = Flag<Int>("checkpoint-every", "N", default: "10", help: "checkpoint every N steps",
                                           parse: Parse.int(min: 1))

    static let pipeline = Flag<Int>("pipeline", "P", default: "1",
        help: "layer-sharded tune: P pipeline stages, each rank holds one stage's block of layers;\n"
            + "the ranks form a P × D grid (D data-parallel replicas, mpiexec -n P·D)",
        parse: Parse.int(min: 1))

    static let tuneFlags = CommandFlags(
        own: [CommonFlags.model.info, data.info, out.info, rank.info, alpha.info, dropout.info, targets.info, lr.info,
              epochs.info, steps.info, batch.info, microBatch.info, warmup.info, weightDecay.info, maxGradNorm.info,
              cutoff.info, valSize.info, evalEvery.info, trainOnInputs.info, seed.info, checkpointEvery.info,
              pipeline.info, JobFlags.lowMemory.info, JobFlags.memPerRank.info, CommonFlags.threads.info, CommonFlags.json.info, CommonFlags.quiet.info, CommonFlags.force.info],
        groups: [EvalFlags.group, ComputeFlags.group, DistillationFlags.group, JobDirectoryFlags.group, SessionFlags.group])

    static func tune(_ given: [String]) throws {
        let start = Date()
        var (a, resumeDir) = try ClusterCommand.jobArguments(given, flags: tuneFlags)
        let modelPath = try a.required("model"), dataPath = try a.required("data")
        let out = URL(fileURLWithPath: try a.required("out")).standardizedFileURL
        let jobDirFlag = try a.optional(JobDirectoryFlags.jobDir)
        let jobDir = resumeDir ?? URL(fileURLWithPath: jobDirFlag ?? out.path + ".job").standardizedFileURL
        var o = TuneOptions(modelPath: modelPath, dataPath: dataPath, out: out, jobDir: jobDir,
                            spec: JobSpec(command: "tune", arguments: tuneFlags.recorded(given)))
        o.lora.rank = try a.value(rank)
        o.lora.alpha = try a.value(alpha)
        o.lora.dropout = try a.value(dropout)
        o.lora.targets = try LoRAConfig.parseTargets(try a.value(targets))
        o.training.learningRate = try a.value(lr)
        o.training.batchSize = try a.value(batch)
        o.training.microBatchSize = try a.value(microBatch)
        o.training.warmupSteps = try a.value(warmup)
        o.training.weightDecay = try a.value(weightDecay)
        o.training.maxGradNorm = try a.value(maxGradNorm)
        let seed = UInt64(try a.value(Self.seed))
        o.training.seed = seed
        o.lora.seed = seed
        o.epochs = try a.value(epochs)
        o.maxSteps = try a.optional(steps)
        o.cutoff = try a.value(cutoff)
        o.validationSize = try a.optional(valSize)
        o.evalEvery = try a.optional(evalEvery)
        o.checkpointEvery = try a.value(checkpointEvery)
        o.trainOnInputs = a.flag(trainOnInputs)
        o.compute = try ComputeFlags.value(&a)
        o.pipeline = try a.value(pipeline)
        o.lowMemory = a.flag(JobFlags.lowMemory)
        o.memoryBudget = try a.optional(JobFlags.memPerRank)
        let json = a.flag("json"), quiet = a.flag("quiet") || json
        o.force = a.flag("force")
        o.resume = resumeDir != nil
        o.session = try SessionFlags.options(&a, quiet: quiet)
        let evals = try EvalFlags(&a)
        o.teacher = try DistillationFlags.options(&a, model: modelPath)
        let evalSets = evals.datasets, evalWindows = evals.windows
        try CLI.applyThreads(&a)
        try a.finish()
        let config = try ModelLoader.config(path: modelPath)
        try CLI.checkContext(cutoff.info.name, o.cutoff, config)
        try checkGrid(o, layers: config.numLayers, evaluates: !evalSets.isEmpty)
        try o.lora.validate()
        try o.training.validate()
        if let resumeDir {      // a checkpoint continues only with its own teacher and KD settings
            try DistillationRecord.checkResume(jobDir: resumeDir, now: try o.teacher.map { try DistillationRecord($0) })
        }
        // A malformed file or split fails here, before any rank starts work.
        let records = try AlpacaData.load(path: dataPath)
        _ = try AlpacaData.split(count: records.count, validationSize: o.validationSize ?? min(2000, records.count / 10))
        if let budget = o.memoryBudget { try checkBudget(o, budget: budget, quiet: quiet) }
        let probe: PerplexityProbe? = evalSets.isEmpty ? nil : { weights in
            let m = try CLI.loadModel(modelPath, tokenizer: true)
            return try PruneCommand.evaluate(weights, tokenizer: m.tokenizer!, datasets: evalSets, windows: evalWindows,
                                             quiet: quiet)
        }
        guard let r = try TuneJob(options: o, perplexity: probe).run() else { return }
        let html = ReportCommand.afterJob(r.jobDir)
        if json { try CLI.printJSON(r); return }
        print(String(format: "tuned %d steps on %d rank(s)%@: loss %.4f → %.4f%@, %.1f tok/s", r.steps, r.ranks,
                     o.compute == .fp32 ? "" : ", \(o.compute.rawValue) products",
                     r.firstLoss ?? .nan, r.lastLoss ?? .nan,
                     r.validationLoss.map { String(format: ", validation %.4f → %.4f", r.validationLossBefore ?? .nan, $0) } ?? "",
                     r.tokensPerSecond))
        if let p = r.lastLossParts {
            print(String(format: "loss parts   CE %.4f → %.4f, KD %.4f → %.4f", r.firstLossParts?.ce ?? .nan, p.ce,
                         r.firstLossParts?.kd ?? .nan, p.kd))
        }
        for ds in r.perplexityBefore.keys.sorted() {
            print(String(format: "perplexity   %-10@ %10.3f → %10.3f", ds, r.perplexityBefore[ds]!, r.perplexityAfter[ds] ?? .nan))
        }
        print("adapter      \(r.out) (adapter_config.json, adapter_model.safetensors, loss.csv, loss.svg)")
        print("job          \(r.jobDir)" + (r.resumedAtStep > 0 ? " (resumed at step \(r.resumedAtStep))" : ""))
        if let html { print("report       \(html)") }
        print(String(format: "total        %.1f s", Date().timeIntervalSince(start)))
    }

    /// --pipeline must divide the ranks and leave every stage a layer; perplexity needs the whole model on a rank.
    static func checkGrid(_ o: TuneOptions, layers: Int, evaluates: Bool) throws {
        let ranks = Communicator.world.size, p = o.pipeline
        guard ranks % p == 0 else {
            throw UsageError("--pipeline \(p): does not divide the \(ranks) rank(s) (ranks = stages × data-parallel replicas)")
        }
        guard p <= layers else { throw UsageError("--pipeline \(p): more stages than the model's \(layers) layers") }
        if evaluates && o.layerSharded {
            throw UsageError("--eval: not with a layer-sharded tune (--pipeline, --low-memory, --mem-per-rank): "
                + "perplexity needs the whole model on one rank; evaluate the merged model with llmprune eval")
        }
        // The stage pass (LoRAStagePass) runs fp32 products and no teacher: refused by name rather than ignored.
        if o.layerSharded && o.teacher != nil {
            throw UsageError("--\(DistillationFlags.teacher.info.name): not with a layer-sharded tune (--pipeline, "
                + "--low-memory, --mem-per-rank) yet; distil data parallel")
        }
        if o.layerSharded && o.compute != .fp32 {
            throw UsageError("--\(ComputeFlags.compute.info.name) \(o.compute.rawValue): not with a layer-sharded tune "
                + "(--pipeline, --low-memory, --mem-per-rank) yet; the stages compute in fp32")
        }
    }

    /// The memory plan from the headers and the data, before any weight is read: refuses a job whose largest rank
    /// cannot fit `budget`, naming the smallest --pipeline (and --low-memory) that would.
    static func checkBudget(_ o: TuneOptions, budget: Int, quiet: Bool) throws {
        let (plan, inputs) = try TuneJob.memoryPlan(o, ranks: Communicator.world.size)
        let gib = MemoryPlanner.formatGiB
        guard plan.largest > budget else {
            if !quiet, Communicator.world.rank == 0 {
                FileHandle.standardError.write(Data(("llmprune: memory plan: largest rank \(gib(plan.largest)) of "
                    + "\(gib(budget)) per rank\n").utf8))
            }
            return
        }
        let worst = plan.ranks.max { $0.peakBytes < $1.peakBytes }!
        let fit = try TuneMemoryPlanner.smallestFit(inputs, budget: budget).map {
            "--pipeline \($0.pipeline)\($0.lowMemory ? " --low-memory" : "") on \($0.pipeline) rank(s) would fit"
        } ?? "no --pipeline fits (one stage per layer does not)"
        throw UsageError("--mem-per-rank \(gib(budget)): rank \(worst.rank) (stage \(worst.stage), layers "
            + "\(worst.layerStart)..<\(worst.layerEnd)) is predicted to need \(gib(worst.peakBytes)); \(fit)")
    }

    // The merge flags.
    static let adapter = Flag<String>("adapter", "DIR", path: true,
                                      help: "a peft adapter directory (adapter_config.json, adapter_model.safetensors)",
                                      parse: Parse.text)
    static let mergedOut = Flag<String>("out", "DIR", path: true, help: "the merged model (a Hugging Face directory)",
                                        parse: Parse.text)
    static let mergeFlags = CommandFlags(
        own: [CommonFlags.model.info, adapter.info, mergedOut.info, OutputFlags.dtype.info, CommonFlags.force.info],
        groups: [])

    static func merge(_ argv: [String]) throws {
        var a = try Arguments(argv, accepting: mergeFlags.all)
        let modelPath = try a.required("model"), adapterPath = try a.required("adapter"), outPath = try a.required("out")
        let force = a.flag("force")
        let dtypeFlag = try a.optional(OutputFlags.dtype)
        try a.finish()
        let dtype = try dtypeFlag ?? HFExport.defaultDType(modelPath: modelPath)
        let m = try CLI.loadModel(modelPath, tokenizer: true)
        let adapters = try PEFTFormat.load(from: URL(fileURLWithPath: adapterPath), model: m.config)
        let merged = try LoRAMerge.merged(base: m.weights, adapters: adapters)
        try HFExport.write(weights: merged, dtype: dtype, tokenizerSource: .of(m), to: URL(fileURLWithPath: outPath),
                           force: force)
        print("merged \(adapters.slots.count) adapters (r \(adapters.config.rank), alpha \(adapters.config.alpha)) into "
              + "\(outPath) (\(dtype.rawValue))")
    }
}
