// One attempt of a cluster job as every rank sees it: rank 0 prepares the job directory and binds the coordinator,
// publishes the endpoint, a fresh job token and the attempt's parameters with MPI_Bcast (the only collective not
// gated by a `go`: the control plane does not exist yet), and every other rank joins as a worker. Then the job's
// phases use the helpers here: per-rank progress, rendezvous before collectives, per-unit results, accounting of
// bytes moved, and the fault-injection hook. Jobs: ClusterPrune (prune) and tune.
import Foundation

/// Test hooks, from the environment variable LLMPRUNE_FAULT (comma-separated):
///   stall@R:STEP   rank R stops at STEP (a name the job defines: prune load, reduce, pipeline, plan, write;
///                  tune stepK) and sleeps until killed, after writing
///                  attempt-E/rank-R.stalled in the job directory (heartbeats go on);
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

/// How the control plane of a job is set up (flags --bind, --heartbeat-*, --curve, --insecure, --quiet).
public struct SessionOptions: Sendable {
    public var bind = "tcp://127.0.0.1:0"
    public var heartbeatInterval = 1.0
    public var heartbeatTimeout = 5.0
    /// Encrypt even on loopback.
    public var curve = false
    /// Plain TCP even on a non-loopback bind.
    public var insecure = false
    /// When rank 0 gives up on a rank that heartbeats but makes no progress.
    public var progress = ProgressDeadline()
    public var quiet = false
    public var fault = FaultInjection()
    /// What workers announce in `hello` (e.g. ["prune", "layers"]).
    public var capabilities: [String] = []
    /// The command that continues the job after a failure (printed when rank 0 aborts it).
    public var resumeHint = ""

    public init() {}

    /// Whether the control plane uses CURVE: asked for, or listening beyond this host and not `insecure`.
    public var encrypted: Bool { curve || (!insecure && !Self.isLocal(bind)) }

    /// Why these options cannot run here, or nil. The same on every rank (same flags, same library).
    public var problem: String? {
        if curve && insecure { return "--insecure: contradicts --curve" }
        if encrypted && !CurveKeyPair.isAvailable {
            return curve ? "--curve: the installed libzmq has no CURVE support"
                : "--bind \(bind): not a loopback address, and the installed libzmq has no CURVE support to encrypt the control plane; pass --insecure to run it in clear text"
        }
        return nil
    }

    /// Whether `endpoint` stays on this host: a loopback address, or a transport that is no network.
    public static func isLocal(_ endpoint: String) -> Bool {
        if endpoint.hasPrefix("inproc://") || endpoint.hasPrefix("ipc://") { return true }
        guard endpoint.hasPrefix("tcp://") else { return false }
        var host = String(endpoint.dropFirst("tcp://".count))
        if host.hasPrefix("["), let end = host.firstIndex(of: "]") {
            host = String(host[host.index(after: host.startIndex)..<end])
            return host == "::1"
        }
        if let colon = host.lastIndex(of: ":") { host = String(host[..<colon]) }
        return host.hasPrefix("127.") || host == "localhost" || host == "lo"
    }
}

/// What rank 0 decided for this attempt, published to every rank.
public struct AttemptInfo: Codable, Sendable {
    public var epoch: Int
    /// The first phase this attempt runs (earlier ones come from checkpoints).
    public var startPhase: String
    /// Job-specific values (e.g. the output's staging directory).
    public var extra: [String: String]

    public init(epoch: Int, startPhase: String, extra: [String: String] = [:]) {
        self.epoch = epoch
        self.startPhase = startPhase
        self.extra = extra
    }
}

/// Published by rank 0 to every rank through MPI_Bcast before the control plane exists. MPI is not encrypted, so
/// with CURVE the token is not in it in clear text: `token` is empty and `sealedTokens[r]` is the token sealed
/// to rank r's CURVE public key (base64; rank 0's is empty).
struct Bootstrap: Codable {
    var endpoint: String
    var token: String
    var curvePublicKey: String?
    var sealedTokens: [String]?
    /// Wall-clock time zero of the job's trace.
    var origin: Double
    var attempt: AttemptInfo
}

/// A job's phases (prune: load, importance, plan, write; tune: load, train, export). Their names are what the
/// control plane's units, the trace categories, the traffic accounting and the job directory's checkpoints use.
public protocol JobPhase: RawRepresentable, Hashable, Sendable where RawValue == String {}

/// The session's own phase before any of the job's: joining the control plane.
enum SessionPhase: String, JobPhase { case start }

public final class ClusterSession<Phase: JobPhase> {
    public let comm: Communicator
    public let dir: JobDirectory
    public let attempt: AttemptInfo
    public let trace: TraceRecorder
    public let display: RankProgressDisplay
    public let fault: FaultInjection
    let control: CoordinatorSide?     // rank 0
    let workerSide: WorkerSide?       // other ranks
    private var phaseTraffic: [String: Communicator.Traffic] = [:]
    private var phaseControl: [String: Int] = [:]

