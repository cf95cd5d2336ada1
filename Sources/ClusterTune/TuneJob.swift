// `llmprune tune`: LoRA recovery as a job, in one process or data-parallel under `mpiexec -n N`. Every rank loads
// the model and the data and derives the same steps (the data order depends on seed and epoch, a dropout mask on
// seed, step and micro-batch, so nothing random is ever sent). Each step's micro-batches are split across the
// ranks (contiguous, sizes differ by at most one); each rank accumulates the gradient of its micro-batches with
// the step's global loss divisor, the flat adapter gradients are summed with one MPI_Allreduce, and every rank
// applies the same clipped AdamW update — so N ranks compute the update of one rank with the same global batch.
// Rank 0 checkpoints every K steps (adapter, AdamW moments, step), and `--resume` continues bit-exactly with the
// same number of ranks. Phases: train (checkpointed every K steps) → export.
import Cluster
import Foundation
import LlamaModel
import LoRA
import ModelExport
import Support
import TensorCore
import Tokenizer

/// Phases of a tune job, in order. Loading is redone by every attempt; training ends with a checkpoint every
/// `checkpointEvery` steps and the export with the adapter written.
public enum TunePhase: String, Codable, CaseIterable, Sendable, JobPhase {
    case load, train, export

    /// The phases the job directory records as complete.
    static let checkpointed: [TunePhase] = [.train, .export]
}

public struct TuneOptions: Sendable {
    public var modelPath: String
    public var dataPath: String
    public var out: URL
    public var jobDir: URL
    public var lora = LoRAConfig()
    public var training = TrainingOptions()
    public var epochs = 2
    public var maxSteps: Int? = nil
    public var cutoff = 256
    public var validationSize: Int? = nil
    public var evalEvery: Int? = nil
    public var trainOnInputs = false
    /// Recovery by distillation from this teacher (TuneDistillation.swift); nil: cross-entropy only.
    public var teacher: TeacherOptions? = nil
    /// Checkpoint every this many steps (and at the end of training).
    public var checkpointEvery = 10
    /// Pipeline stages P (layer-sharded tune, `PipelineTune.swift`); the ranks form a P × D grid. 1: data parallel.
    public var pipeline = 1
    /// Pipeline stages keep their layers mapped in the file dtype and widen one at a time.
    public var lowMemory = false
    /// The per-rank budget the memory plan was checked against (the run then takes the planned, layer-sharded path).
    public var memoryBudget: Int? = nil
    /// The layer-sharded code path (stage passes, 1F1B, per-stage checkpoints) rather than whole-model data parallel.
    public var layerSharded: Bool { pipeline > 1 || lowMemory || memoryBudget != nil }
    public var spec: JobSpec
    public var resume = false
    public var force = false
    public var session = SessionOptions()
    /// The arithmetic of the frozen base's products on every rank (adapters and optimizer stay fp32).
    public var compute = ComputeType.fp32

    public init(modelPath: String, dataPath: String, out: URL, jobDir: URL, spec: JobSpec) {
        self.modelPath = modelPath
        self.dataPath = dataPath
        self.out = out
        self.jobDir = jobDir
        self.spec = spec
    }
}

/// Perplexity of a model on the caller's datasets (rank 0 only), before and after tuning.
public typealias PerplexityProbe = (LlamaWeights) throws -> [String: Double]

public struct TuneReport: Codable, Sendable {
    public var model: String, data: String, out: String, jobDir: String
    public var ranks: Int, epoch: Int, resumedAtStep: Int
    public var trainExamples: Int, validationExamples: Int, steps: Int, epochs: Int
    public var adapterParameters: Int
    public var firstLoss: Double?, lastLoss: Double?, validationLossBefore: Double?, validationLoss: Double?
    public var perplexityBefore: [String: Double], perplexityAfter: [String: Double]
    public var tokens: Int, seconds: Double, tokensPerSecond: Double
    /// Bytes of adapter gradients each rank handed to MPI_Allreduce over the run.
    public var allreduceBytes: Int
    public var peakRSSBytes: Int
    /// With --teacher: the teacher and KD settings, and the CE and KD parts of the first and last steps' loss.
    public var distillation: DistillationRecord? = nil
    public var firstLossParts: LossParts? = nil, lastLossParts: LossParts? = nil
    /// The frozen base's products: "fp32" or "bf16" (absent in reports written before the setting existed).
    public var compute: String? = nil
    /// Layer-sharded runs: the grid, and per rank its stage, predicted and measured peak, traffic.
    public var pipeline: PipelineTuneReport? = nil
}

