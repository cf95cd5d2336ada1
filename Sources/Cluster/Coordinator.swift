// Rank 0's side of the control plane: a ROUTER socket that admits workers presenting the job token, tracks
// their liveness from heartbeats, hands out idempotent work units, and gates collectives with `go`.
import CZeroMQ
import Foundation

public struct CoordinatorConfig: Sendable {
    /// The job token workers must present.
    public var token: String
    /// Where to bind. The default picks a free loopback port; `endpoint` reports it. Pass a routable
    /// address (`tcp://10.0.0.1:5555`, `tcp://*:5555`) only when workers on other hosts must reach it.
    public var bind: String = "tcp://127.0.0.1:0"
    /// The coordinator's own rank (sender rank of its messages).
    public var rank: Int = 0
    /// Seconds between heartbeats to each worker.
    public var heartbeatInterval: Double = 1.0
    /// Seconds of silence after which a worker is declared lost.
    public var heartbeatTimeout: Double = 5.0
    public var limits: ControlLimits = .default
    /// If set, only ranks in 0..<worldSize may join.
    public var worldSize: Int? = nil
    /// Sent to every worker in `welcome`.
    public var jobConfig: [String: String] = [:]
    public var welcomePayload: Data? = nil
    /// CURVE server keys (requires `CurveKeyPair.isAvailable`); nil = plain TCP.
    public var curve: CurveKeyPair? = nil
    /// With `curve`: the CURVE public keys (Z85) of the only clients admitted, checked by a ZAP handler at the
    /// handshake; nil admits any client that completes the handshake (admission by job token alone).
    public var clientKeys: Set<String>? = nil
    public var log: ControlLog = ControlPlane.stderrLog("coordinator")

    public init(token: String) { self.token = token }
}

public enum CoordinatorEvent: Equatable, Sendable {
    case joined(WorkerInfo)
    case progress(rank: Int, unit: WorkUnit, done: Int, total: Int, message: String)
    /// Emitted once per unit, for the first `done`; later duplicates are counted in `stats.duplicateDone`.
    case done(rank: Int, unit: WorkUnit, summary: String, payload: Data?)
    /// Heartbeat timeout. `unfinished`: units assigned to that rank and not completed (to reassign).
    case lost(rank: Int, unfinished: [WorkUnit])
    /// A message was dropped or a peer refused; `reason` is the logged line.
    case rejected(reason: String)
}

public enum CoordinatorError: Error, Equatable, CustomStringConvertible {
    case timeout(waitingFor: Int, joined: [Int])
    case unknownRank(Int)
    case closed
    case payloadTooLarge(Int, limit: Int)
    case invalidConfig(String)

    public var description: String {
        switch self {
        case .invalidConfig(let why): "invalid coordinator configuration: \(why)"
        case .timeout(let n, let joined): "timed out waiting for \(n) workers; joined: \(joined)"
        case .unknownRank(let r): "rank \(r) is not a live worker"
        case .closed: "coordinator is closed"
        case .payloadTooLarge(let n, let limit): "payload of \(n) bytes exceeds the limit of \(limit)"
        }
    }
}

public struct CoordinatorStats: Equatable, Sendable {
    /// Messages decoded and accepted from joined workers (including hello and heartbeats).
    public var accepted = 0
    /// Messages dropped: malformed, wrong token, replayed sequence, unexpected kind, before hello.
    public var dropped = 0
    /// Peers sent `refused`.
    public var refused = 0
    /// Messages from already refused peers, ignored silently.
    public var ignored = 0
    /// `done` reports for units already completed.
    public var duplicateDone = 0
    public var sendFailures = 0
    /// Connections that failed the CURVE handshake or whose client key is not of this job.
    public var handshakeRefused = 0
}

public final class Coordinator: @unchecked Sendable {
    private let engine: CoordinatorEngine
    /// The bound endpoint, with the real port for `…:0` binds.
    public let endpoint: String

