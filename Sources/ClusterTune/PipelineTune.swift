// `llmprune tune --pipeline P` under `mpiexec -n P·D`: layer-sharded LoRA recovery (docs/pipeline.md, "LoRA tune").
// The ranks form a grid: world rank = replica · P + stage. Every rank of stage s holds only the block of layers
// `PipelinePartition.balanced` gives s (the first stage also the embedding, the last the final norm and head; with
// --low-memory the block stays mapped in its file dtype and is widened one layer at a time), and the adapters of
// that block with their AdamW moments. Each replica d runs its share of each step's micro-batches (as a
// data-parallel rank does) through its P stages with a 1F1B schedule (`OneFOneB`); the stage's adapter gradients
// are summed over the D ranks of the stage (MPI_Allreduce on a sub-communicator), the squared norms over the P
// stages (for torch's global-norm clipping), and every stage takes the same AdamW step on its own adapters. Every
// rank derives the same data, plan and dropout masks (seed, step, micro-batch, layer), so nothing but activations,
// their gradients and the reductions moves — and the update is the single-process update.
// Checkpoints: one file per stage (`stage-<s>.safetensors`: the stage's adapters and moments) in the same
// checkpoint-<step>/ directory, committed by rank 0 after a barrier; `--resume` needs the same P (any D).
import Cluster
import Foundation
import LlamaModel
import LoRA
import Support
import Tokenizer

/// Where a rank sits in the P × D grid (world rank = replica · P + stage: a pipeline's stages are neighbours).
struct TuneGrid {
    let stages: Int, replicas: Int, stage: Int, replica: Int

    init(ranks: Int, pipeline p: Int, rank: Int) throws {
        guard p >= 1, ranks % p == 0 else {
            throw LoRAError.invalidConfig("--pipeline \(p) does not divide the \(ranks) ranks (ranks = stages × replicas)")
        }
        stages = p
        replicas = ranks / p
        stage = rank % p
        replica = rank / p
    }
}

/// Per-run figures of a layer-sharded tune (report.json).
public struct PipelineTuneReport: Codable, Sendable {
    public struct Rank: Codable, Sendable {
        public var rank: Int, stage: Int, replica: Int, layerStart: Int, layerEnd: Int
        /// The planner's prediction (before loading) and this rank's VmHWM at the end.
        public var predictedPeakBytes: Int, measuredPeakBytes: Int
        public var activationPeakBytes: Int
        /// Bytes this rank handed to MPI (point-to-point and reductions) per optimizer step, mean over the training
        /// steps of this attempt (the final gather of the adapters excluded).
        public var bytesPerStep: Int
    }
    public var stages: Int, replicas: Int
    public var lowMemory: Bool
    public var ranks: [Rank]
}

/// The 1F1B schedule of one pipeline (PipeDream-Flush, as Megatron-LM's non-interleaved schedule): stage s runs
/// min(P − 1 − s, M) warm-up forwards, then pairs of one forward and one backward, then the remaining backwards.
/// Backwards run in micro-batch order 0, 1, …, so each stage adds its gradients in the order one process does.
/// Messages (world ranks of the same replica, tags 201 activations, 202 gradients): in the steady state a stage
/// sends its output and receives its output gradient from s+1 in one `exchange`, and sends its input gradient
/// and receives the next input from s−1 in one `exchange`, so no pair of blocking calls waits on each other.
struct OneFOneB {
    let comm: Communicator
    let grid: TuneGrid
    let pass: LoRAStagePass
    static let forwardTag = 201, backwardTag = 202

    var isFirst: Bool { grid.stage == 0 }
    var isLast: Bool { grid.stage == grid.stages - 1 }
    var previous: Int { comm.rank - 1 }
    var next: Int { comm.rank + 1 }