/// checkpoint.json: where the latest checkpoint is and what the run had measured up to it.
struct TuneCheckpoint: Codable {
    var step: Int
    var optimizerStep: Int
    var directory: String
    var csv: String
    var firstLoss: Double?
    var lastLoss: Double?
    var validationLoss: Double?
    var validationLossBefore: Double?
    var perplexityBefore: [String: Double]
    var tokens: Int
    var seconds: Double
    var distillation: DistillationRecord? = nil
    var firstLossParts: LossParts? = nil, lastLossParts: LossParts? = nil
    /// Pipeline stages of the run that wrote it (nil: data parallel, one state file for all adapters).
    var pipeline: Int? = nil

    static let header = "step,epoch,loss,predictions,tokens,grad_norm,lr,seconds,val_loss\n"
    static var start: TuneCheckpoint {
        TuneCheckpoint(step: 0, optimizerStep: 0, directory: "", csv: header, firstLoss: nil, lastLoss: nil,
                       validationLoss: nil, validationLossBefore: nil, perplexityBefore: [:], tokens: 0, seconds: 0)
    }

    /// One optimizer step's line of loss.csv, and the running first/last loss and token count. `stats`: Σ NLL,
    /// scored predictions, tokens run (over all ranks), and with a teacher Σ T²·KL; `kd`: the distillation settings
    /// (nil: cross-entropy only), whose objective is then the step's loss, its CE and KD parts in two more columns.
    mutating func record(step k: Int, epoch: Int, stats: [Double], norm: Double, lr: Double, seconds: Double,
                         validation: String, kd: DistillationSettings? = nil) -> Double {
        let summed = LossSum(nll: stats[0], predictions: Int(stats[1]), kd: stats.count > 3 ? stats[3] : 0)
        let mean = kd?.objective(summed) ?? summed.mean
        let parts = LossParts(ce: summed.mean, kd: stats[1] > 0 && stats.count > 3 ? stats[3] / stats[1] : .nan)
        if mean.isFinite {          // a step with nothing scored has no loss
            firstLoss = firstLoss ?? mean
            lastLoss = mean
            if distillation != nil {
                firstLossParts = firstLossParts ?? parts
                lastLossParts = parts
            }
        }
        tokens += Int(stats[2])
        csv += String(format: "%d,%d,%.6f,%d,%d,%.6f,%.8g,%.3f,", k + 1, epoch, mean, Int(stats[1]), Int(stats[2]), norm,
                      lr, seconds) + validation
            + (distillation == nil ? "" : String(format: ",%.6f,%.6f", parts.ce, parts.kd)) + "\n"
        return mean
    }
}

/// What every rank derives identically from the data: the split, the tokenized examples and the plan of steps.
struct TuneData {
    var train: [TokenizedExample]
    var validation: [TokenizedExample]
    var plan: [(epoch: Int, indices: [Int])]
    /// Tokens the micro-batches of each step run (padding included).
    var stepTokens: [Int]

    init(records: [AlpacaRecord], tokenizer: BPETokenizer, options o: TuneOptions) throws {
        let (trainIdx, valIdx) = try AlpacaData.split(count: records.count,
                                                      validationSize: o.validationSize ?? min(2000, records.count / 10))
        let tok = AlpacaTokenization(tokenizer: tokenizer, cutoff: o.cutoff, trainOnInputs: o.trainOnInputs)
        train = trainIdx.map { tok.example(records[$0]) }
        validation = valIdx.map { tok.example(records[$0]) }
        plan = TrainingPlan.run(examples: train.count, epochs: o.epochs, maxSteps: o.maxSteps, options: o.training)
        let micro = o.training.microBatchSize, t = train
        stepTokens = plan.map { TrainingPlan.tokens($0.indices.map { t[$0] }, microBatchSize: micro) }
    }

    /// The examples of step k.
    func examples(_ k: Int) -> [TokenizedExample] { plan[k].indices.map { train[$0] } }
}

public final class TuneJob {
    let options: TuneOptions
    let comm: Communicator
    let dir: JobDirectory
    let probe: PerplexityProbe?

    public init(options: TuneOptions, comm: Communicator = .world, perplexity: PerplexityProbe? = nil) {
        self.options = options
        self.comm = comm
        self.dir = JobDirectory(options.jobDir)
        self.probe = perplexity
    }

    var checkpointFile: URL { dir.file("checkpoint.json") }