    /// Binds the ROUTER and starts the I/O thread. Pass `context` to share one with inproc peers.
    public init(_ config: CoordinatorConfig, context: ZContext? = nil) throws {
        if let problem = controlConfigProblem(token: config.token, interval: config.heartbeatInterval,
                                              timeout: config.heartbeatTimeout) {
            throw CoordinatorError.invalidConfig(problem)
        }
        let ctx = context ?? ZContext()
        let router = try ZSocket(ctx, type: ZMQ_ROUTER)
        try router.setOption(ZMQ_ROUTER_MANDATORY, 1)   // unroutable sends fail instead of vanishing
        try router.setOption(ZMQ_SNDTIMEO, 0)           // never block the I/O thread
        try router.setOption(ZMQ_MAXMSGSIZE, int64: Int64(config.limits.maxFrameBytes))
        var gatekeeper: HandshakeGatekeeper? = nil
        if let curve = config.curve {
            try router.setOption(ZMQ_CURVE_SERVER, 1)
            try router.setOption(ZMQ_CURVE_SECRETKEY, string: curve.secretKey)
            gatekeeper = try HandshakeGatekeeper(context: ctx, router: router, clientKeys: config.clientKeys)
        } else if config.clientKeys != nil {
            throw CoordinatorError.invalidConfig("client keys without CURVE")
        }
        try router.bind(config.bind)
        endpoint = router.lastEndpoint ?? config.bind
        engine = try CoordinatorEngine(config: config, context: ctx, router: router)
        if let gatekeeper { gatekeeper.attach(to: engine) }
        config.log("listening on \(endpoint)\(config.curve != nil ? " (CURVE)" : "")")
        engine.start(name: "llmprune-coordinator")
    }

    deinit { engine.stop() }

    /// Blocks until at least `count` workers are live; returns the live ranks (sorted). Events stay queued
    /// for `poll`.
    @discardableResult
    public func waitForWorkers(_ count: Int, timeout: Double) throws -> [Int] {
        try engine.waitForWorkers(count, timeout: timeout)
    }

    /// Seconds of silence after which a worker is declared lost.
    public var heartbeatTimeout: Double { engine.config.heartbeatTimeout }

    /// Ranks currently joined and not lost, sorted.
    public var liveRanks: [Int] { engine.withLock { $0.live.keys.sorted() } }

    /// Sends `assign(unit)` to `rank` (which must be live) and records the assignment.
    public func assign(_ unit: WorkUnit, to rank: Int, payload: Data? = nil) throws {
        try engine.assign(unit, to: rank, payload: payload)
    }

    /// Sends `go(phase, epoch)` to every live worker; returns the ranks it went to.
    @discardableResult
    public func broadcastGo(phase: String, epoch: Int) throws -> [Int] {
        try engine.broadcast(.go(phase: phase, epoch: epoch))
    }

    /// Returns the queued events, waiting up to `timeout` seconds for the first one.
    public func poll(timeout: Double) -> [CoordinatorEvent] { engine.poll(timeout: timeout) }

    public func isCompleted(_ unit: WorkUnit) -> Bool { engine.withLock { $0.completed[unit] != nil } }

    /// Completed units and the rank whose `done` counted.
    public var completedUnits: [WorkUnit: Int] { engine.withLock { $0.completed } }

    public var stats: CoordinatorStats { engine.withLock { $0.stats } }

    /// Sends `abort(reason)` to every live worker, then stops (unsent messages linger up to one heartbeat
    /// interval).
    public func abort(reason: String) {
        engine.config.log("abort: \(reason)")
        _ = try? engine.broadcast(.abort(reason: reason))
        engine.stop(lingerMs: engine.lingerMs)
    }

    /// Sends `shutdown` to every live worker, then stops.
    public func shutdown() {
        _ = try? engine.broadcast(.shutdown)
        engine.stop(lingerMs: engine.lingerMs)
    }

    /// Stops at once without telling anyone (workers see the coordinator go silent).
    public func close() { engine.stop() }
}

/// Mutable state of the coordinator, guarded by the engine's lock.
struct CoordinatorState {
    struct Peer {
        var info: WorkerInfo
        var identity: Data
        var lastSeen: Double
        var lastSeq: UInt64
    }
    var live: [Int: Peer] = [:]                 // rank → peer
    var rankOf: [Data: Int] = [:]               // identity → rank, live peers only
    var gone: Set<Data> = []                    // identities refused: ignored
    var lost: [Data: Int] = [:]                 // identities declared lost → rank; told once, then gone
    var assigned: [WorkUnit: Int] = [:]
    var completed: [WorkUnit: Int] = [:]
    var events: [CoordinatorEvent] = []
    var stats = CoordinatorStats()
    var seq: UInt64 = 0
    var nextBeat = 0.0
}

final class CoordinatorEngine: ControlLoop, @unchecked Sendable {
    let config: CoordinatorConfig
    private var state = CoordinatorState()   // under `cond`
    var lingerMs: Int32 { Int32(min(1000, config.heartbeatInterval * 1000)) }