    public var epoch: Int { attempt.epoch }
    public var rank: Int { comm.rank }
    public var size: Int { comm.size }
    public var isCoordinator: Bool { control != nil }

    /// Starts this rank's side of an attempt. On rank 0, `prepare` sets up the job directory and returns the
    /// attempt (it runs before anything is published; a throw there ends the job on every rank).
    public init(comm: Communicator, dir: JobDirectory, options: SessionOptions, prepare: () throws -> AttemptInfo) throws {
        self.comm = comm
        self.dir = dir
        var coordinator: Coordinator? = nil
        var boot = Bootstrap(endpoint: "", token: "", curvePublicKey: nil, origin: Date().timeIntervalSince1970,
                             attempt: AttemptInfo(epoch: 0, startPhase: ""))
        if let problem = options.problem { throw CoordinatorError.invalidConfig(problem) }
        // With CURVE every rank makes its client pair here, and rank 0 learns the public keys (public: fine in
        // clear on MPI); a secret key never leaves its process and nothing is written to disk.
        var clientPair: CurveKeyPair? = nil
        var clientKeys: [String] = []
        if options.encrypted {
            let pair = try CurveKeyPair.generate()
            clientPair = pair
            clientKeys = try comm.allGather(Array(pair.publicKey.utf8)).map { String(decoding: $0, as: UTF8.self) }
        }
        if comm.rank == 0 {
            boot.attempt = try prepare()
            let token = Self.randomToken()
            try dir.recordToken(token, epoch: boot.attempt.epoch)
            var cc = CoordinatorConfig(token: token)
            cc.bind = options.bind
            cc.worldSize = comm.size
            cc.heartbeatInterval = options.heartbeatInterval
            cc.heartbeatTimeout = options.heartbeatTimeout
            if options.quiet { cc.log = { _ in } }
            if options.encrypted {
                let keys = try CurveKeyPair.generate()
                cc.curve = keys
                cc.clientKeys = Set(clientKeys.dropFirst())
                boot.curvePublicKey = keys.publicKey
                boot.sealedTokens = try clientKeys.indices.map { r in
                    r == 0 ? "" : try SealedToken.seal(Data(token.utf8), to: clientKeys[r]).base64EncodedString()
                }
            } else {
                boot.token = token
            }
            let c = try Coordinator(cc)
            coordinator = c
            boot.endpoint = Self.advertised(c.endpoint)
        }
        let bytes = try comm.broadcast(comm.rank == 0 ? Array(try JSONEncoder().encode(boot)) : [], root: 0)
        boot = try JSONDecoder().decode(Bootstrap.self, from: Data(bytes))
        attempt = boot.attempt
        trace = TraceRecorder(rank: comm.rank, origin: boot.origin)
        fault = boot.attempt.epoch == 0 ? options.fault : FaultInjection()
        let watchdog = try dir.registerRank(epoch: boot.attempt.epoch, rank: comm.rank)
        display = RankProgressDisplay(ranks: comm.size, quiet: options.quiet)
        let joinTimeout = max(60, 4 * options.heartbeatTimeout)
        if let coordinator {
            let side = CoordinatorSide(coordinator: coordinator, comm: comm, dir: dir, epoch: boot.attempt.epoch,
                                       watchdog: watchdog, display: display, deadline: options.progress)
            side.resumeHint = options.resumeHint
            control = side
            workerSide = nil
            if comm.size > 1 {
                let joined = try? trace.span("wait", phase: SessionPhase.start.rawValue) {
                    try coordinator.waitForWorkers(comm.size - 1, timeout: joinTimeout)
                }
                if joined == nil {
                    side.fatal("only ranks \(coordinator.liveRanks) of 1..<\(comm.size) joined the coordinator at \(boot.endpoint)")
                }
            }
        } else {
            var token = boot.token
            if let sealed = boot.sealedTokens, let clientPair {
                guard comm.rank < sealed.count, let box = Data(base64Encoded: sealed[comm.rank]) else {
                    throw SealedTokenError.cannotOpen
                }
                token = String(decoding: try SealedToken.open(box, with: clientPair), as: UTF8.self)
            }
            var wc = WorkerConfig(token: fault.wrongToken.contains(comm.rank) ? "not-" + token : token,
                                  rank: comm.rank)
            wc.heartbeatInterval = options.heartbeatInterval
            wc.heartbeatTimeout = options.heartbeatTimeout
            wc.capabilities = options.capabilities
            wc.log = ControlPlane.stderrLog("rank \(comm.rank)")
            if options.quiet { wc.log = { _ in } }
            if let key = boot.curvePublicKey { wc.curve = try CurveClientKeys(serverPublicKey: key, client: clientPair) }
            let w = try Worker(endpoint: boot.endpoint, config: wc)
            control = nil
            workerSide = WorkerSide(worker: w, comm: comm, watchdog: watchdog)
            _ = try w.waitForWelcome(timeout: joinTimeout)
        }
    }