    /// Runs this rank's part; the report on rank 0, nil elsewhere.
    public func run() throws -> TuneReport? {
        let mode = options.layerSharded ? "pipeline \(options.pipeline) × \(comm.size / max(1, options.pipeline))" : "data-parallel"
        var so = options.session
        so.capabilities = ["tune"]
        so.resumeHint = "llmprune tune --resume \(dir.url.path)"
        let session = try ClusterSession<TunePhase>(comm: comm, dir: dir, options: so) {
            let fm = FileManager.default
            if !options.resume, !options.force, fm.fileExists(atPath: options.out.path) {
                throw ExportError.outputExists(path: options.out.path)
            }
            let a = try dir.beginAttempt(spec: options.spec, resume: options.resume, force: options.force,
                                         ranks: comm.size, mode: mode, phases: TunePhase.checkpointed.map(\.rawValue),
                                         quiet: options.session.quiet) { epoch in
                HFExport.stagingDirectory(for: options.out, tag: "e\(epoch)").path
            }
            return AttemptInfo(epoch: a.epoch, startPhase: a.startPhase, extra: ["staging": a.staging ?? ""])
        }
        return try session.run { options.layerSharded ? try trainPipeline($0) : try train($0) }
    }

    private func train(_ x: ClusterSession<TunePhase>) throws -> TuneReport? {
        let o = options
        let quiet = o.session.quiet
        func log(_ s: String) { if !quiet && x.isCoordinator { FileHandle.standardError.write(Data("tune: \(s)\n".utf8)) } }

        // Every rank: model, data, split, tokenization and the plan of steps — identical everywhere.
        x.enter(.load)
        let (m, records) = try x.span("load", .load) {
            (try ModelLoader.load(path: o.modelPath, tokenizer: true), try AlpacaData.load(path: o.dataPath))
        }
        guard let tokenizer = m.tokenizer else { throw LoRAError.invalidConfig("\(o.modelPath) has no tokenizer") }
        let data = try TuneData(records: records, tokenizer: tokenizer, options: o)
        let train = data.train, validation = data.validation, plan = data.plan
        let adapters = try LoRAAdapters.initialized(config: o.lora, model: m.config)
        let trainer = try LoRATrainer(pass: try LoRAPass(base: m.weights, adapters: adapters, compute: o.compute), options: o.training,
                                      totalSteps: plan.count)
        trainer.padId = Int32(tokenizer.padId ?? 0)
        let distillation = try o.teacher.map { try DistillationRecord($0) }
        trainer.teacher = try o.teacher.map { t in try x.span("load teacher", .load) { try t.load(student: m) } }

        // Resume: the latest checkpoint (all ranks read it from the shared job directory).
        var ck = TuneCheckpoint.start
        ck.distillation = distillation
        if distillation != nil { ck.csv = String(ck.csv.dropLast()) + ",ce,kd\n" }
        if let saved = try readCheckpoint() {
            ck = saved
            try DistillationRecord.checkResume(saved: ck.distillation, now: distillation)
            let t = try TuneCheckpointTensors.read(from: dir.file(ck.directory))
            trainer.restore(step: ck.step, parameters: t.parameters, optimizerStep: ck.optimizerStep, m: t.m, v: t.v)
            log("resuming at step \(ck.step) of \(plan.count) from \(ck.directory)")
        }
        let resumedAt = ck.step, secondsBefore = ck.seconds
        log("\(train.count) train / \(validation.count) validation examples, \(plan.count) steps of \(o.training.batchSize) "
            + "(micro-batch \(o.training.microBatchSize)) over \(comm.size) rank(s), \(adapters.parameterCount) adapter parameters")
        if ck.step == 0 && x.isCoordinator {
            if let probe { ck.perplexityBefore = try x.span("eval", .train) { try probe(m.weights) } }
            if !validation.isEmpty { ck.validationLossBefore = Optional(try trainer.evaluate(validation).mean).flatMap { $0.isFinite ? $0 : nil } }
        }

        let micro = o.training.microBatchSize, stepTokens = data.stepTokens
        let bar = ProgressBar(total: stepTokens.reduce(0, +), label: "tune", unit: "tok", quiet: quiet || !x.isCoordinator)
        bar.advance(by: stepTokens.prefix(ck.step).reduce(0, +))
        var allreduceBytes = 0
        try x.sync(.train)
        let t0 = Date()
        for k in ck.step..<plan.count {
            x.stallIfAsked("step\(k)")
            let st = Date()
            let (local, mine, divisor) = Self.share(data.examples(k), microBatch: micro, rank: comm.rank, size: comm.size)
            let (loss, tokens) = try x.span("forward+backward", .train) {
                try trainer.accumulate(local, lossDivisor: divisor, firstMicroBatch: mine.lowerBound)
            }
            if comm.size > 1 {
                // Marked as a wait: a rank that never gets here is then the one behind (the progress deadline).
                try x.span("allreduce", .train) { try x.waiting(.train) {
                    try x.charge(.train) {
                        try trainer.pass.withFlatGradients { g in
                            var buf = Array(g)
                            try comm.allReduceSum(&buf)
                            _ = buf.withUnsafeBufferPointer { memcpy(g.baseAddress!, $0.baseAddress!, 4 * g.count) }
                        }
                    }
                    allreduceBytes += 4 * adapters.parameterCount
                } }
            }
            var stats = [loss.nll, Double(loss.predictions), Double(tokens), loss.kd]
            try comm.allReduceSum(&stats)
            let (norm, lr) = trainer.applyUpdate()
            var val = ""
            if let e = o.evalEvery, (k + 1) % e == 0, !validation.isEmpty {
                let v = try trainer.evaluate(validation).mean
                ck.validationLoss = v.isFinite ? v : nil
                val = String(format: "%.6f", v)
            }
            let mean = ck.record(step: k, epoch: plan[k].epoch, stats: stats, norm: norm, lr: lr,
                                 seconds: Date().timeIntervalSince(st), validation: val, kd: trainer.teacher?.settings)
            bar.detail = String(format: "step %d/%d loss %.4f", k + 1, plan.count, mean)
            bar.advance(by: stepTokens[k])
            if !x.isCoordinator, (k + 1) % 5 == 0 || k + 1 == plan.count {
                x.progress(.train, k + 1, plan.count, String(format: "loss %.4f", mean))
            }
            if (k + 1) % o.checkpointEvery == 0 || k + 1 == plan.count {
                ck.step = k + 1
                ck.optimizerStep = trainer.optimizer.step
                ck.seconds = secondsBefore + Date().timeIntervalSince(t0)
                if x.isCoordinator {
                    try x.span("checkpoint", .train) {
                        let tmp = try beginCheckpoint(ck)
                        try TuneCheckpointTensors(parameters: adapters.parameters, m: trainer.optimizer.m,
                                                  v: trainer.optimizer.v).write(to: tmp)
                        try commitCheckpoint(&ck)
                    }
                }
            }
        }
        bar.finish()
        let seconds = Date().timeIntervalSince(t0)
        guard let events = try endTraining(x) else { return nil }
        if o.evalEvery == nil || plan.count % o.evalEvery! != 0, !validation.isEmpty {
            let v = try trainer.evaluate(validation).mean
            ck.validationLoss = v.isFinite ? v : nil
        }
        var after: [String: Double] = [:]
        if let probe {
            after = try x.span("eval", .export) { try probe(try LoRAMerge.merged(base: m.weights, adapters: adapters)) }
        }
        x.enter(.export)
        try exportAdapter(x, adapters, csv: ck.csv)
        let report = TuneReport(
            model: o.modelPath, data: o.dataPath, out: o.out.path, jobDir: dir.url.path, ranks: comm.size, epoch: x.epoch,
            resumedAtStep: resumedAt, trainExamples: train.count, validationExamples: validation.count,
            steps: plan.count, epochs: (plan.last?.epoch ?? -1) + 1, adapterParameters: adapters.parameterCount,
            firstLoss: ck.firstLoss, lastLoss: ck.lastLoss, validationLossBefore: ck.validationLossBefore,
            validationLoss: ck.validationLoss, perplexityBefore: ck.perplexityBefore, perplexityAfter: after,
            tokens: ck.tokens, seconds: seconds,
            tokensPerSecond: seconds > 0 ? Double(stepTokens[resumedAt...].reduce(0, +)) / seconds : 0,
            allreduceBytes: allreduceBytes, peakRSSBytes: peakRSSBytes(), distillation: ck.distillation,
            firstLossParts: ck.firstLossParts, lastLossParts: ck.lastLossParts,
            compute: o.compute.rawValue)
        try finishJob(x, report, events: events)
        return report
    }

