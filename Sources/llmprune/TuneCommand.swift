// `llmprune tune`: LoRA recovery on Alpaca-format data in one process, writing a peft adapter directory and
// a per-step loss CSV; `llmprune merge`: fold an adapter into a model and write a plain HF directory.
import Foundation
import LlamaModel
import LoRA
import Pruning
import Support

enum TuneCommand {
    static let usage = """
    usage: llmprune tune --model PATH --data FILE --out DIR [flags]
      --rank 8 --alpha 16 --dropout 0.05 --targets q,k,v,o,gate,up,down   adapter (LLM-Pruner's recipe)
      --lr 1e-4 --epochs 2 | --steps N --batch 64 --micro-batch 4 --warmup 100 --weight-decay 0 --max-grad-norm 1
      --cutoff 256 --val-size N (default min(2000, records/10)) --eval-every N --train-on-inputs --seed 42
      --threads T --quiet --json --force
    FILE: Alpaca JSON array or JSON Lines of {instruction, input, output}. DIR gets adapter_config.json,
    adapter_model.safetensors (peft) and loss.csv.
           llmprune merge --model PATH --adapter DIR --out DIR [--force]   W += (alpha/r)·B·A, HF directory out
    """

    static func run(_ command: String, _ argv: [String]) throws {
        if argv.contains("--help") || argv.contains("-h") { print(usage); return }
        if command == "merge" { try merge(argv) } else { try tune(argv) }
    }

    struct Report: Encodable {
        var model: String, data: String, out: String
        var trainExamples: Int, validationExamples: Int, steps: Int, epochs: Int
        var adapterParameters: Int
        var firstLoss: Double?, lastLoss: Double?, validationLossBefore: Double?, validationLoss: Double?
        var tokens: Int, seconds: Double, tokensPerSecond: Double
        var peakRSSMB: Double
    }

