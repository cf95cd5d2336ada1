// The phases of `ClusterPruneJob` as each rank runs them (see ClusterPrune.swift for the overview).
import Cluster
import Formats
import Foundation
import LlamaModel
import ModelExport
import Pruning
import Support

/// What a rank holds: the whole model (samples) or its stage (layers).
struct HeldModel {
    var weights: LlamaWeights
    var loaded: LoadedModel
    /// The layers this rank scores (samples: reduces to) and writes.
    var owned: Range<Int>
    var bytes: Int
    /// The stage view (layers mode).
    var stage: StageWeights?
}

extension ClusterPruneJob {
    func runPhases(_ x: ClusterSession<PrunePhase>, start: Date) throws -> ClusterPruneReport? {
        let r = comm.rank, n = comm.size
        let startPhase = PrunePhase(rawValue: x.attempt.startPhase) ?? .importance
        let staging = x.attempt.extra["staging"] ?? ""
        var wall: [String: Double] = [:]
        var hwm: [String: Int] = [:]         // VmHWM at the end of each phase
        func timed<T>(_ phase: PrunePhase, _ body: () throws -> T) rethrows -> T {
            let t = Date()
            defer { wall[phase.rawValue, default: 0] += Date().timeIntervalSince(t) }
            return try body()
        }

        // load
        x.enter(.load)
        x.progress(.load, 0, 1, "loading")
        x.stallIfAsked("load")
        let held = try timed(.load) { try x.span("load", .load) { try load() } }
        x.progress(.load, 1, 1, String(format: "%.1f MB of weights, layers %d..<%d", Double(held.bytes) / 1e6,
                                        held.owned.lowerBound, held.owned.upperBound))
        hwm["load"] = peakRSSBytes()

        // importance
        if startPhase <= .importance {
            let calib = try calibrate(held.loaded)
            hwm["calibration"] = peakRSSBytes()
            let result = try timed(.importance) { () -> ImportanceResult in
                try x.sync(.importance)
                return options.shard == .samples ? try samplesImportance(x, held, calib) : try layersImportance(x, held, calib)
            }
            hwm["importance"] = peakRSSBytes()
            if x.isCoordinator {
                var all = [result]
                for (rank, payload) in x.collect(.importance).sorted(by: { $0.key < $1.key }) {
                    all.append(try decode(ImportanceResult.self, payload, what: "importance result of rank \(rank)"))
                }
                let loss = options.shard == .samples ? all.compactMap(\.loss).reduce(0, +) : all.last?.loss
                let ck = ScoresCheckpoint(epoch: x.epoch, loss: loss, calibration: calib.provenance,
                                          scores: all.flatMap(\.scores).sorted { $0.layer < $1.layer },
                                          stages: all.map(\.stage))
                try dir.write(ck, to: dir.scoresFile)
                try dir.complete(PrunePhase.importance.rawValue, epoch: x.epoch)
            } else {
                try x.finish(.importance, payload: try JSONEncoder().encode(result))
            }
        }

        // plan (rank 0), then the write phase's rendezvous
        var planData = Data()
        if x.isCoordinator {
            x.enter(.plan)
            planData = try timed(.plan) { try makePlan(held: held, epoch: x.epoch, startPhase: startPhase) }
            try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: false)
        }
        try x.sync(.write)
        x.stallIfAsked("plan")   // a worker parked before it has the plan (rank 0 may be inside the broadcast)
        let planBytes = try timed(.plan) { try x.charge(.plan) { try comm.broadcast(Array(planData), root: 0) } }
        let plan = try PrunePlan.decode(Data(planBytes), source: "plan from rank 0")