    /// export: the peft adapter, the loss curve (CSV and SVG), into a staging directory renamed into place; then the
    /// export rendezvous (coordinator side).
    func exportAdapter(_ x: ClusterSession<TunePhase>, _ adapters: LoRAAdapters, csv: String) throws {
        let staging = URL(fileURLWithPath: x.attempt.extra["staging"] ?? "")
        try? FileManager.default.removeItem(at: staging)
        try FileManager.default.createDirectory(at: staging, withIntermediateDirectories: true)
        try PEFTFormat.write(adapters, to: staging, baseModel: options.modelPath)
        try AtomicFile.write(Data(csv.utf8), to: staging.appendingPathComponent("loss.csv"))
        try AtomicFile.write(Data(LossChart.svg(csv: csv).utf8), to: staging.appendingPathComponent("loss.svg"))
        try HFExport.commit(staging: staging, to: options.out, force: true)
        try x.sync(.export)
    }

    /// report.json, trace.json, and the job marked complete (coordinator).
    func finishJob(_ x: ClusterSession<TunePhase>, _ report: TuneReport, events: [TraceEvent]) throws {
        try dir.write(report, to: dir.file("report.json"))
        let names = Dictionary(uniqueKeysWithValues: (0..<comm.size).map { ($0, "rank \($0)") })
        try AtomicFile.write(try ChromeTrace.encode(events: events, rankNames: names, origin: x.trace.origin), to: dir.file("trace.json"))
        try dir.complete(TunePhase.export.rawValue, epoch: x.epoch)
        try dir.end(epoch: x.epoch, outcome: "complete")
    }