    init(config: CoordinatorConfig, context: ZContext, router: ZSocket) throws {
        self.config = config
        try super.init(context: context, socket: router, log: config.log)
    }

    func withLock<T>(_ body: (inout CoordinatorState) throws -> T) rethrows -> T {
        cond.lock()
        defer { cond.unlock() }
        return try body(&state)
    }

    // MARK: caller side

    func waitForWorkers(_ count: Int, timeout: Double) throws -> [Int] {
        let deadline = Date(timeIntervalSinceNow: timeout)
        cond.lock()
        defer { cond.unlock() }
        while state.live.count < count {
            if !running { throw CoordinatorError.closed }
            if !cond.wait(until: deadline) {
                if state.live.count >= count { break }
                throw CoordinatorError.timeout(waitingFor: count, joined: state.live.keys.sorted())
            }
        }
        return state.live.keys.sorted()
    }

    func poll(timeout: Double) -> [CoordinatorEvent] {
        let deadline = Date(timeIntervalSinceNow: max(0, timeout))
        cond.lock()
        defer { cond.unlock() }
        while state.events.isEmpty && running {
            if !cond.wait(until: deadline) { break }
        }
        let out = state.events
        state.events = []
        return out
    }

    func assign(_ unit: WorkUnit, to rank: Int, payload: Data?) throws {
        if let payload, payload.count > config.limits.payloadBytes {
            throw CoordinatorError.payloadTooLarge(payload.count, limit: config.limits.payloadBytes)
        }
        cond.lock()
        defer { cond.unlock() }
        guard running else { throw CoordinatorError.closed }
        guard let peer = state.live[rank] else { throw CoordinatorError.unknownRank(rank) }
        state.assigned[unit] = rank
        enqueueLocked([peer.identity] + (try messageLocked(.assign(unit), payload: payload).encode()))
    }

    func broadcast(_ body: ControlBody) throws -> [Int] {
        cond.lock()
        defer { cond.unlock() }
        guard running else { throw CoordinatorError.closed }
        let ranks = state.live.keys.sorted()
        for r in ranks {
            let frames = try messageLocked(body).encode()
            enqueueLocked([state.live[r]!.identity] + frames)
        }
        return ranks
    }

    private func messageLocked(_ body: ControlBody, payload: Data? = nil) -> ControlMessage {
        state.seq += 1
        return ControlMessage(job: config.token, sender: config.rank, sequence: state.seq, body: body, payload: payload)
    }

    // MARK: loop side

    private func emitLocked(_ e: CoordinatorEvent) {
        state.events.append(e)
        cond.broadcast()
    }

    /// Logs, counts and reports a dropped message. Caller holds the lock. A flood is logged sparsely and
    /// does not grow the event queue without bound.
    private func dropLocked(_ reason: String) {
        state.stats.dropped += 1
        let n = state.stats.dropped
        if n <= 100 || n % 1000 == 0 { log(n <= 100 ? reason : "\(reason) (\(n) dropped so far)") }
        if state.events.count < 1024 { emitLocked(.rejected(reason: reason)) }
    }

    private func sendLocked(_ identity: Data, _ body: ControlBody, job: String? = nil, payload: Data? = nil) {
        var m = messageLocked(body, payload: payload)
        if let job { m.job = job }
        guard let frames = try? m.encode() else { return }
        sendNow([identity] + frames, what: "\(m.kind)")
    }

    /// Refuses a peer once; afterwards its messages are ignored. The reply carries no job token.
    private func refuseLocked(_ identity: Data, _ reason: String) {
        state.stats.refused += 1
        state.gone.insert(identity)
        let line = "refused peer \(peerName(identity)): \(reason)"
        log(line)
        emitLocked(.rejected(reason: line))
        sendLocked(identity, .refused(reason: reason), job: "")
    }

    private func peerName(_ identity: Data) -> String {
        identity.map { String(format: "%02x", $0) }.joined()
    }

    /// A connection refused at the handshake (logged sparsely under a flood: a refused client reconnects every
    /// 100 ms). Loop thread, without the lock.
    func handshakeRefused(_ reason: String) {
        cond.lock()
        defer { cond.unlock() }
        state.stats.handshakeRefused += 1
        let n = state.stats.handshakeRefused
        guard n <= 5 || n % 100 == 0 else { return }
        let line = "refused a connection at the CURVE handshake: \(reason)" + (n > 5 ? " (\(n) so far)" : "")
        log(line)
        if state.events.count < 1024 { emitLocked(.rejected(reason: line)) }
    }