        // reconstruction (when asked): each rank's refit o/down for the layers it writes
        var refits: [Int: RefitWeights] = [:], recon: (CalibrationProvenance, [ReconstructionLayerReport])? = nil
        if let rs = options.reconstruction, let draw = drawReconstruction {
            x.progress(.write, 0, 2, "reconstruction")
            let data = try draw(held.loaded)
            let (r, reports) = try timed(.write) {
                try x.span("reconstruct", .write) { try reconstruct(x, held, plan: plan, settings: rs, data: data) }
            }
            refits = r
            recon = (data.provenance, reports)
            hwm["reconstruction"] = peakRSSBytes()
        }

        // write: each rank cuts its own block and writes its shard
        x.progress(.write, 0, 2, "cutting layers \(held.owned.lowerBound)..<\(held.owned.upperBound)")
        x.stallIfAsked("write")
        let dtype = try outputDType()
        let shard = try timed(.write) { () -> ShardFile in
            if let stage = held.stage, stage.streamed != nil {
                return try x.span("write", .write) {
                    try HFExport.writeStreamedShard(plan: plan, stage: stage, embedding: r == 0, head: r == n - 1,
                                                    dtype: dtype, index: r, count: n, into: URL(fileURLWithPath: staging),
                                                    refits: refits, biases: options.reconstruction?.bias ?? false)
                }
            }
            // fp32 held: cut and written layer by layer, each uncut layer dropped as it goes (samples mode drops the
            // layers other ranks write first).
            for l in held.weights.layers.indices where !held.owned.contains(l) {
                held.weights.layers[l] = .placeholder(held.weights.layers[l].shape)
            }
            return try x.span("write", .write) {
                try HFExport.writeHeldShard(plan: plan, weights: held.weights, layers: held.owned, embedding: r == 0,
                                            head: r == n - 1, dtype: dtype, index: r, count: n,
                                            into: URL(fileURLWithPath: staging), refits: refits, biases: options.reconstruction?.bias ?? false)
            }
        }
        x.progress(.write, 2, 2, String(format: "wrote %@ (%.1f MB)", shard.fileName, Double(shard.dataBytes) / 1e6))
        hwm["write"] = peakRSSBytes()
        let me = RankSummary(rank: r, host: ProcessInfo.processInfo.hostName, pid: Int(getpid()),
                             layers: Array(held.owned), weightBytes: held.bytes,
                             peakActivationBytes: peakActivation, peakRSSBytes: peakRSSBytes(), peakRSSByPhase: hwm,
                             traffic: x.trafficByPhase, controlBytes: x.controlByPhase, shard: shard,
                             events: x.trace.recorded, reconstructionData: recon?.0, reconstruction: recon?.1)
        guard x.isCoordinator else {
            try x.finish(.write, payload: try JSONEncoder().encode(me))
            return nil
        }
        var ranks = [me]
        for (rank, payload) in x.collect(.write).sorted(by: { $0.key < $1.key }) {
            ranks.append(try decode(RankSummary.self, payload, what: "summary of rank \(rank)"))
        }
        return try timed(.write) {
            try commit(plan: plan, held: held, ranks: ranks, session: x, wall: wall, start: start)
        }
    }

    /// The dtype of the shards and of config.json: --dtype, else the input's.
    func outputDType() throws -> TensorDType {
        try options.dtype ?? HFExport.defaultDType(modelPath: options.modelPath)
    }

    // MARK: load

    private func load() throws -> HeldModel {
        let config = try ModelLoader.config(path: options.modelPath)
        let partition = try PipelinePartition.balanced(config: config, stages: comm.size)
        let owned = partition[comm.rank]
        switch options.shard {
        case .samples:
            let m = try ModelLoader.load(path: options.modelPath, tokenizer: true)
            return HeldModel(weights: m.weights, loaded: m, owned: owned, bytes: StageWeights.bytes(of: m.weights))
        case .layers:
            let stage = try ModelLoader.loadStage(path: options.modelPath, layers: owned, embedding: comm.rank == 0,
                                                  head: comm.rank == comm.size - 1, tokenizer: true,
                                                  lowMemory: options.lowMemory)
            return HeldModel(weights: stage.weights, loaded: stage.loadedModel, owned: owned, bytes: stage.bytes, stage: stage)
        }
    }

    // MARK: importance

    private func samplesImportance(_ x: ClusterSession<PrunePhase>, _ held: HeldModel, _ calib: CalibrationSet) throws -> ImportanceResult {
        let s = options.settings
        let criterion = s.criterion, reduction = s.reduction
        let config = held.weights.config
        let scored = s.layerRange
        let t0 = Date()
        func score(_ l: Int, _ g: LayerGradients?, _ f: LayerGradients?) throws -> LayerScores {
            try x.span("score", .importance) {
                try Importance.scores(layer: l, weights: held.weights.layers[l], gradient: g, fisher: f, config: config,
                                      criterion: criterion, reduction: reduction, attentionUnit: s.attentionUnit,
                                      seed: s.seed)
            }
        }
        var scores: [LayerScores] = []
        var loss: Double? = nil
        var peak = 0
        if criterion.needsGradient || criterion.needsFisher {
            // The whole model as one stage over this rank's samples; backward hands each scored layer's gradient
            // over as soon as it is done, and it is reduced to its owner at once (so a rank holds one layer's).
            let batch = calib.samples.count, len = calib.provenance.sampleLength
            let mine = ShardedGradients.shard(rank: comm.rank, size: comm.size, samples: batch)
            let weight = Float(mine.count) / Float(batch)
            let partition = try PipelinePartition.balanced(config: config, stages: comm.size)
            let all = StageWeights.whole(held.weights, path: held.loaded.path, format: held.loaded.format)
            let pass = StageGradientPass(stage: all, scored: scored)
            pass.cachedLayers = cachedLayers
            x.progress(.importance, 0, 3, "forward on samples \(mine.lowerBound)..<\(mine.upperBound)")
            if !mine.isEmpty {
                let toks = Array(calib.batchTokens[(mine.lowerBound * len)..<(mine.upperBound * len)])
                try x.span("forward", .importance) {
                    _ = try pass.forward(tokens: toks, batch: mine.count, seqLen: len, input: nil)
                    loss = try pass.lossBackward() * Double(weight)
                }
            }
            x.stallIfAsked("reduce")
            try x.sync(.importance, step: "reduce")
            x.progress(.importance, 1, 3, "backward, reducing each layer to its owner")
            let reduce = { (l: Int, g: LayerGradients, f: LayerGradients?) throws in
                let owner = partition.firstIndex { $0.contains(l) }!
                let sums = try x.span("reduce", .importance) {
                    try x.charge(.importance) {
                        try ShardedGradients.reduce(layer: l, gradient: g, fisher: f, weight: weight,
                                                like: held.weights.layers[l], owner: owner, comm: self.comm)
                    }
                }
                if let sums { scores.append(try score(l, sums.gradient, sums.fisher)) }
            }
            if mine.isEmpty {       // no samples here: contribute zeros, in the same (top-down) order
                for l in scored.reversed() {
                    let z = LayerGradients(zerosLike: held.weights.layers[l])
                    try reduce(l, z, criterion.needsFisher ? z : nil)
                }
            } else {
                _ = try x.span("backward", .importance) {
                    try pass.backward(outputGradient: nil, fisher: criterion.needsFisher, consume: reduce)
                }
            }
            peak = pass.peakActivationBytes
            pass.reset()
            scores.sort { $0.layer < $1.layer }
        } else {
            for l in scored.clamped(to: held.owned) { scores.append(try score(l, nil, nil)) }
        }
        setPeakActivation(peak)
        x.progress(.importance, 3, 3, "scored \(scores.count) layer(s)")
        return ImportanceResult(scores: scores, loss: loss, stage: stageReport(held, peak: peak, seconds: Date().timeIntervalSince(t0)))
    }

    private func layersImportance(_ x: ClusterSession<PrunePhase>, _ held: HeldModel, _ calib: CalibrationSet) throws -> ImportanceResult {
        let s = options.settings
        let criterion = s.criterion, reduction = s.reduction
        let config = held.weights.config
        let t0 = Date()
        var scores: [LayerScores] = []
        let score = { (l: Int, g: LayerGradients?, f: LayerGradients?) throws in
            x.progress(.importance, 1, 2, "scoring layer \(l)")
            scores.append(try x.span("score", .importance) {
                try Importance.scores(layer: l, weights: held.weights.layers[l], gradient: g, fisher: f, config: config,
                                      criterion: criterion, reduction: reduction, attentionUnit: s.attentionUnit,
                                      seed: s.seed)
            })
        }
        let makePass = { () -> StageGradientPass in
            let pass = StageGradientPass(stage: held.stage!, scored: s.layerRange)
            pass.cachedLayers = self.cachedLayers
            pass.onLayer = { sweep, l in x.progress(.importance, 0, 2, "\(sweep) layer \(l)") }
            return pass
        }
        let probe = makePass()
        var loss: Double? = nil, peak = 0
        let micro = options.microBatches ?? 1
        x.progress(.importance, 0, 2, "pipelined forward+backward, \(micro) micro-batch(es)")
        if criterion.needsGradient || criterion.needsFisher {
            x.stallIfAsked("pipeline")
            let pipeline = try Pipeline(comm: comm, config: config)
            let (result, p) = try x.charge(.importance) {
                try pipeline.gradients(makePass: makePass, tokens: calib.batchTokens, batch: calib.samples.count,
                                       seqLen: calib.provenance.sampleLength, fisher: criterion.needsFisher,
                                       microBatches: micro, trace: x.trace, blocking: { try x.waiting(.importance, $0) },
                                       consume: { l, g, f in try score(l, g, f) })
            }
            peak = p
            if comm.rank == comm.size - 1 { loss = result.loss }
        } else {
            for l in probe.scoredHere { try probe.withLayer(l) { try score(l, nil, nil) } }
        }
        setPeakActivation(peak)
        x.progress(.importance, 2, 2, "scored \(scores.count) layer(s)")
        return ImportanceResult(scores: scores, loss: loss, stage: stageReport(held, peak: peak, seconds: Date().timeIntervalSince(t0)))
    }

    /// Layers whose internals this rank keeps from the forward sweep, as its memory plan allows.
    var cachedLayers: Int { options.memoryPlan?.ranks.first { $0.rank == comm.rank }?.cachedLayers ?? 0 }

    private func stageReport(_ held: HeldModel, peak: Int, seconds: Double) -> PipelineStageReport {
        PipelineStageReport(rank: comm.rank, layerStart: held.owned.lowerBound, layerEnd: held.owned.upperBound,
                            weightBytes: held.bytes, peakActivationBytes: peak, seconds: seconds)
    }

    // MARK: plan and commit (rank 0)

    /// The plan from the scores checkpoint (or the plan checkpoint when the plan phase is done); its JSON.
    private func makePlan(held: HeldModel, epoch: Int, startPhase: PrunePhase) throws -> Data {
        if startPhase > .plan { return try Data(contentsOf: dir.planFile) }
        let ck = try dir.read(ScoresCheckpoint.self, from: dir.scoresFile)
        let config = held.weights.config
        let identity = try ModelIdentity(path: held.loaded.path, format: held.loaded.format, config: config)
        let plan = try PrunePlan.make(settings: options.settings, config: config, model: identity,
                                      calibration: ck.calibration, scores: ck.scores)
        try plan.write(to: dir.planFile)
        try dir.complete(PrunePhase.plan.rawValue, epoch: epoch)
        return try plan.encoded()
    }

    private func commit(plan: PrunePlan, held: HeldModel, ranks: [RankSummary], session x: ClusterSession<PrunePhase>,
                        wall: [String: Double], start: Date) throws -> ClusterPruneReport {
        let staging = URL(fileURLWithPath: x.attempt.extra["staging"] ?? "")
        let epoch = x.epoch, startPhase = PrunePhase(rawValue: x.attempt.startPhase) ?? .importance
        var config = try plan.prunedConfig(held.weights.config)
        if options.reconstruction?.bias == true { config = config.withAllBiases() }
        var plan = plan
        if let rs = options.reconstruction, let data = ranks.first(where: { $0.rank == 0 })?.reconstructionData {
            // Samples mode: every rank reports every layer (the same numbers); layers mode: each its own.
            var byLayer: [Int: ReconstructionLayerReport] = [:]
            for r in ranks { for l in r.reconstruction ?? [] where byLayer[l.layer] == nil { byLayer[l.layer] = l } }
            plan.reconstruction = ReconstructionReport(settings: rs, calibration: data,
                                                       layers: byLayer.values.sorted { $0.layer < $1.layer })
        }
        try HFExport.writeIndex(shards: ranks.map(\.shard), into: staging)
        let dtype = try outputDType()
        try HFExport.writeModelFiles(config: config, dtype: dtype, tokenizerSource: .of(held.loaded), into: staging,
                                     extraFiles: ["prune_plan.json": try plan.encoded()])
        try HFExport.commit(staging: staging, to: options.out, force: true)
        let ck = try? dir.read(ScoresCheckpoint.self, from: dir.scoresFile)
        // The timeline: every rank's spans, one process per rank.
        let names = Dictionary(uniqueKeysWithValues: ranks.map { ($0.rank, "rank \($0.rank) (\($0.host) pid \($0.pid))") })
        try AtomicFile.write(try ChromeTrace.encode(events: ranks.flatMap(\.events), rankNames: names,
                                                                origin: x.trace.origin), to: dir.traceFile)
        var phases: [String: ClusterPruneReport.Phase] = [:]
        for phase in PrunePhase.allCases {
            let p = phase.rawValue
            phases[p] = .init(seconds: wall[p] ?? 0,
                              mpiBytes: ranks.reduce(0) { $0 + ($1.traffic[p]?.total ?? 0) },
                              controlBytes: ranks.reduce(0) { $0 + ($1.controlBytes[p] ?? 0) },
                              fromCheckpoint: phase == .importance && startPhase > .importance
                                  || phase == .plan && startPhase > .plan)
        }
        let report = ClusterPruneReport(
            out: options.out.path, jobDir: dir.url.path, plan: dir.planFile.path, trace: dir.traceFile.path,
            shard: options.shard, ranks: comm.size, epoch: epoch, startPhase: startPhase,
            parametersBefore: plan.parametersBefore, parametersAfter: plan.parametersAfter, loss: ck?.loss,
            layers: config.layers, phases: phases,
            perRank: ranks.map { .init(rank: $0.rank, host: $0.host, pid: $0.pid, layers: $0.layers,
                                       weightBytes: $0.weightBytes, peakActivationBytes: $0.peakActivationBytes,
                                       peakRSSBytes: $0.peakRSSBytes, peakRSSByPhase: $0.peakRSSByPhase,
                                       traffic: $0.traffic.values.reduce(Communicator.Traffic(), +)) },
            totalSeconds: Date().timeIntervalSince(start), memoryPlan: options.memoryPlan, dtype: dtype.rawValue)
        try dir.write(report, to: dir.reportFile)
        try dir.complete(PrunePhase.write.rawValue, epoch: epoch)
        try dir.end(epoch: epoch, outcome: "complete")
        return report
    }

    private func decode<T: Decodable>(_ type: T.Type, _ payload: Data?, what: String) throws -> T {
        guard let payload else { throw JobError.corrupt(path: dir.url.path, reason: "\(what): no payload") }
        do { return try JSONDecoder().decode(type, from: payload) } catch {
            throw JobError.corrupt(path: dir.url.path, reason: "\(what): \(error)")
        }
    }
}