    /// The latest checkpoint.json, if any (every rank reads it from the shared job directory).
    func readCheckpoint() throws -> TuneCheckpoint? {
        guard FileManager.default.fileExists(atPath: checkpointFile.path) else { return nil }
        let ck = try dir.read(TuneCheckpoint.self, from: checkpointFile)
        let mine = options.layerSharded ? options.pipeline : nil
        if ck.pipeline != mine {
            let was = ck.pipeline.map { "a layer-sharded run with --pipeline \($0)" } ?? "a data-parallel run"
            let now = mine.map { "--pipeline \($0)" } ?? "data parallel"
            throw JobError.corrupt(path: checkpointFile.path, reason: "written by \(was), this run is \(now): resume "
                + "with the stages it was written with (the number of data-parallel ranks may change)")
        }
        return ck
    }

    /// A checkpoint is written into .checkpoint-<step>.tmp/ (created here, empty), then `commitCheckpoint` renames it
    /// into place, points checkpoint.json at it and removes the previous one: a crash at any instant leaves a
    /// complete checkpoint named.
    func beginCheckpoint(_ ck: TuneCheckpoint) throws -> URL {
        let tmp = dir.file(".checkpoint-\(ck.step).tmp")
        try? FileManager.default.removeItem(at: tmp)
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: false)
        return tmp
    }

    func commitCheckpoint(_ ck: inout TuneCheckpoint) throws {
        let name = "checkpoint-\(ck.step)"
        let tmp = dir.file(".\(name).tmp"), final = dir.file(name)
        let fm = FileManager.default
        try? fm.removeItem(at: final)
        guard rename(tmp.path, final.path) == 0 else {
            throw JobError.corrupt(path: final.path, reason: "cannot rename the checkpoint into place")
        }
        let previous = ck.directory
        ck.directory = name
        try dir.write(ck, to: checkpointFile)
        if !previous.isEmpty, previous != name { try? fm.removeItem(at: dir.file(previous)) }
    }

    /// The end of the train phase: a worker hands its trace to the coordinator and waits for the export (nil);
    /// the coordinator gathers every rank's trace events and marks training complete.
    func endTraining(_ x: ClusterSession<TunePhase>) throws -> [TraceEvent]? {
        guard x.isCoordinator else {
            try x.finish(.train, payload: try JSONEncoder().encode(x.trace.recorded))    // for the timeline
            try x.sync(.export)
            return nil
        }
        var events = x.trace.recorded
        for (_, payload) in x.collect(.train) {
            if let payload, let e = try? JSONDecoder().decode([TraceEvent].self, from: payload) { events += e }
        }
        try dir.complete(TunePhase.train.rawValue, epoch: x.epoch)
        return events
    }

    /// Data parallelism within a step: the examples of `rank`'s contiguous share of the step's micro-batches, that
    /// share's micro-batch indices (step-wide: they key the dropout masks), and the loss divisor of the whole step.
    static func share(_ examples: [TokenizedExample], microBatch micro: Int, rank: Int, size: Int)
        -> (local: [TokenizedExample], microBatches: Range<Int>, divisor: Double)
    {
        let nMicro = (examples.count + micro - 1) / micro
        let mine = shard(rank: rank, size: size, count: nMicro)
        let local = Array(examples[min(examples.count, mine.lowerBound * micro)..<min(examples.count, mine.upperBound * micro)])
        return (local, mine, Double(examples.reduce(0) { $0 + $1.predictionCount }))
    }

    /// The contiguous range of `rank` among `size` for `count` items (sizes differ by at most one).
    static func shard(rank: Int, size: Int, count n: Int) -> Range<Int> {
        (rank * n / size)..<((rank + 1) * n / size)
    }
}