    /// Forward and backward of `batches` (this replica's micro-batches of a step, the first being step-wide
    /// micro-batch `first`); returns the NLL sum (last stage; zero elsewhere). `wait` wraps every blocking
    /// transfer (the job marks the rank as waiting on a neighbour).
    func train(_ batches: [TokenBatch], divisor: Double, seed: (Int) -> UInt64,
               wait: (() throws -> [Float]?) throws -> [Float]?) throws -> LossSum {
        let M = batches.count, warm = min(grid.stages - 1 - grid.stage, M), steady = M - warm
        let d = pass.stage.config.hiddenSize
        func count(_ k: Int) -> Int { batches[k].batch * batches[k].seqLen * d }
        var loss = LossSum(nll: 0, predictions: 0)
        func forward(_ k: Int, _ input: [Float]?) throws -> [Float]? {
            let (out, l) = try pass.forward(id: k, batch: batches[k], input: input, lossDivisor: divisor, dropoutSeed: seed(k))
            if let l { loss = loss + l }
            return out
        }
        func receiveInput(_ k: Int) throws -> [Float]? {
            isFirst ? nil : try wait { try comm.receiveFloats(count(k), from: previous, tag: Self.forwardTag) }
        }
        for k in 0..<warm {
            let y = try forward(k, try receiveInput(k))!
            _ = try wait { try comm.send(y, to: next, tag: Self.forwardTag); return nil }
        }
        var input = steady > 0 ? try receiveInput(warm) : nil
        for i in 0..<steady {
            let kf = warm + i
            let y = try forward(kf, input)
            let dy = isLast ? nil : try wait {
                try comm.exchange(y!, to: next, tag: Self.forwardTag, receive: count(i), from: next, tag: Self.backwardTag)
            }
            let dx = try pass.backward(id: i, outputGradient: dy)
            guard let dx else { input = nil; continue }          // first stage: nothing goes back
            if i == steady - 1 {
                _ = try wait { try comm.send(dx, to: previous, tag: Self.backwardTag); return nil }
            } else {
                input = try wait {
                    try comm.exchange(dx, to: previous, tag: Self.backwardTag, receive: count(kf + 1), from: previous,
                                      tag: Self.forwardTag)
                }
            }
        }
        for k in steady..<M {
            let dy = isLast ? nil : try wait { try comm.receiveFloats(count(k), from: next, tag: Self.backwardTag) }
            if let dx = try pass.backward(id: k, outputGradient: dy) {
                _ = try wait { try comm.send(dx, to: previous, tag: Self.backwardTag); return nil }
            }
        }
        return loss
    }

    /// Forward only, no dropout: the NLL sum of `batches` on the last stage (zero elsewhere). A chain of blocking
    /// sends in one direction.
    func evaluate(_ batches: [TokenBatch]) throws -> LossSum {
        let d = pass.stage.config.hiddenSize
        var loss = LossSum(nll: 0, predictions: 0)
        for b in batches {
            let input = isFirst ? nil : try comm.receiveFloats(b.batch * b.seqLen * d, from: previous, tag: Self.forwardTag)
            let (out, l) = try pass.forward(id: -1, batch: b, input: input, lossDivisor: nil, dropoutSeed: nil)
            if let l { loss = loss + l }
            if let out, !isLast { try comm.send(out, to: next, tag: Self.forwardTag) }
        }
        return loss
    }
}

extension TuneData {
    /// The planner's view of the run: the largest micro-batch, micro-batches per replica, the data's bytes.
    func memoryInputs(config: LlamaConfig, fileBytesPerParameter f: Double, options o: TuneOptions, ranks: Int,
                      records: [AlpacaRecord]) -> TuneMemoryInputs {
        let micro = o.training.microBatchSize
        var batch = 1, seqLen = 2, perStep = 1
        for k in plan.indices {
            let ex = examples(k)
            perStep = max(perStep, (ex.count + micro - 1) / micro)
            for lo in stride(from: 0, to: ex.count, by: micro) {
                let mb = ex[lo..<min(lo + micro, ex.count)]
                seqLen = max(seqLen, mb.map(\.ids.count).max() ?? 0)
                batch = max(batch, mb.count)
            }
        }
        let replicas = max(1, ranks / max(1, o.pipeline))
        let text = records.reduce(0) { $0 + $1.instruction.utf8.count + $1.input.utf8.count + $1.output.utf8.count }
        let tokens = (train + validation).reduce(0) { $0 + $1.ids.count }
        return TuneMemoryInputs(config: config, fileBytesPerParameter: f, pipeline: o.pipeline, ranks: ranks,
                                lowMemory: o.lowMemory, lora: o.lora, microBatch: batch, seqLen: seqLen,
                                microBatchesPerReplica: (perStep + replicas - 1) / replicas,
                                dataBytes: 2 * text + 8 * tokens)
    }
}

extension TuneJob {
    static let gatherTag = 203