    static func tune(_ argv: [String]) throws {
        var a = try Arguments(argv, booleans: ["json", "quiet", "force", "train-on-inputs"])
        let modelPath = try a.required("model"), dataPath = try a.required("data"), outPath = try a.required("out")
        func double(_ name: String, _ d: Double) throws -> Double {
            guard let s = a.string(name) else { return d }
            guard let v = Double(s) else { throw UsageError("--\(name): \"\(s)\" is not a number") }
            return v
        }
        var lora = LoRAConfig()
        lora.rank = try a.int("rank", default: 8, min: 1)!
        lora.alpha = try double("alpha", 16)
        lora.dropout = try double("dropout", 0.05)
        if let t = a.string("targets") { lora.targets = try LoRAConfig.parseTargets(t) }
        var o = TrainingOptions()
        o.learningRate = try double("lr", 1e-4)
        o.batchSize = try a.int("batch", default: 64, min: 1)!
        o.microBatchSize = try a.int("micro-batch", default: 4, min: 1)!
        o.warmupSteps = try a.int("warmup", default: 100, min: 0)!
        o.weightDecay = try double("weight-decay", 0)
        o.maxGradNorm = try double("max-grad-norm", 1)
        let seed = try a.int("seed", default: 42, min: 0)!
        o.seed = UInt64(seed)
        lora.seed = UInt64(seed)
        let epochs = try a.int("epochs", default: 2, min: 1)!
        let maxSteps = try a.int("steps", min: 1)
        let cutoff = try a.int("cutoff", default: 256, min: 2)!
        let valSize = try a.int("val-size", min: 0)
        let evalEvery = try a.int("eval-every", min: 1)
        let json = a.flag("json"), quiet = a.flag("quiet") || json, force = a.flag("force")
        let trainOnInputs = a.flag("train-on-inputs")
        try CLI.applyThreads(&a)
        try a.finish()
        try lora.validate()
        try o.validate()
        let out = URL(fileURLWithPath: outPath)
        if !force, FileManager.default.fileExists(atPath: out.appendingPathComponent(PEFTFormat.weightsFile).path) {
            throw UsageError("\(outPath) already holds an adapter (use --force to replace it)")
        }
        func log(_ s: String) { if !quiet { FileHandle.standardError.write((s + "\n").data(using: .utf8)!) } }

        let records = try AlpacaData.load(path: dataPath)
        let m = try CLI.loadModel(modelPath, tokenizer: true)
        guard let tokenizer = m.tokenizer else { throw UsageError("\(modelPath) has no tokenizer") }
        let vSize = valSize ?? min(2000, records.count / 10)
        let (trainIdx, valIdx) = try AlpacaData.split(count: records.count, validationSize: vSize)
        let tok = AlpacaTokenization(tokenizer: tokenizer, cutoff: cutoff, trainOnInputs: trainOnInputs)
        let train = trainIdx.map { tok.example(records[$0]) }, validation = valIdx.map { tok.example(records[$0]) }
        let unscored = train.filter { $0.predictionCount == 0 }.count
        if unscored > 0 {
            log("tune: warning: \(unscored) of \(train.count) training examples have no trained tokens "
                + "(the prompt reaches --cutoff \(cutoff)); they add no gradient")
        }
        let plan = TrainingPlan.run(examples: train.count, epochs: epochs, maxSteps: maxSteps, options: o)
        let stepExamples = plan.map { step in step.indices.map { train[$0] } }
        let totalTokens = stepExamples.reduce(0) { $0 + TrainingPlan.tokens($1, microBatchSize: o.microBatchSize) }

        let adapters = try LoRAAdapters.initialized(config: lora, model: m.config)
        let trainer = try LoRATrainer(pass: try LoRAPass(base: m.weights, adapters: adapters), options: o,
                                      totalSteps: plan.count)
        trainer.padId = Int32(tokenizer.padId ?? 0)
        log("tune: \(train.count) train / \(validation.count) validation examples, \(plan.count) steps of \(o.batchSize) "
            + "(micro-batch \(o.microBatchSize)), \(adapters.parameterCount) adapter parameters (r \(lora.rank), "
            + "targets \(lora.orderedTargets.map(\.rawValue).joined(separator: ",")))")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        let csvURL = out.appendingPathComponent("loss.csv")
        var csv = "step,epoch,loss,predictions,tokens,grad_norm,lr,seconds,val_loss\n"
        func evaluate() throws -> Double? {
            validation.isEmpty ? nil : try trainer.evaluate(validation).mean
        }

        let valBefore = try evaluate()
        if let v = valBefore { log(String(format: "tune: validation loss before training %.4f", v)) }
        let bar = ProgressBar(total: totalTokens, label: "tune", unit: "tok", quiet: quiet)
        var first: Double?, last: Double?, valLoss: Double?
        let t0 = Date()
        for (k, examples) in stepExamples.enumerated() {
            let r = try trainer.trainStep(examples)
            first = first ?? r.loss.mean
            last = r.loss.mean
            var val = ""
            if let e = evalEvery, (k + 1) % e == 0, let v = try evaluate() {
                valLoss = v
                val = String(format: "%.6f", v)
            }
            csv += String(format: "%d,%d,%.6f,%d,%d,%.6f,%.8g,%.3f,", r.step, plan[k].epoch, r.loss.mean, r.loss.predictions,
                          r.tokens, r.gradNorm, r.learningRate, r.seconds) + val + "\n"
            try AtomicFile.write(Data(csv.utf8), to: csvURL)
            bar.detail = String(format: "step %d/%d loss %.4f", r.step, plan.count, r.loss.mean)
            bar.advance(by: r.tokens)
        }
        bar.finish()
        let seconds = Date().timeIntervalSince(t0)
        if evalEvery == nil || plan.count % evalEvery! != 0 { valLoss = try evaluate() ?? valLoss }
        try PEFTFormat.write(adapters, to: out, baseModel: modelPath)
        let report = Report(model: modelPath, data: dataPath, out: outPath, trainExamples: train.count,
                            validationExamples: validation.count, steps: plan.count, epochs: (plan.last?.epoch ?? -1) + 1,
                            adapterParameters: adapters.parameterCount, firstLoss: first, lastLoss: last,
                            validationLossBefore: valBefore, validationLoss: valLoss, tokens: totalTokens, seconds: seconds,
                            tokensPerSecond: seconds > 0 ? Double(totalTokens) / seconds : 0, peakRSSMB: CLI.peakRSSMB())
        if json { try CLI.printJSON(report); return }
        print(String(format: "tuned %d steps: loss %.4f → %.4f%@, %.1f tok/s, adapter in %@", plan.count, first ?? .nan,
                     last ?? .nan, valLoss.map { String(format: ", validation %.4f → %.4f", valBefore ?? .nan, $0) } ?? "",
                     report.tokensPerSecond, outPath))
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
