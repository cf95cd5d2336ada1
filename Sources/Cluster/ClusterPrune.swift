// `llmprune cluster prune`: the importance pass, the plan and the cut of one model across the ranks of an MPI job.
// Rank 0 is the coordinator (ZeroMQ control plane, job directory, plan) and also does a rank's share of the work.
// Phases: load → importance → plan → write; each ends with a checkpoint in the job directory, and a relaunch
// with --resume starts at the first phase without one. Every MPI collective is entered after a `go` from the
// coordinator for (phase, epoch), epoch = attempt number, so all ranks issue the same sequence.
//
//   --shard samples: every rank loads the whole model and takes 1/N of the calibration samples; per layer, the
//       gradient sums (and per-sample squared-gradient sums) are MPI_Reduce'd to the rank that owns the layer,
//       before any abs, so the scores are exactly one process's.
//   --shard layers: every rank loads only its block of layers (rank 0 the embedding, the last rank the head);
//       activations flow up the ranks and their gradients down; each rank scores its own layers.
// Either way each rank cuts its own block and writes its own shard; rank 0 writes the index and commits the
// directory with one rename.
import Foundation
import LlamaModel
import Pruning

public enum ShardMode: String, Codable, Sendable, CaseIterable {
    case samples, layers
}

/// Test hooks, from the environment variable LLMPRUNE_FAULT (comma-separated):
///   stall@R:STEP   rank R stops at STEP (load, reduce [samples], pipeline [layers], write) and sleeps until killed, after writing
///                  attempt-E/rank-R.stalled in the job directory;
///   token@R        rank R presents a wrong job token.
/// Only the first attempt (epoch 0) is affected, so a resumed job runs clean.
public struct FaultInjection: Sendable, Equatable {
    public var stall: [Int: String] = [:]
    public var wrongToken: Set<Int> = []

    public init() {}

    public static func fromEnvironment() -> FaultInjection {
        var f = FaultInjection()
        for item in (ProcessInfo.processInfo.environment["LLMPRUNE_FAULT"] ?? "").split(separator: ",") {
            let parts = item.split(separator: "@")
            guard parts.count == 2 else { continue }
            let target = parts[1].split(separator: ":")
            guard let rank = Int(target[0]) else { continue }
            if parts[0] == "stall", target.count == 2 { f.stall[rank] = String(target[1]) }
            if parts[0] == "token" { f.wrongToken.insert(rank) }
        }
        return f
    }
}

public struct ClusterPruneOptions: Sendable {
    public var modelPath: String
    public var out: URL
    public var jobDir: URL
    public var shard: ShardMode = .samples
    public var settings: PruneSettings
    /// The job's command-line arguments, recorded in job.json for --resume.
    public var spec: JobSpec
    public var resume = false
    public var force = false
    public var quiet = false
    public var bind = "tcp://127.0.0.1:0"
    public var heartbeatInterval = 1.0
    public var heartbeatTimeout = 5.0
    public var curve = false
    /// Micro-batches of the layer-sharded pipeline (nil: 1). More overlap the stages, but each stage then holds
    /// the gradient sums of all its scored layers until the last micro-batch is done (k·4 bytes per weight).
    public var microBatches: Int? = nil
    public var fault = FaultInjection()

    public init(modelPath: String, out: URL, jobDir: URL, settings: PruneSettings, spec: JobSpec) {
        self.modelPath = modelPath
        self.out = out
        self.jobDir = jobDir
        self.settings = settings
        self.spec = spec
    }
}

/// Draws the calibration set from a loaded model's tokenizer (every rank draws the same one).
public typealias CalibrationDraw = (LoadedModel) throws -> CalibrationSet

/// What rank 0 reports at the end (also report.json).
public struct ClusterPruneReport: Codable, Sendable {
    public struct Phase: Codable, Sendable {
        /// Wall time on rank 0 from the phase's start to its end (0 when it came from a checkpoint).
        public var seconds: Double
        /// Bytes handed to MPI by all ranks (sends, receives, reduction contributions, broadcasts).
        public var mpiBytes: Int
        /// Bytes of control messages the workers sent (score vectors, shard lists, traces).
        public var controlBytes: Int
        public var fromCheckpoint: Bool
    }
    public struct Rank: Codable, Sendable {
        public var rank: Int
        public var host: String
        public var pid: Int
        public var layers: [Int]
        public var weightBytes: Int
        public var peakActivationBytes: Int
        public var peakRSSBytes: Int
        public var traffic: Communicator.Traffic
    }
    public var out: String
    public var jobDir: String
    public var plan: String
    public var trace: String
    public var shard: ShardMode
    public var ranks: Int
    public var epoch: Int
    public var startPhase: JobPhase
    public var parametersBefore: Int
    public var parametersAfter: Int
    public var loss: Double?
    public var layers: [LayerShape]
    public var phases: [String: Phase]
    public var perRank: [Rank]
    public var totalSeconds: Double
}

