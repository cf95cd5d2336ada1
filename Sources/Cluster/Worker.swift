// A rank's side of the control plane: a DEALER socket that joins the coordinator with the job token,
// heartbeats from its own I/O thread, and hands assignments, `go` and `shutdown` to the caller.
import CZeroMQ
import Foundation

public struct WorkerConfig: Sendable {
    public var token: String
    public var rank: Int
    public var host: String = ProcessInfo.processInfo.hostName
    public var pid: Int = Int(ProcessInfo.processInfo.processIdentifier)
    public var capabilities: [String] = []
    /// Seconds between heartbeats (and `hello` retries before the welcome).
    public var heartbeatInterval: Double = 1.0
    /// Seconds without any message from the coordinator (or without a welcome) before it is declared lost.
    public var heartbeatTimeout: Double = 5.0
    public var limits: ControlLimits = .default
    /// CURVE client settings; nil = plain TCP.
    public var curve: CurveClientKeys? = nil
    public var log: ControlLog = ControlPlane.stderrLog("worker")

    public init(token: String, rank: Int) {
        self.token = token
        self.rank = rank
    }
}

public enum WorkerEvent: Equatable, Sendable {
    case assign(WorkUnit, payload: Data?)
    case go(phase: String, epoch: Int)
    /// The job ended normally; close the worker.
    case shutdown
}

public struct Welcome: Equatable, Sendable {
    public var config: [String: String]
    public var payload: Data?
}

public enum WorkerError: Error, Equatable, CustomStringConvertible {
    case refused(String)
    /// No message from the coordinator for `silentFor` seconds (or no welcome within the timeout).
    case coordinatorLost(silentFor: Double)
    case aborted(String)
    /// The coordinator sent `shutdown` while the caller waited for something else.
    case shutdown
    case timeout(String)
    case closed
    case payloadTooLarge(Int, limit: Int)
    case invalidConfig(String)

    public var description: String {
        switch self {
        case .invalidConfig(let why): "invalid worker configuration: \(why)"
        case .refused(let r): "coordinator refused this worker: \(r)"
        case .coordinatorLost(let s): String(format: "coordinator lost: nothing heard for %.2f s", s)
        case .aborted(let r): "job aborted by the coordinator: \(r)"
        case .shutdown: "coordinator shut the job down"
        case .timeout(let what): "timed out waiting for \(what)"
        case .closed: "worker is closed"
        case .payloadTooLarge(let n, let limit): "payload of \(n) bytes exceeds the limit of \(limit)"
        }
    }
}

public final class Worker: @unchecked Sendable {
    private let engine: WorkerEngine
    public let rank: Int

    /// Connects the DEALER, starts the I/O thread and sends `hello` (repeated every heartbeat interval until
    /// welcomed). Pass `context` to share one with an inproc coordinator.
    public init(endpoint: String, config: WorkerConfig, context: ZContext? = nil) throws {
        if let problem = controlConfigProblem(token: config.token, interval: config.heartbeatInterval,
                                              timeout: config.heartbeatTimeout) {
            throw WorkerError.invalidConfig(problem)
        }
        let ctx = context ?? ZContext()
        let dealer = try ZSocket(ctx, type: ZMQ_DEALER)
        try dealer.setOption(ZMQ_SNDTIMEO, 0)
        try dealer.setOption(ZMQ_MAXMSGSIZE, int64: Int64(config.limits.maxFrameBytes))
        if let curve = config.curve {
            try dealer.setOption(ZMQ_CURVE_SERVERKEY, string: curve.serverPublicKey)
            try dealer.setOption(ZMQ_CURVE_PUBLICKEY, string: curve.client.publicKey)
            try dealer.setOption(ZMQ_CURVE_SECRETKEY, string: curve.client.secretKey)
        }
        try dealer.connect(endpoint)
        rank = config.rank
        engine = try WorkerEngine(config: config, context: ctx, dealer: dealer)
        engine.start(name: "llmprune-worker-\(config.rank)")
    }

    deinit { engine.stop() }