    /// Runs the job's phases; on success ends the attempt normally (shutdown), on error records why and ends
    /// every rank's part of it.
    public func run<T>(_ body: (ClusterSession) throws -> T) throws -> T {
        do {
            let result = try body(self)
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
            return result
        } catch {
            if let control { control.fatal("rank 0 failed: \(error)") }
            watchdog.say("failed: \(error)")
            throw error
        }
    }

    var watchdog: RankWatchdog { control?.watchdog ?? workerSide!.watchdog }

    func unit(_ name: String) -> WorkUnit { WorkUnit(phase: name, shard: rank, epoch: epoch) }

    // MARK: phase helpers

    /// Shown on rank 0's terminal for this rank.
    public func progress(_ phase: Phase, _ done: Int, _ total: Int, _ message: String) {
        if let control {
            control.progressed(0)
            display.update(rank: 0, "\(phase.rawValue) \(done)/\(total) \(message)")
        }
        try? workerSide?.worker.progress(unit(phase.rawValue), done: done, total: total, message: message)
    }

    /// Runs `body`, a wait on other ranks (a collective, a blocking send or receive), telling rank 0 so: a rank
    /// inside it is not the one behind, for the progress deadline. Two short `progress` messages (notes
    /// `ProgressNote.waiting` and `.resumed`, not displayed).
    public func waiting<T>(_ phase: Phase, _ body: () throws -> T) rethrows -> T {
        note(phase, ProgressNote.waiting)
        defer { note(phase, ProgressNote.resumed) }
        return try body()
    }

    private func note(_ phase: Phase, _ text: String) {
        control?.progressed(0, waiting: text == ProgressNote.waiting)
        try? workerSide?.worker.progress(unit(phase.rawValue), done: 0, total: 0, message: text)
    }

    /// Names the phase rank 0 is in (for the message when a rank is lost).
    public func enter(_ phase: Phase) {
        control?.phase = phase.rawValue
        control?.beginPhase()
    }

    /// Rendezvous before the collectives of `phase` (or of a named `step` inside it): workers report ready and
    /// wait for `go`; rank 0 waits for every ready and sends `go`.
    public func sync(_ phase: Phase, step: String? = nil) throws {
        let name = step.map { phase.rawValue + "." + $0 } ?? phase.rawValue
        control?.phase = name
        trace.span("wait", phase: name) { _ = control?.awaitDone(phase: name + ".ready", ranks: 1..<size) }
        if let control {
            try control.coordinator.broadcastGo(phase: name, epoch: epoch)
            control.beginPhase()
        } else if let worker = workerSide?.worker {
            try worker.done(unit(name + ".ready"))
            try trace.span("wait", phase: name) { try worker.waitForGo(phase: name, epoch: epoch, timeout: 7 * 86400) }
        }
    }

    /// A worker's result for `phase` (rank 0 keeps its own).
    public func finish(_ phase: Phase, payload: Data) throws {
        guard let worker = workerSide?.worker else { return }
        let before = worker.sentBytes
        try worker.done(unit(phase.rawValue), summary: "\(payload.count) bytes", payload: payload)
        phaseControl[phase.rawValue, default: 0] += worker.sentBytes - before
    }

    /// Rank 0: every worker's result (`done` payload) for `phase`, by rank.
    public func collect(_ phase: Phase) -> [Int: Data?] {
        trace.span("wait", phase: phase.rawValue) {
            control!.awaitDone(phase: phase.rawValue, ranks: 1..<size).mapValues(\.payload)
        }
    }

    /// Runs `body` and records it in the trace as a span `name` of `phase`.
    public func span<T>(_ name: String, _ phase: Phase, _ body: () throws -> T) rethrows -> T {
        try trace.span(name, phase: phase.rawValue, body)
    }

    /// The fault-injection hook: stop here (heartbeats go on) until killed.
    public func stallIfAsked(_ step: String) {
        guard fault.stall[rank] == step else { return }
        try? Data().write(to: dir.stallMarker(epoch, rank))
        FileHandle.standardError.write(Data("llmprune: [rank \(rank)] fault injection: stalled at \(step)\n".utf8))
        while true { Thread.sleep(forTimeInterval: 1) }
    }

    /// Rank 0: records why the attempt stops and ends every rank (MPI_Abort). Never returns.
    public func abortJob(_ reason: String) -> Never {
        if let control { control.fatal(reason) }
        watchdog.say("aborting: \(reason)")
        comm.abort(code: 4)
    }

    // MARK: accounting

    /// Runs `body` as (part of) `phase`, charging the MPI bytes it moves to that phase.
    public func charge<T>(_ phase: Phase, _ body: () throws -> T) rethrows -> T {
        let before = comm.traffic
        let name = phase.rawValue
        defer { phaseTraffic[name, default: .init()] = phaseTraffic[name, default: .init()] + (comm.traffic - before) }
        return try body()
    }

    public var trafficByPhase: [String: Communicator.Traffic] { phaseTraffic }
    public var controlByPhase: [String: Int] { phaseControl }

    // MARK: bootstrap helpers

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