    override func sendFailed(what: String, error: Error) {
        state.stats.sendFailures += 1     // sendNow runs with the lock held
        if what != "heartbeat" { log("send \(what) failed: \(error)") }
    }

    override func received(_ frames: [Data]) {
        cond.lock()
        defer { cond.unlock() }
        guard frames.count >= 2 else { return }   // ROUTER always prepends the identity
        let id = frames[0]
        if state.gone.contains(id) {
            state.stats.ignored += 1
            return
        }
        if let rank = state.lost.removeValue(forKey: id) {
            // It came back after being declared lost: its units may have gone elsewhere. Tell it to stop.
            refuseLocked(id, "rank \(rank) was declared lost (silent for more than \(config.heartbeatTimeout) s)")
            return
        }
        let who = state.rankOf[id].map { "rank \($0)" } ?? "peer \(peerName(id))"
        let msg: ControlMessage
        do {
            msg = try ControlMessage.decode(Array(frames[1...]), limits: config.limits)
        } catch {
            if case .unsupportedVersion = error, state.rankOf[id] == nil {
                refuseLocked(id, error.description)
            } else {
                dropLocked("dropped message from \(who): \(error)")
            }
            return
        }
        guard msg.job == config.token else {
            if state.rankOf[id] == nil {
                refuseLocked(id, "wrong job token (rank \(msg.sender), \(msg.kind))")
            } else {
                dropLocked("dropped \(msg.kind) from \(who): wrong job token")
            }
            return
        }
        let now = ControlPlane.now()
        guard let rank = state.rankOf[id] else {
            guard case .hello(let host, let pid, let caps) = msg.body else {
                dropLocked("dropped \(msg.kind) from \(who): not joined (no hello yet)")
                return
            }
            admitLocked(id, WorkerInfo(rank: msg.sender, host: host, pid: pid, capabilities: caps), seq: msg.sequence, now: now)
            return
        }
        guard msg.sender == rank else {
            dropLocked("dropped \(msg.kind) from rank \(rank): claims rank \(msg.sender)")
            return
        }
        guard msg.sequence > state.live[rank]!.lastSeq else {
            dropLocked("dropped \(msg.kind) from rank \(rank): sequence \(msg.sequence) not after \(state.live[rank]!.lastSeq)")
            return
        }
        state.live[rank]!.lastSeq = msg.sequence
        state.live[rank]!.lastSeen = now
        state.stats.accepted += 1
        switch msg.body {
        case .hello:
            sendLocked(id, .welcome(config: config.jobConfig), payload: config.welcomePayload)  // idempotent re-join
        case .heartbeat:
            break
        case .progress(let unit, let done, let total, let message):
            emitLocked(.progress(rank: rank, unit: unit, done: done, total: total, message: message))
        case .done(let unit, let summary):
            if state.completed[unit] != nil {
                state.stats.duplicateDone += 1
                log("rank \(rank): duplicate done for \(unit) ignored")
            } else {
                state.completed[unit] = rank
                state.assigned[unit] = nil
                emitLocked(.done(rank: rank, unit: unit, summary: summary, payload: msg.payload))
            }
        case .welcome, .refused, .assign, .go, .abort, .shutdown:
            state.stats.accepted -= 1
            dropLocked("dropped \(msg.kind) from rank \(rank): not a worker message")
        }
    }

    private func admitLocked(_ id: Data, _ info: WorkerInfo, seq: UInt64, now: Double) {
        if let n = config.worldSize, !(0..<n).contains(info.rank) {
            refuseLocked(id, "rank \(info.rank) outside world of \(n)")
            return
        }
        if state.live[info.rank] != nil {
            refuseLocked(id, "rank \(info.rank) already joined from another connection")
            return
        }
        state.live[info.rank] = .init(info: info, identity: id, lastSeen: now, lastSeq: seq)
        state.rankOf[id] = info.rank
        state.stats.accepted += 1
        log("rank \(info.rank) joined from \(info.host) pid \(info.pid) caps \(info.capabilities)")
        sendLocked(id, .welcome(config: config.jobConfig), payload: config.welcomePayload)
        emitLocked(.joined(info))
    }