    func trainPipeline(_ x: ClusterSession<TunePhase>) throws -> TuneReport? {
        let o = options, quiet = o.session.quiet
        func log(_ s: String) { if !quiet && x.isCoordinator { FileHandle.standardError.write(Data("tune: \(s)\n".utf8)) } }
        let grid = try TuneGrid(ranks: comm.size, pipeline: o.pipeline, rank: comm.rank)
        let P = grid.stages, D = grid.replicas

        // Every rank: config, data and plan (identical everywhere), the memory plan from the headers, then its stage.
        x.enter(.load)
        let config = try ModelLoader.config(path: o.modelPath)
        let blocks = try PipelinePartition.balanced(config: config, stages: P)
        let layers = blocks[grid.stage]
        let (data, tokenizer, memory, _) = try Self.planned(o, ranks: comm.size)
        let stage = try x.span("load", .load) {
            try ModelLoader.loadStage(path: o.modelPath, layers: layers, embedding: grid.stage == 0,
                                      head: grid.stage == P - 1, tokenizer: false, lowMemory: o.lowMemory)
        }
        let adapters = try LoRAAdapters.initialized(config: o.lora, model: config)
        let stagePass = try LoRAStagePass(stage: stage, adapters: adapters)
        let trainer = try LoRAStageTrainer(stagePass: stagePass, options: o.training, totalSteps: data.plan.count)
        trainer.padId = Int32(tokenizer.padId ?? 0)
        // The D ranks holding this stage (gradient sums), and the P stages of this replica (norms).
        let stageGroup = try comm.split(color: grid.stage, key: grid.replica)
        let pipeGroup = try comm.split(color: grid.replica, key: grid.stage)
        let schedule = OneFOneB(comm: comm, grid: grid, pass: stagePass)
        func traffic() -> Int { comm.traffic.total + stageGroup.traffic.total + pipeGroup.traffic.total }

        var ck = TuneCheckpoint.start
        ck.pipeline = P
        if let saved = try readCheckpoint() {
            ck = saved
            let t = try TuneCheckpointTensors.read(from: dir.file(ck.directory), name: TuneCheckpointTensors.stageFileName(grid.stage))
            try trainer.restore(step: ck.step, parameters: t.parameters, optimizerStep: ck.optimizerStep, m: t.m, v: t.v)
            log("resuming at step \(ck.step) of \(data.plan.count) from \(ck.directory)")
        }
        let resumedAt = ck.step, secondsBefore = ck.seconds
        let micro = o.training.microBatchSize, plan = data.plan
        log("\(data.train.count) train / \(data.validation.count) validation examples, \(plan.count) steps of "
            + "\(o.training.batchSize) (micro-batch \(micro)) on \(P) stage(s) × \(D) replica(s), "
            + "\(adapters.parameterCount) adapter parameters; predicted peak \(memory.largest >> 20) MiB per rank")
        func microBatches(_ ex: [TokenizedExample]) throws -> [TokenBatch] {
            try TokenBatch.microBatches(ex, size: micro, padId: trainer.padId)
        }
        // Validation loss: replica 0's pipeline, the result summed to every rank.
        func validationLoss() throws -> Double? {
            guard !data.validation.isEmpty else { return nil }
            let l = grid.replica == 0 ? try schedule.evaluate(try microBatches(data.validation)) : LossSum(nll: 0, predictions: 0)
            var s = [l.nll, Double(l.predictions)]
            try comm.allReduceSum(&s)
            let v = s[1] > 0 ? s[0] / s[1] : Double.nan
            return v.isFinite ? v : nil
        }
        if ck.step == 0 { ck.validationLossBefore = try validationLoss() }

        let bar = ProgressBar(total: data.stepTokens.reduce(0, +), label: "tune", unit: "tok", quiet: quiet || !x.isCoordinator)
        bar.advance(by: data.stepTokens.prefix(ck.step).reduce(0, +))
        var allreduceBytes = 0
        try x.sync(.train)
        let t0 = Date(), trafficBefore = traffic()
        for k in ck.step..<plan.count {
            x.stallIfAsked("step\(k)")
            let st = Date()
            let (local, mine, divisor) = Self.share(data.examples(k), microBatch: micro, rank: grid.replica, size: D)
            let batches = divisor > 0 ? try microBatches(local) : []      // nothing scored: no gradient
            let loss = try x.span("1f1b", .train) {
                try schedule.train(batches, divisor: divisor, seed: { trainer.dropoutSeed(microBatch: mine.lowerBound + $0) }) { body in
                    try x.waiting(.train) { try body() }
                }
            }
            try x.span("allreduce", .train) { try x.waiting(.train) {
                if D > 1 {
                    try trainer.withStageGradients { g in
                        var buf = Array(g)
                        try stageGroup.allReduceSum(&buf)
                        _ = buf.withUnsafeBufferPointer { memcpy(g.baseAddress!, $0.baseAddress!, 4 * g.count) }
                        allreduceBytes += 4 * g.count
                    }
                }
            } }
            var squares = [trainer.squaredGradientNorm()]
            try pipeGroup.allReduceSum(&squares)
            let norm = squares[0].squareRoot()
            let tokens = grid.stage == P - 1 ? batches.reduce(0) { $0 + $1.batch * $1.seqLen } : 0
            var stats = [loss.nll, Double(loss.predictions), Double(tokens)]
            try comm.allReduceSum(&stats)
            let lr = trainer.applyUpdate(totalNorm: norm)
            var val = ""
            if let e = o.evalEvery, (k + 1) % e == 0, let v = try validationLoss() {
                ck.validationLoss = v
                val = String(format: "%.6f", v)
            }
            let mean = ck.record(step: k, epoch: plan[k].epoch, stats: stats, norm: norm, lr: lr,
                                 seconds: Date().timeIntervalSince(st), validation: val)
            bar.detail = String(format: "step %d/%d loss %.4f", k + 1, plan.count, mean)
            bar.advance(by: data.stepTokens[k])
            if !x.isCoordinator, (k + 1) % 5 == 0 || k + 1 == plan.count {
                x.progress(.train, k + 1, plan.count, String(format: "loss %.4f", mean))
            }
            if (k + 1) % o.checkpointEvery == 0 || k + 1 == plan.count {
                ck.step = k + 1
                ck.optimizerStep = trainer.optimizer.step
                ck.seconds = secondsBefore + Date().timeIntervalSince(t0)
                try x.span("checkpoint", .train) {
                    // Rank 0 makes the directory, replica 0 of every stage writes its file, rank 0 commits.
                    let tmp = x.isCoordinator ? try beginCheckpoint(ck) : dir.file(".checkpoint-\(ck.step).tmp")
                    try comm.barrier()
                    if grid.replica == 0 {
                        try TuneCheckpointTensors(parameters: trainer.stageParameters, m: trainer.optimizer.m,
                                                  v: trainer.optimizer.v)
                            .write(to: tmp, name: TuneCheckpointTensors.stageFileName(grid.stage))
                    }
                    try comm.barrier()
                    if x.isCoordinator { try commitCheckpoint(&ck) }
                }
            }
        }
        bar.finish()
        let seconds = Date().timeIntervalSince(t0)
        if o.evalEvery == nil || plan.count % o.evalEvery! != 0 { ck.validationLoss = try validationLoss() }
        let steps = max(1, plan.count - resumedAt), trainingTraffic = traffic() - trafficBefore

        // The adapters to rank 0 (replica 0's stages send their slices), and every rank's figures.
        let ranges = blocks.map { adapters.parameterRange(layers: $0) }
        if grid.replica == 0 && grid.stage > 0 { try comm.send(trainer.stageParameters, to: 0, tag: Self.gatherTag) }
        if x.isCoordinator {
            for s in 1..<P {
                let slice = try comm.receiveFloats(ranges[s].count, from: s, tag: Self.gatherTag)
                adapters.parameters.replaceSubrange(ranges[s], with: slice)
            }
        }
        let fields = 4
        var figures = [Double](repeating: 0, count: fields * comm.size)
        let mineAt = fields * comm.rank
        figures[mineAt] = Double(peakRSSBytes())
        figures[mineAt + 1] = Double(stagePass.peakActivationBytes)
        figures[mineAt + 2] = Double(trainingTraffic) / Double(steps)
        try comm.allReduceSum(&figures)
        guard let events = try endTraining(x) else { return nil }
        x.enter(.export)
        try exportAdapter(x, adapters, csv: ck.csv)
        let perRank = memory.ranks.map { m in
            PipelineTuneReport.Rank(rank: m.rank, stage: m.stage, replica: m.replica, layerStart: m.layerStart,
                                    layerEnd: m.layerEnd, predictedPeakBytes: m.peakBytes,
                                    measuredPeakBytes: Int(figures[fields * m.rank]),
                                    activationPeakBytes: Int(figures[fields * m.rank + 1]),
                                    bytesPerStep: Int(figures[fields * m.rank + 2]))
        }
        var report = TuneReport(
            model: o.modelPath, data: o.dataPath, out: o.out.path, jobDir: dir.url.path, ranks: comm.size, epoch: x.epoch,
            resumedAtStep: resumedAt, trainExamples: data.train.count, validationExamples: data.validation.count,
            steps: plan.count, epochs: (plan.last?.epoch ?? -1) + 1, adapterParameters: adapters.parameterCount,
            firstLoss: ck.firstLoss, lastLoss: ck.lastLoss, validationLossBefore: ck.validationLossBefore,
            validationLoss: ck.validationLoss, perplexityBefore: [:], perplexityAfter: [:], tokens: ck.tokens,
            seconds: seconds,
            tokensPerSecond: seconds > 0 ? Double(data.stepTokens[resumedAt...].reduce(0, +)) / seconds : 0,
            allreduceBytes: allreduceBytes, peakRSSBytes: peakRSSBytes())
        report.pipeline = PipelineTuneReport(stages: P, replicas: D, lowMemory: o.lowMemory, ranks: perRank)
        try finishJob(x, report, events: events)
        return report
    }
}