/// Per-rank results sent to rank 0 with the last unit.
struct RankSummary: Codable, Sendable {
    var rank: Int
    var host: String
    var pid: Int
    var layers: [Int]
    var weightBytes: Int
    var peakActivationBytes: Int
    var peakRSSBytes: Int
    var traffic: [String: Communicator.Traffic]
    var controlBytes: [String: Int]
    var shard: ShardFile
    var events: [TraceEvent]
}

/// A rank's importance result (the `done` payload of the importance unit).
struct ImportanceResult: Codable, Sendable {
    var scores: [LayerScores]
    /// The rank's share of the batch loss (samples) or the loss (last stage of layers); nil when none.
    var loss: Double?
    var stage: PipelineStageReport
}

/// Published by rank 0 to every rank through MPI_Bcast before the control plane exists.
struct Bootstrap: Codable {
    var endpoint: String
    var token: String
    var curvePublicKey: String?
    var origin: Double
    var epoch: Int
    var startPhase: JobPhase
    var staging: String
}

public final class ClusterPruneJob {
    let options: ClusterPruneOptions
    let comm: Communicator
    let calibrate: CalibrationDraw
    let dir: JobDirectory
    var trace: TraceRecorder
    private var phaseTraffic: [String: Communicator.Traffic] = [:]
    /// Largest activation cache of this rank's gradient pass, bytes.
    private(set) var peakActivation = 0
    private var phaseControl: [String: Int] = [:]

    public init(options: ClusterPruneOptions, comm: Communicator = .world, calibrate: @escaping CalibrationDraw) {
        self.options = options
        self.comm = comm
        self.calibrate = calibrate
        dir = JobDirectory(options.jobDir)
        trace = TraceRecorder(rank: comm.rank)
    }

    var isCoordinator: Bool { comm.rank == 0 }
    var isLast: Bool { comm.rank == comm.size - 1 }

    /// Runs this rank's part. Returns the report on rank 0, nil elsewhere.
    public func run() throws -> ClusterPruneReport? {
        let t0 = Date()
        // 1. Rank 0 prepares the attempt and the coordinator; the rest learn where to connect through MPI.
        var coordinator: Coordinator? = nil
        var boot = Bootstrap(endpoint: "", token: "", curvePublicKey: nil, origin: t0.timeIntervalSince1970, epoch: 0,
                             startPhase: .load, staging: "")
        var curveKeys: CurveKeyPair? = nil
        if isCoordinator {
            (boot.epoch, boot.startPhase, boot.staging) = try prepareAttempt()
            boot.token = Self.randomToken()
            var cc = CoordinatorConfig(token: boot.token)
            cc.bind = options.bind
            cc.worldSize = comm.size
            cc.heartbeatInterval = options.heartbeatInterval
            cc.heartbeatTimeout = options.heartbeatTimeout
            if options.quiet { cc.log = { _ in } }
            if options.curve {
                guard CurveKeyPair.isAvailable else {
                    throw CoordinatorError.invalidConfig("--curve: the installed libzmq has no CURVE support")
                }
                curveKeys = try CurveKeyPair.generate()
                cc.curve = curveKeys
                boot.curvePublicKey = curveKeys!.publicKey
            }
            let c = try Coordinator(cc)
            coordinator = c
            boot.endpoint = Self.advertised(c.endpoint)
        }
        let bytes = comm.broadcast(isCoordinator ? Array(try JSONEncoder().encode(boot)) : [], root: 0)
        boot = try JSONDecoder().decode(Bootstrap.self, from: Data(bytes))
        trace.origin = boot.origin
        let epoch = boot.epoch
        let fault = epoch == 0 ? options.fault : FaultInjection()
        let watchdog = try dir.registerRank(epoch: epoch, rank: comm.rank)
        let display = RankProgressDisplay(ranks: comm.size, quiet: options.quiet)

        var control: CoordinatorSide? = nil
        var workerSide: WorkerSide? = nil
        if let coordinator {
            control = CoordinatorSide(coordinator: coordinator, comm: comm, dir: dir, epoch: epoch, watchdog: watchdog,
                                      display: display)
            if comm.size > 1 {
                let joined = try? trace.span("wait", phase: "load") {
                    try coordinator.waitForWorkers(comm.size - 1, timeout: max(60, 4 * options.heartbeatTimeout))
                }
                if joined == nil {
                    control!.fatal("only ranks \(coordinator.liveRanks) of 1..<\(comm.size) joined the coordinator at \(boot.endpoint)")
                }
            }
        } else {
            var wc = WorkerConfig(token: fault.wrongToken.contains(comm.rank) ? "not-" + boot.token : boot.token,
                                  rank: comm.rank)
            wc.heartbeatInterval = options.heartbeatInterval
            wc.heartbeatTimeout = options.heartbeatTimeout
            wc.capabilities = ["prune", options.shard.rawValue]
            wc.log = ControlPlane.stderrLog("rank \(comm.rank)")
            if options.quiet { wc.log = { _ in } }
            if let key = boot.curvePublicKey { wc.curve = try CurveClientKeys(serverPublicKey: key) }
            let w = try Worker(endpoint: boot.endpoint, config: wc)
            workerSide = WorkerSide(worker: w, comm: comm, watchdog: watchdog)
            _ = try w.waitForWelcome(timeout: max(60, 4 * options.heartbeatTimeout))
        }
        let ctx = RankContext(job: self, epoch: epoch, control: control, worker: workerSide?.worker, display: display,
                              fault: fault, watchdog: watchdog)
        do {
            let report = try runPhases(ctx, boot: boot, start: t0)
            watchdog.say("finished")
            if let control {
                control.stop()
                control.coordinator.shutdown()
            }
            if let workerSide {
                _ = try? workerSide.worker.waitForShutdown(timeout: 10)
                workerSide.stop()
                workerSide.worker.close()
            }
            return report
        } catch {
            if let control { control.fatal("rank 0 failed: \(error)") }
            watchdog.say("failed: \(error)")
            throw error
        }
    }