    override func tick(now: Double) -> Double {
        cond.lock()
        defer { cond.unlock() }
        for (rank, peer) in state.live where now - peer.lastSeen > config.heartbeatTimeout {
            state.live[rank] = nil
            state.rankOf[peer.identity] = nil
            state.lost[peer.identity] = rank
            let unfinished = state.assigned.filter { $0.value == rank }.map(\.key)
                .sorted { ($0.phase, $0.epoch, $0.shard) < ($1.phase, $1.epoch, $1.shard) }
            log(String(format: "rank %d lost: silent for %.2f s; unfinished units: %@", rank, now - peer.lastSeen,
                       unfinished.map(\.description).joined(separator: ", ")))
            emitLocked(.lost(rank: rank, unfinished: unfinished))
        }
        if now >= state.nextBeat {
            for peer in state.live.values { sendLocked(peer.identity, .heartbeat) }
            state.nextBeat = now + config.heartbeatInterval
        }
        var next = state.nextBeat - now
        for peer in state.live.values { next = min(next, peer.lastSeen + config.heartbeatTimeout - now + 0.001) }
        return next
    }
}

/// The coordinator's checks at the CURVE handshake, before any message: a ZAP handler (RFC 27) that admits only
/// the job's client keys, and a monitor of the ROUTER that reports clients failing the handshake (no CURVE, or
/// another server key), which never reach the ZAP handler. Both sockets are served by the coordinator's loop.
final class HandshakeGatekeeper {
    static let zapEndpoint = "inproc://zeromq.zap.01"   // fixed by RFC 27; one handler per context
    private let zap: ZSocket?
    private let monitor: ZSocket
    private let clientKeys: Set<[UInt8]>?

    /// Must run before the router binds, so no handshake escapes the checks.
    init(context: ZContext, router: ZSocket, clientKeys: Set<String>?) throws {
        self.clientKeys = try clientKeys.map { Set(try $0.map(SealedToken.rawKey)) }
        if clientKeys != nil {
            let z = try ZSocket(context, type: ZMQ_REP)
            try z.bind(Self.zapEndpoint)
            try router.setOption(ZMQ_ZAP_DOMAIN, string: "llmprune")
            zap = z
        } else {
            zap = nil
        }
        let name = "inproc://llmprune-handshake-monitor-\(UUID().uuidString)"
        let events = ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL
        guard zmq_socket_monitor(router.raw, name, events) == 0 else {
            throw ZMQError(call: "socket_monitor", code: zmq_errno())
        }
        monitor = try ZSocket(context, type: ZMQ_PAIR)
        try monitor.connect(name)
    }

    func attach(to engine: CoordinatorEngine) {
        if let zap {
            engine.serve(zap) { [clientKeys] socket, frames in
                Self.answer(frames, on: socket, clientKeys: clientKeys ?? [], engine: engine)
            }
        }
        engine.serve(monitor) { _, frames in
            // Frame 0: event (uint16) and value (uint32), little-endian on this platform; frame 1: the endpoint.
            guard frames.count == 2, frames[0].count == 6 else { return }
            let b = [UInt8](frames[0])
            let event = Int32(b[0]) | Int32(b[1]) << 8
            let value = UInt32(b[2]) | UInt32(b[3]) << 8 | UInt32(b[4]) << 16 | UInt32(b[5]) << 24
            let why = event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                ? String(format: "protocol error 0x%08x (a client without CURVE, or with another server key)", value)
                : "handshake failed (errno \(value))"
            engine.handshakeRefused("\(why) on \(String(decoding: frames[1], as: UTF8.self))")
        }
    }

    /// One ZAP request: version, request id, domain, address, routing id, mechanism, credentials.
    private static func answer(_ f: [Data], on socket: ZSocket, clientKeys: Set<[UInt8]>, engine: CoordinatorEngine) {
        guard f.count >= 6 else {   // only libzmq speaks here; still, a REP socket must answer to read again
            try? socket.send([Data("1.0".utf8), f.count > 1 ? f[1] : Data(), Data("500".utf8), Data("malformed".utf8), Data(), Data()])
            return
        }
        let address = String(decoding: f[3], as: UTF8.self)
        let admitted = String(decoding: f[5], as: UTF8.self) == "CURVE" && f.count == 7 && clientKeys.contains([UInt8](f[6]))
        let status = admitted ? "200" : "400"
        let text = admitted ? "OK" : "client key not of this job"
        try? socket.send([f[0], f[1], Data(status.utf8), Data(text.utf8), Data(), Data()])
        if !admitted { engine.handshakeRefused("\(text) (from \(address))") }
    }
}