    /// Waits for `welcome`. Throws `refused`, `coordinatorLost` (nothing within the heartbeat timeout),
    /// `aborted`, `shutdown` or `timeout`.
    public func waitForWelcome(timeout: Double) throws -> Welcome {
        try engine.wait(timeout: timeout, what: "welcome") { s in s.welcome }
    }

    /// The next assignment, go or shutdown, waiting up to `timeout` seconds (nil when none came).
    /// Throws at once when the worker was refused or aborted, or the coordinator is lost.
    public func next(timeout: Double) throws -> WorkerEvent? {
        do {
            return try engine.wait(timeout: timeout, what: "event", allowShutdown: true) { s in
                s.events.isEmpty ? nil : s.events.removeFirst()
            }
        } catch WorkerError.timeout {
            return nil
        }
    }

    /// Waits for `go(phase, epoch)`, leaving other events queued for `next`.
    public func waitForGo(phase: String, epoch: Int, timeout: Double) throws {
        _ = try engine.wait(timeout: timeout, what: "go(\(phase), \(epoch))") { s -> Bool? in
            guard let i = s.events.firstIndex(of: .go(phase: phase, epoch: epoch)) else { return nil }
            s.events.remove(at: i)
            return true
        }
    }

    /// Waits for the coordinator's `shutdown` (the end of a job), skipping other events.
    public func waitForShutdown(timeout: Double) throws {
        _ = try engine.wait(timeout: timeout, what: "shutdown", allowShutdown: true) { s -> WorkerEvent? in
            s.shutdown ? .shutdown : nil
        }
    }

    public func progress(_ unit: WorkUnit, done: Int, total: Int, message: String = "") throws {
        try engine.send(.progress(unit, done: done, total: total, message: message), payload: nil)
    }

    public func done(_ unit: WorkUnit, summary: String = "", payload: Data? = nil) throws {
        try engine.send(.done(unit, summary: summary), payload: payload)
    }

    /// The terminal failure (refused, aborted, coordinator lost), once there is one.
    public var failure: WorkerError? { engine.withLock { $0.failure } }

    /// Bytes of control messages sent (headers and payloads) by the caller's `progress` and `done`.
    public var sentBytes: Int { engine.withLock { $0.sentBytes } }

    /// True once welcomed.
    public var isJoined: Bool { engine.withLock { $0.welcome != nil } }

    /// Sends what is queued (waiting up to one heartbeat interval for it to leave) and stops.
    public func close() { engine.stop(lingerMs: Int32(min(1000, engine.config.heartbeatInterval * 1000))) }
}

struct WorkerState {
    var welcome: Welcome?
    var events: [WorkerEvent] = []
    /// Terminal condition, thrown by every wait once set.
    var failure: WorkerError?
    var shutdown = false
    var seq: UInt64 = 0
    var lastHeard: Double
    var lastCoordinatorSeq: UInt64 = 0
    var nextBeat = 0.0
    var sentBytes = 0
}

final class WorkerEngine: ControlLoop, @unchecked Sendable {
    let config: WorkerConfig
    private var state: WorkerState   // under `cond`

    init(config: WorkerConfig, context: ZContext, dealer: ZSocket) throws {
        self.config = config
        state = WorkerState(lastHeard: ControlPlane.now())
        try super.init(context: context, socket: dealer, log: config.log)
    }

    func withLock<T>(_ body: (inout WorkerState) throws -> T) rethrows -> T {
        cond.lock()
        defer { cond.unlock() }
        return try body(&state)
    }

    // MARK: caller side

    /// Waits until `take` yields a value, a terminal failure occurs, or `timeout` passes.
    func wait<T>(timeout: Double, what: String, allowShutdown: Bool = false,
                 _ take: (inout WorkerState) -> T?) throws -> T {
        let deadline = Date(timeIntervalSinceNow: max(0, timeout))
        cond.lock()
        defer { cond.unlock() }
        while true {
            if let failure = state.failure { throw failure }
            if let v = take(&state) { return v }
            if state.shutdown {
                if allowShutdown, let v = (WorkerEvent.shutdown as? T) { return v }
                throw WorkerError.shutdown
            }
            if !running { throw WorkerError.closed }
            if !cond.wait(until: deadline) {
                if let failure = state.failure { throw failure }
                if let v = take(&state) { return v }
                throw WorkerError.timeout(what)
            }
        }
    }

