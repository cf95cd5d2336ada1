// `llmprune tune`: LoRA recovery on Alpaca-format data in one process, writing a peft adapter directory and
// a per-step loss CSV; `llmprune merge`: fold an adapter into a model and write a plain HF directory.
import Cluster
import ClusterTune
import Eval
import Foundation
import LlamaModel
import LoRA
import ModelExport
import Support

enum TuneCommand {

    static func run(_ command: String, _ argv: [String]) throws {
        if command == "merge" { try merge(argv) } else { try tune(argv) }
    }

    static let booleans: Set<String> = ["json", "quiet", "force", "train-on-inputs", "curve"]

    static func tune(_ given: [String]) throws {
        let start = Date()
        var (a, resumeDir) = try ClusterCommand.jobArguments(given, booleans: booleans)
        let modelPath = try a.required("model"), dataPath = try a.required("data")
        let out = URL(fileURLWithPath: try a.required("out")).standardizedFileURL
        let jobDir = resumeDir ?? URL(fileURLWithPath: a.string("job-dir") ?? out.path + ".job").standardizedFileURL
        func double(_ name: String, _ d: Double) throws -> Double {
            guard let s = a.string(name) else { return d }
            guard let v = Double(s) else { throw UsageError("--\(name): \"\(s)\" is not a number") }
            return v
        }
        var o = TuneOptions(modelPath: modelPath, dataPath: dataPath, out: out, jobDir: jobDir,
                            spec: JobSpec(command: "tune", arguments: ClusterCommand.withoutRuntimeFlags(given)))
        o.lora.rank = try a.int("rank", default: 8, min: 1)!
        o.lora.alpha = try double("alpha", 16)
        o.lora.dropout = try double("dropout", 0.05)
        if let t = a.string("targets") { o.lora.targets = try LoRAConfig.parseTargets(t) }
        o.training.learningRate = try double("lr", 1e-4)
        o.training.batchSize = try a.int("batch", default: 64, min: 1)!
        o.training.microBatchSize = try a.int("micro-batch", default: 4, min: 1)!
        o.training.warmupSteps = try a.int("warmup", default: 100, min: 0)!
        o.training.weightDecay = try double("weight-decay", 0)
        o.training.maxGradNorm = try double("max-grad-norm", 1)
        let seed = UInt64(try a.int("seed", default: 42, min: 0)!)
        o.training.seed = seed
        o.lora.seed = seed
        o.epochs = try a.int("epochs", default: 2, min: 1)!
        o.maxSteps = try a.int("steps", min: 1)
        o.cutoff = try a.int("cutoff", default: 256, min: 2)!
        o.validationSize = try a.int("val-size", min: 0)
        o.evalEvery = try a.int("eval-every", min: 1)
        o.checkpointEvery = try a.int("checkpoint-every", default: 10, min: 1)!
        o.trainOnInputs = a.flag("train-on-inputs")
        let json = a.flag("json"), quiet = a.flag("quiet") || json
        o.force = a.flag("force")
        o.resume = resumeDir != nil
        o.session = try ClusterCommand.sessionOptions(&a, quiet: quiet)
        let evalSets = (a.string("eval") ?? "").split(separator: ",").map(String.init)
        let evalWindows = try a.int("eval-windows", min: 1)
        for ds in evalSets { _ = try EvalDataset.resolve(ds) }
        try CLI.applyThreads(&a)
        try a.finish()
        try o.lora.validate()
        try o.training.validate()
        // A malformed file or split fails here, before any rank starts work.
        let records = try AlpacaData.load(path: dataPath)
        _ = try AlpacaData.split(count: records.count, validationSize: o.validationSize ?? min(2000, records.count / 10))
        let probe: PerplexityProbe? = evalSets.isEmpty ? nil : { weights in
            let m = try CLI.loadModel(modelPath, tokenizer: true)
            return try PruneCommand.evaluate(weights, tokenizer: m.tokenizer!, datasets: evalSets, windows: evalWindows,
                                             quiet: quiet)
        }
        guard let r = try TuneJob(options: o, perplexity: probe).run() else { return }
        let html = ReportCommand.afterJob(r.jobDir)
        if json { try CLI.printJSON(r); return }
        print(String(format: "tuned %d steps on %d rank(s): loss %.4f → %.4f%@, %.1f tok/s", r.steps, r.ranks,
                     r.firstLoss ?? .nan, r.lastLoss ?? .nan,
                     r.validationLoss.map { String(format: ", validation %.4f → %.4f", r.validationLossBefore ?? .nan, $0) } ?? "",
                     r.tokensPerSecond))
        for ds in r.perplexityBefore.keys.sorted() {
            print(String(format: "perplexity   %-10@ %10.3f → %10.3f", ds, r.perplexityBefore[ds]!, r.perplexityAfter[ds] ?? .nan))
        }
        print("adapter      \(r.out) (adapter_config.json, adapter_model.safetensors, loss.csv, loss.svg)")
        print("job          \(r.jobDir)" + (r.resumedAtStep > 0 ? " (resumed at step \(r.resumedAtStep))" : ""))
        if let html { print("report       \(html)") }
        print(String(format: "total        %.1f s", Date().timeIntervalSince(start)))
    }

    static func merge(_ argv: [String]) throws {
        var a = try Arguments(argv, booleans: ["force"])
        let modelPath = try a.required("model"), adapterPath = try a.required("adapter"), outPath = try a.required("out")
        let force = a.flag("force")
        try a.finish()
        let m = try CLI.loadModel(modelPath, tokenizer: true)
        let adapters = try PEFTFormat.load(from: URL(fileURLWithPath: adapterPath), model: m.config)
        let merged = try LoRAMerge.merged(base: m.weights, adapters: adapters)
        try HFExport.write(weights: merged, tokenizerSource: .of(m), to: URL(fileURLWithPath: outPath), force: force)
        print("merged \(adapters.slots.count) adapters (r \(adapters.config.rank), alpha \(adapters.config.alpha)) into \(outPath)")
    }
}