    // MARK: - attempt bookkeeping (rank 0)

    /// Creates or resumes the job directory; returns the new attempt's epoch, its first phase, and the staging
    /// directory for the output.
    private func prepareAttempt() throws -> (Int, JobPhase, String) {
        let fm = FileManager.default
        if options.resume {
            _ = try dir.spec()
        } else {
            if !options.force, fm.fileExists(atPath: options.out.path) { throw PruneError.outputExists(path: options.out.path) }
            try dir.create(options.spec, force: options.force)
        }
        var state = try dir.state()
        guard let start = state.nextPhase else {
            throw JobError.alreadyComplete(path: dir.url.path, out: options.out.path)
        }
        if let last = state.attempts.last {
            let d = try dir.diagnose(epoch: last.epoch)
            for line in d.lines where !options.quiet { FileHandle.standardError.write(Data("llmprune: previous \(line)\n".utf8)) }
        }
        // Staging directories of attempts that did not commit are removed: their shards may be partial.
        for a in state.attempts { if let s = a.staging { try? fm.removeItem(atPath: s) } }
        let epoch = (state.attempts.map(\.epoch).max() ?? -1) + 1
        let staging = HFExport.stagingDirectory(for: options.out, tag: "e\(epoch)").path
        state.attempts.append(.init(epoch: epoch, ranks: comm.size, shard: options.shard.rawValue,
                                    started: Date().timeIntervalSince1970, startPhase: start, staging: staging))
        try dir.update { $0 = state }
        if !options.quiet {
            FileHandle.standardError.write(Data("llmprune: job \(dir.url.path), attempt \(epoch) on \(comm.size) rank(s), --shard \(options.shard.rawValue), starting at phase \(start.rawValue)\n".utf8))
        }
        return (epoch, start, staging)
    }

    static func randomToken() -> String {
        var g = SystemRandomNumberGenerator()
        return (0..<4).map { _ in String(format: "%016llx", g.next() as UInt64) }.joined()
    }

    /// A wildcard bind (`tcp://*:p`, `tcp://0.0.0.0:p`) is advertised under this host's name.
    static func advertised(_ endpoint: String) -> String {
        for wild in ["tcp://*:", "tcp://0.0.0.0:"] where endpoint.hasPrefix(wild) {
            return "tcp://\(ProcessInfo.processInfo.hostName):" + endpoint.dropFirst(wild.count)
        }
        return endpoint
    }

    // MARK: - accounting

    /// Runs `body` as (part of) `phase`, charging the MPI bytes it moves to that phase.
    func charge<T>(_ phase: String, _ body: () throws -> T) rethrows -> T {
        let before = comm.traffic
        defer { phaseTraffic[phase, default: .init()] = phaseTraffic[phase, default: .init()] + (comm.traffic - before) }
        return try body()
    }

    func setPeakActivation(_ bytes: Int) { peakActivation = max(peakActivation, bytes) }

    func chargeControl(_ phase: String, bytes: Int) { phaseControl[phase, default: 0] += bytes }

    var trafficByPhase: [String: Communicator.Traffic] { phaseTraffic }
    var controlByPhase: [String: Int] { phaseControl }
}

/// Peak resident set size of this process (VmHWM), bytes.
public func peakRSSBytes() -> Int {
    guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in s.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let kb = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
        return kb * 1024
    }
    return 0
}