    func send(_ body: ControlBody, payload: Data?) throws {
        if let payload, payload.count > config.limits.payloadBytes {
            throw WorkerError.payloadTooLarge(payload.count, limit: config.limits.payloadBytes)
        }
        cond.lock()
        defer { cond.unlock() }
        if let failure = state.failure { throw failure }
        guard running else { throw WorkerError.closed }
        let frames = try messageLocked(body, payload: payload).encode()
        state.sentBytes += frames.reduce(0) { $0 + $1.count }
        enqueueLocked(frames)
    }

    private func messageLocked(_ body: ControlBody, payload: Data? = nil) -> ControlMessage {
        state.seq += 1
        return ControlMessage(job: config.token, sender: config.rank, sequence: state.seq, body: body, payload: payload)
    }

    // MARK: loop side

    private func failLocked(_ error: WorkerError) {
        guard state.failure == nil else { return }
        state.failure = error
        log("rank \(config.rank): \(error)")
        cond.broadcast()
    }

    override func received(_ frames: [Data]) {
        cond.lock()
        defer { cond.unlock() }
        let msg: ControlMessage
        do {
            msg = try ControlMessage.decode(frames, limits: config.limits)
        } catch {
            log("rank \(config.rank): dropped message from coordinator: \(error)")
            return
        }
        // `refused` carries no token (the coordinator does not echo it to unauthenticated peers).
        if case .refused(let reason) = msg.body {
            failLocked(.refused(reason))
            return
        }
        guard msg.job == config.token else {
            log("rank \(config.rank): dropped \(msg.kind) with a wrong job token")
            return
        }
        guard msg.sequence > state.lastCoordinatorSeq else {
            log("rank \(config.rank): dropped \(msg.kind): sequence \(msg.sequence) not after \(state.lastCoordinatorSeq)")
            return
        }
        state.lastCoordinatorSeq = msg.sequence
        state.lastHeard = ControlPlane.now()
        switch msg.body {
        case .welcome(let cfg):
            if state.welcome == nil {
                state.welcome = Welcome(config: cfg, payload: msg.payload)
                state.nextBeat = 0
            }
        case .heartbeat:
            break
        case .assign(let unit):
            state.events.append(.assign(unit, payload: msg.payload))
        case .go(let phase, let epoch):
            state.events.append(.go(phase: phase, epoch: epoch))
        case .abort(let reason):
            failLocked(.aborted(reason))
        case .shutdown:
            state.shutdown = true
            state.events.append(.shutdown)
            log("rank \(config.rank): shutdown received")
        case .hello, .progress, .done, .refused:
            log("rank \(config.rank): dropped \(msg.kind): not a coordinator message")
        }
        cond.broadcast()
    }

    override func tick(now: Double) -> Double {
        cond.lock()
        defer { cond.unlock() }
        guard state.failure == nil, !state.shutdown else { return 1 }
        let silent = now - state.lastHeard
        if silent > config.heartbeatTimeout {
            failLocked(.coordinatorLost(silentFor: silent))
            return 1
        }
        if now >= state.nextBeat {
            let body: ControlBody = state.welcome == nil
                ? .hello(host: config.host, pid: config.pid, capabilities: config.capabilities) : .heartbeat
            if let frames = try? messageLocked(body).encode() { sendNow(frames, what: "\(body.kind)") }
            state.nextBeat = now + config.heartbeatInterval
        }
        return min(state.nextBeat - now, state.lastHeard + config.heartbeatTimeout - now + 0.001)
    }

    override func sendFailed(what: String, error: Error) {
        // EAGAIN: the pipe to the coordinator is full (it is gone or stalled); liveness will notice.
        if what != "heartbeat" && what != "hello" { log("rank \(config.rank): send \(what) failed: \(error)") }
    }
}
