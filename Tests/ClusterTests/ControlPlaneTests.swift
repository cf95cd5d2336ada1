// Control plane: wire format, coordinator/worker behaviour, liveness, CURVE. All peers in this process over
// tcp://127.0.0.1:0 or inproc://; short heartbeats so each test stays well under 5 s.
import CZeroMQ
import Foundation
import Testing
@testable import Cluster

/// Collects log lines from the control plane.
final class LogSink: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    var log: ControlLog { { line in self.lock.withLock { self.lines.append(line) } } }
    var all: [String] { lock.withLock { lines } }
    func contains(_ s: String) -> Bool { all.contains { $0.contains(s) } }
    /// The coordinator logs socket-monitor events from its own thread, so a line can land after the client's call
    /// has already failed: poll for it for up to `seconds`.
    func eventuallyContains(_ s: String, within seconds: Double = 3) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if contains(s) { return true }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return contains(s)
    }
}

private let token = "job-7f3a"

private func coordinatorConfig(_ logs: LogSink, interval: Double = 0.1, timeout: Double = 1.0) -> CoordinatorConfig {
    var c = CoordinatorConfig(token: token)
    c.heartbeatInterval = interval
    c.heartbeatTimeout = timeout
    c.jobConfig = ["model": "tiny", "ratio": "0.25"]
    c.log = logs.log
    return c
}

private func workerConfig(rank: Int, _ logs: LogSink, token: String = token, interval: Double = 0.1,
                          timeout: Double = 1.0) -> WorkerConfig {
    var w = WorkerConfig(token: token, rank: rank)
    w.heartbeatInterval = interval
    w.heartbeatTimeout = timeout
    w.capabilities = ["param_first"]
    w.log = logs.log
    return w
}

/// Polls until `done(events so far)` holds or `timeout` passes; returns everything seen.
private func collect(_ c: Coordinator, timeout: Double = 3, until done: ([CoordinatorEvent]) -> Bool) -> [CoordinatorEvent] {
    var seen: [CoordinatorEvent] = []
    let deadline = Date(timeIntervalSinceNow: timeout)
    while !done(seen), Date() < deadline {
        seen += c.poll(timeout: min(0.2, max(0, deadline.timeIntervalSinceNow)))
    }
    return seen
}

private func frames(_ m: ControlMessage) throws -> [Data] { try m.encode() }

private func hello(rank: Int, seq: UInt64 = 1, token: String = token) -> ControlMessage {
    ControlMessage(job: token, sender: rank, sequence: seq, body: .hello(host: "test", pid: 1, capabilities: []))
}

@Suite(.serialized) struct ControlPlaneTests {
    // MARK: wire format

    @Test func messagesRoundTrip() throws {
        let u = WorkUnit(phase: "importance", shard: 3, epoch: 2)
        let bodies: [(ControlBody, Data?)] = [
            (.hello(host: "node1", pid: 42, capabilities: ["a", "b"]), nil),
            (.welcome(config: ["k": "v"]), Data([1, 2, 3])),
            (.refused(reason: "no"), nil), (.heartbeat, nil), (.assign(u), Data(count: 10)),
            (.progress(u, done: 1, total: 4, message: "layer 1"), nil), (.done(u, summary: "ok"), Data([9])),
            (.done(u, summary: ""), nil), (.go(phase: "reduce", epoch: 5), nil), (.abort(reason: "oom"), nil),
            (.shutdown, nil),
        ]
        for (i, (body, payload)) in bodies.enumerated() {
            let m = ControlMessage(job: token, sender: 3, sequence: UInt64(i + 1), body: body, payload: payload)
            let f = try m.encode()
            #expect(f.count == (payload == nil ? 1 : 2))
            #expect(try ControlMessage.decode(f) == m)
        }
        // The header is plain JSON with the documented field names.
        let h = try #require(try JSONSerialization.jsonObject(with: try ControlMessage(
            job: token, sender: 1, sequence: 9, body: .assign(u)).encode()[0]) as? [String: Any])
        #expect(Set(h.keys) == ["v", "job", "rank", "seq", "kind", "phase", "shard", "epoch"])
        #expect(h["kind"] as? String == "assign" && h["v"] as? Int == ControlMessage.protocolVersion)
    }

    @Test func decodingIsStrict() throws {
        func err(_ frames: [Data], limits: ControlLimits = .default) -> ControlDecodingError? {
            do { _ = try ControlMessage.decode(frames, limits: limits); return nil } catch { return error }
        }
        func json(_ s: String) -> [Data] { [Data(s.utf8)] }
        let base = #""job":"t","rank":1,"seq":1"#
        #expect(err([Data([0xff, 0x00, 0x13, 0x37])]).map { if case .badJSON = $0 { true } else { false } } == true)
        #expect(err(json("{\(base),\"v\":2,\"kind\":\"heartbeat\"}")) == .unsupportedVersion(2))
        #expect(err(json("{\(base),\"kind\":\"heartbeat\"}")) == .unsupportedVersion(nil))
        #expect(err(json("{\(base),\"v\":\"1\",\"kind\":\"heartbeat\"}")) == .unsupportedVersion(nil))
        #expect(err(json("{\(base),\"v\":1,\"kind\":\"explode\"}")) == .unknownKind("explode"))
        #expect(err(json("{\(base),\"v\":1,\"kind\":\"heartbeat\",\"phase\":\"x\"}")) == .unexpectedField("phase"))
        #expect(err(json("{\(base),\"v\":1,\"kind\":\"assign\",\"phase\":\"x\",\"epoch\":0}")) == .missingField("shard"))
        #expect(err(json("{\(base),\"v\":1,\"kind\":\"assign\",\"phase\":\"x\",\"shard\":-1,\"epoch\":0}"))
                == .invalidField("shard", "negative (-1)"))
        #expect(err(json("{\"v\":1,\"kind\":\"heartbeat\",\"rank\":1,\"seq\":1}")) == .missingField("job"))
        #expect(err(json("{\(base),\"v\":1,\"kind\":\"heartbeat\",\"plen\":1}") + [Data([1])])
                == .payloadMismatch("heartbeat carries no payload"))
        #expect(err(json("{\(base),\"v\":1,\"kind\":\"assign\",\"phase\":\"x\",\"shard\":0,\"epoch\":0,\"plen\":5}")
                    + [Data([1])]) != nil)
        #expect(err(json("{\(base),\"v\":1,\"kind\":\"progress\",\"phase\":\"x\",\"shard\":0,\"epoch\":0,\"done\":5,\"total\":4,\"msg\":\"\"}")) != nil)
        #expect(err([Data(count: 2 << 20)]) == .frameTooLarge(frame: 0, size: 2 << 20, limit: 1 << 20))
        let tight = ControlLimits(headerBytes: 1024, payloadBytes: 8)
        let done = try ControlMessage(job: "t", sender: 1, sequence: 1, body: .done(WorkUnit(phase: "p", shard: 0), summary: ""),
                                      payload: Data(count: 9)).encode()
        #expect(err(done, limits: tight) == .frameTooLarge(frame: 1, size: 9, limit: 8))
        #expect(err([]) == .badFrameCount(0))
        #expect(err([Data(), Data(), Data()]) == .badFrameCount(3))
    }

    // MARK: coordinator and workers

    @Test func workersJoinWithToken() throws {
        let logs = LogSink()
        let coord = try Coordinator(coordinatorConfig(logs))
        #expect(coord.endpoint.hasPrefix("tcp://127.0.0.1:") && !coord.endpoint.hasSuffix(":0"))
        let workers = try (1...2).map { try Worker(endpoint: coord.endpoint, config: workerConfig(rank: $0, logs)) }
        #expect(try coord.waitForWorkers(2, timeout: 3) == [1, 2])
        for w in workers {
            let welcome = try w.waitForWelcome(timeout: 3)
            #expect(welcome.config == ["model": "tiny", "ratio": "0.25"])
            #expect(w.isJoined)
        }
        let joined = collect(coord) { $0.count >= 2 }.compactMap { e -> Int? in
            if case .joined(let info) = e { return info.rank } else { return nil }
        }
        #expect(joined.sorted() == [1, 2])
        #expect(coord.liveRanks == [1, 2])
        #expect(logs.contains("rank 1 joined"))
        coord.shutdown()
        for w in workers { #expect(try w.next(timeout: 2) == .shutdown) }
    }

    @Test func badSettingsAreTypedErrors() throws {
        var c = CoordinatorConfig(token: "")
        #expect(throws: CoordinatorError.invalidConfig("empty job token")) { try Coordinator(c) }
        c.token = token
        c.heartbeatTimeout = 0.5
        #expect(throws: CoordinatorError.self) { try Coordinator(c) }
        c.heartbeatTimeout = 5
        c.bind = "tcp://127.0.0.1:notaport"
        #expect(throws: ZMQError.self) { try Coordinator(c) }
        var w = WorkerConfig(token: token, rank: 1)
        w.heartbeatInterval = 0
        #expect(throws: WorkerError.self) { try Worker(endpoint: "tcp://127.0.0.1:1", config: w) }
    }

    @Test func inprocTransportWorks() throws {
        let logs = LogSink()
        let ctx = ZContext()
        var cfg = coordinatorConfig(logs)
        cfg.bind = "inproc://control-\(UUID().uuidString)"
        let coord = try Coordinator(cfg, context: ctx)
        #expect(coord.endpoint == cfg.bind)
        let w = try Worker(endpoint: coord.endpoint, config: workerConfig(rank: 0, logs), context: ctx)
        _ = try w.waitForWelcome(timeout: 3)
        #expect(coord.liveRanks == [0])
        w.close()
        coord.close()
    }

    @Test func wrongTokenIsRefusedAndLogged() throws {
        let logs = LogSink()
        let coord = try Coordinator(coordinatorConfig(logs))
        let bad = try Worker(endpoint: coord.endpoint, config: workerConfig(rank: 1, logs, token: "guess"))
        #expect(throws: WorkerError.refused("wrong job token (rank 1, hello)")) { try bad.waitForWelcome(timeout: 3) }
        let events = collect(coord) { !$0.isEmpty }
        #expect(events.contains { if case .rejected(let r) = $0 { r.contains("wrong job token") } else { false } })
        #expect(logs.contains("refused peer") && logs.contains("wrong job token"))
        #expect(coord.liveRanks.isEmpty && coord.stats.refused == 1)
        // A refused peer is ignored afterwards, even with the right token.
        let ctx = ZContext()
        let raw = try ZSocket(ctx, type: ZMQ_DEALER)
        try raw.connect(coord.endpoint)
        try raw.send(frames(hello(rank: 2, token: "nope")))
        #expect(try raw.receive(timeoutMs: 2000).map { try ControlMessage.decode($0).body } == .refused(reason: "wrong job token (rank 2, hello)"))
        try raw.send(frames(hello(rank: 2, seq: 2)))
        #expect(try raw.receive(timeoutMs: 300) == nil)
        #expect(coord.liveRanks.isEmpty)
        coord.close()
    }

    @Test func malformedFramesDoNotStopTheCoordinator() throws {
        let logs = LogSink()
        let coord = try Coordinator(coordinatorConfig(logs))
        let ctx = ZContext()
        let raw = try ZSocket(ctx, type: ZMQ_DEALER)
        try raw.connect(coord.endpoint)
        try raw.send([Data([0xde, 0xad, 0xbe, 0xef, 0x00])])                        // garbage
        try raw.send([Data("{\"v\":1,\"kind\":".utf8)])                             // truncated JSON
        try raw.send([Data(count: 2 << 20)])                                         // 2 MiB header frame
        try raw.send([Data(), Data(), Data()])                                       // three frames
        try raw.send([Data("{\"v\":1,\"job\":\"\(token)\",\"rank\":1,\"seq\":1,\"kind\":\"explode\"}".utf8)])
        try raw.send(frames(ControlMessage(job: token, sender: 1, sequence: 1, body: .heartbeat)))  // before hello
        let dropped = collect(coord) { $0.count >= 6 }
        #expect(dropped.count == 6)
        #expect(dropped.allSatisfy { if case .rejected = $0 { true } else { false } })
        #expect(coord.stats.dropped == 6)
        #expect(logs.contains("is 2097152 bytes (limit 1048576)") && logs.contains("unknown control message kind"))
        // A hello of another protocol version is answered with `refused`, then ignored.
        let v2 = try ZSocket(ctx, type: ZMQ_DEALER)
        try v2.connect(coord.endpoint)
        try v2.send([Data("{\"v\":2,\"job\":\"\(token)\",\"rank\":5,\"seq\":1,\"kind\":\"hello\"}".utf8)])
        let reply = try #require(try v2.receive(timeoutMs: 2000))
        guard case .refused(let reason) = try ControlMessage.decode(reply).body else { Issue.record("no refusal"); return }
        #expect(reason.contains("version 2"))
        // Still serving: a good worker joins, works and reports.
        let w = try Worker(endpoint: coord.endpoint, config: workerConfig(rank: 1, logs))
        _ = try w.waitForWelcome(timeout: 3)
        let unit = WorkUnit(phase: "importance", shard: 0)
        try coord.assign(unit, to: 1, payload: Data([7]))
        #expect(try w.next(timeout: 2) == .assign(unit, payload: Data([7])))
        try w.progress(unit, done: 1, total: 2, message: "half")
        try w.done(unit, summary: "ok", payload: Data([1, 2]))
        let events = collect(coord) { $0.contains { if case .done = $0 { true } else { false } } }
        #expect(events.contains(.progress(rank: 1, unit: unit, done: 1, total: 2, message: "half")))
        #expect(events.contains(.done(rank: 1, unit: unit, summary: "ok", payload: Data([1, 2]))))
        coord.shutdown()
    }

    @Test func oversizedFramesAreCutByLibzmq() throws {
        let logs = LogSink()
        var cfg = coordinatorConfig(logs)
        cfg.limits = ControlLimits(headerBytes: 16 << 10, payloadBytes: 64 << 10)   // ZMQ_MAXMSGSIZE = 64 KiB
        let coord = try Coordinator(cfg)
        let ctx = ZContext()
        let raw = try ZSocket(ctx, type: ZMQ_DEALER)
        try raw.connect(coord.endpoint)
        try raw.send([Data(count: 2 << 20)])
        #expect(coord.poll(timeout: 0.5).isEmpty)   // never reaches the application: libzmq dropped the peer
        let w = try Worker(endpoint: coord.endpoint, config: workerConfig(rank: 3, logs))
        _ = try w.waitForWelcome(timeout: 3)
        #expect(coord.liveRanks == [3])
        coord.close()
    }

    @Test func silentWorkerIsDeclaredLost() throws {
        let logs = LogSink()
        let coord = try Coordinator(coordinatorConfig(logs, interval: 0.3, timeout: 1.0))
        let live = try Worker(endpoint: coord.endpoint, config: workerConfig(rank: 1, logs, interval: 0.3, timeout: 1.0))
        _ = try live.waitForWelcome(timeout: 3)
        // Rank 2 says hello, is welcomed, then stops heartbeating while its connection stays open.
        let ctx = ZContext()
        let raw = try ZSocket(ctx, type: ZMQ_DEALER)
        try raw.connect(coord.endpoint)
        let start = ControlPlane.now()
        try raw.send(frames(hello(rank: 2)))
        #expect(try raw.receive(timeoutMs: 2000).map { try ControlMessage.decode($0).kind } == .welcome)
        let unit = WorkUnit(phase: "importance", shard: 5)
        try coord.assign(unit, to: 2)
        let events = collect(coord, timeout: 4) { $0.contains { if case .lost = $0 { true } else { false } } }
        let elapsed = ControlPlane.now() - start
        #expect(events.contains(.lost(rank: 2, unfinished: [unit])))
        #expect(elapsed >= 1.0 && elapsed < 2.5, "lost after \(elapsed) s")
        #expect(coord.liveRanks == [1])        // the heartbeating worker stays
        #expect(logs.contains("rank 2 lost"))
        #expect(throws: CoordinatorError.unknownRank(2)) { try coord.assign(unit, to: 2) }
        // If it wakes up, it is told it is out of the job.
        try raw.send(frames(ControlMessage(job: token, sender: 2, sequence: 2, body: .heartbeat)))
        var kinds: [ControlKind] = []       // heartbeats sent before it was declared lost, then the refusal
        while kinds.last != .refused, kinds.count < 20, let f = try raw.receive(timeoutMs: 2000) {
            kinds.append(try ControlMessage.decode(f).kind)
        }
        #expect(kinds.last == .refused && kinds.dropLast().allSatisfy { $0 == .heartbeat || $0 == .assign })
        coord.close()
    }

    @Test func goReachesAllWorkers() throws {
        let logs = LogSink()
        let coord = try Coordinator(coordinatorConfig(logs))
        let workers = try (0..<3).map { try Worker(endpoint: coord.endpoint, config: workerConfig(rank: $0, logs)) }
        try coord.waitForWorkers(3, timeout: 3)
        try coord.assign(WorkUnit(phase: "reduce", shard: 0, epoch: 1), to: 0)
        #expect(try coord.broadcastGo(phase: "reduce", epoch: 1) == [0, 1, 2])
        for w in workers { try w.waitForGo(phase: "reduce", epoch: 1, timeout: 2) }
        // waitForGo left the assignment queued for `next`.
        #expect(try workers[0].next(timeout: 1) == .assign(WorkUnit(phase: "reduce", shard: 0, epoch: 1), payload: nil))
        #expect(throws: WorkerError.timeout("go(reduce, 2)")) { try workers[1].waitForGo(phase: "reduce", epoch: 2, timeout: 0.2) }
        coord.abort(reason: "test over")
        for w in workers { #expect(throws: WorkerError.aborted("test over")) { try w.next(timeout: 2) } }
    }

    @Test func duplicateDoneIsCountedOnce() throws {
        let logs = LogSink()
        let coord = try Coordinator(coordinatorConfig(logs))
        let a = try Worker(endpoint: coord.endpoint, config: workerConfig(rank: 1, logs))
        let b = try Worker(endpoint: coord.endpoint, config: workerConfig(rank: 2, logs))
        try coord.waitForWorkers(2, timeout: 3)
        let unit = WorkUnit(phase: "importance", shard: 7, epoch: 0)
        try coord.assign(unit, to: 1)
        try a.done(unit, summary: "first")
        try a.done(unit, summary: "again")
        let events = collect(coord) { $0.contains { if case .done = $0 { true } else { false } } }
        try b.done(unit, summary: "reassigned copy")           // e.g. after a reassignment
        try b.done(WorkUnit(phase: "importance", shard: 8), summary: "other")
        let later = collect(coord) { $0.contains { if case .done = $0 { true } else { false } } }
        let dones = (events + later).compactMap { e -> (Int, WorkUnit, String)? in
            if case .done(let r, let u, let s, _) = e { return (r, u, s) } else { return nil }
        }
        // Duplicates arrive on two connections; wait (bounded) until both were processed.
        for _ in 0..<100 where coord.stats.duplicateDone < 2 { Thread.sleep(forTimeInterval: 0.02) }
        #expect(dones.count == 2)
        #expect(dones.first.map { $0.0 == 1 && $0.1 == unit && $0.2 == "first" } == true)
        #expect(coord.completedUnits == [unit: 1, WorkUnit(phase: "importance", shard: 8): 2])
        #expect(coord.stats.duplicateDone == 2)
        #expect(coord.isCompleted(unit))
        coord.close()
    }

    @Test func workerDetectsDeadCoordinator() throws {
        let logs = LogSink()
        let coord = try Coordinator(coordinatorConfig(logs, interval: 0.2, timeout: 0.8))
        let w = try Worker(endpoint: coord.endpoint, config: workerConfig(rank: 1, logs, interval: 0.2, timeout: 0.8))
        _ = try w.waitForWelcome(timeout: 3)
        #expect(try w.next(timeout: 0.5) == nil)   // heartbeats keep it alive past the timeout window
        let start = ControlPlane.now()
        coord.close()                               // dies without a word
        do {
            _ = try w.next(timeout: 3)
            Issue.record("expected coordinatorLost")
        } catch WorkerError.coordinatorLost(let silent) {
            #expect(silent > 0.8)
            #expect(ControlPlane.now() - start < 2.0)
        }
        #expect(throws: WorkerError.self) { try w.done(WorkUnit(phase: "p", shard: 0)) }
        #expect(logs.contains("coordinator lost"))
    }

    @Test func workerWithoutCoordinatorGivesUp() throws {
        // Bind and close a socket to get a loopback port nobody listens on.
        let ctx = ZContext()
        var endpoint = ""
        do {
            let s = try ZSocket(ctx, type: ZMQ_ROUTER)
            try s.bind("tcp://127.0.0.1:0")
            endpoint = try #require(s.lastEndpoint)
        }
        let w = try Worker(endpoint: endpoint, config: workerConfig(rank: 1, LogSink(), interval: 0.1, timeout: 0.5))
        #expect(throws: WorkerError.self) { try w.waitForWelcome(timeout: 3) }
    }

    // MARK: security

    @Test func curveAvailabilityMatchesLibzmq() {
        #expect(CurveKeyPair.isAvailable == (zmq_has("curve") != 0))
    }

    @Test(.enabled(if: CurveKeyPair.isAvailable)) func curvePairTalksAndWrongServerKeyCannot() throws {
        let logs = LogSink()
        let server = try CurveKeyPair.generate()
        #expect(server.publicKey.count == 40 && server.secretKey.count == 40)
        var cfg = coordinatorConfig(logs, interval: 0.1, timeout: 0.8)
        cfg.curve = server
        let coord = try Coordinator(cfg)
        var good = workerConfig(rank: 1, logs, interval: 0.1, timeout: 0.8)
        good.curve = try CurveClientKeys(serverPublicKey: server.publicKey)
        let w = try Worker(endpoint: coord.endpoint, config: good)
        _ = try w.waitForWelcome(timeout: 3)
        try coord.assign(WorkUnit(phase: "p", shard: 1), to: 1, payload: Data("secret".utf8))
        #expect(try w.next(timeout: 2) == .assign(WorkUnit(phase: "p", shard: 1), payload: Data("secret".utf8)))

        var wrong = workerConfig(rank: 2, logs, interval: 0.1, timeout: 0.8)
        wrong.curve = try CurveClientKeys(serverPublicKey: try CurveKeyPair.generate().publicKey)
        let intruder = try Worker(endpoint: coord.endpoint, config: wrong)
        let plain = try Worker(endpoint: coord.endpoint, config: workerConfig(rank: 3, logs, interval: 0.1, timeout: 0.8))
        #expect(throws: WorkerError.self) { try intruder.waitForWelcome(timeout: 3) }
        #expect(throws: WorkerError.self) { try plain.waitForWelcome(timeout: 3) }
        #expect(coord.liveRanks == [1])
        coord.shutdown()
    }

    @Test(.enabled(if: CurveKeyPair.isAvailable)) func onlyTheJobsClientKeysGetIn() throws {
        let logs = LogSink()
        let server = try CurveKeyPair.generate()
        let member = try CurveKeyPair.generate(), stale = try CurveKeyPair.generate()
        var cfg = coordinatorConfig(logs, interval: 0.1, timeout: 0.8)
        cfg.curve = server
        cfg.clientKeys = [member.publicKey, stale.publicKey]
        let coord = try Coordinator(cfg)

        var good = workerConfig(rank: 1, logs, interval: 0.1, timeout: 0.8)
        good.curve = try CurveClientKeys(serverPublicKey: server.publicKey, client: member)
        let w = try Worker(endpoint: coord.endpoint, config: good)
        _ = try w.waitForWelcome(timeout: 3)

        // The server key alone is not enough: the ZAP handler refuses a client key the job did not hand out.
        var outsider = workerConfig(rank: 2, logs, interval: 0.1, timeout: 0.8)
        outsider.curve = try CurveClientKeys(serverPublicKey: server.publicKey)
        let o = try Worker(endpoint: coord.endpoint, config: outsider)
        #expect(throws: WorkerError.self) { try o.waitForWelcome(timeout: 3) }
        #expect(logs.eventuallyContains("refused a connection at the CURVE handshake: client key not of this job"))

        // No CURVE at all: the handshake fails before ZAP, and the monitor logs it.
        let plain = try Worker(endpoint: coord.endpoint, config: workerConfig(rank: 3, logs, interval: 0.1, timeout: 0.8))
        #expect(throws: WorkerError.self) { try plain.waitForWelcome(timeout: 3) }
        // libzmq reports this as a protocol error (mechanism mismatch) or, when the client's side hangs up first, as
        // a failed handshake with EPIPE; either is logged by the monitor (the ZAP handler never sees this client).
        let atHandshake = {
            logs.all.contains { $0.contains("refused a connection at the CURVE handshake") && !$0.contains("not of this job") }
        }
        let end = Date().addingTimeInterval(3)
        while !atHandshake() && Date() < end { Thread.sleep(forTimeInterval: 0.02) }
        #expect(atHandshake(), "\(logs.all)")

        // A job key but the token of another attempt: through the handshake, refused on the token.
        var old = workerConfig(rank: 4, logs, token: "job-of-an-earlier-attempt", interval: 0.1, timeout: 0.8)
        old.curve = try CurveClientKeys(serverPublicKey: server.publicKey, client: stale)
        let s = try Worker(endpoint: coord.endpoint, config: old)
        #expect(throws: WorkerError.self) { try s.waitForWelcome(timeout: 3) }
        #expect(logs.contains("refused peer"))

        #expect(coord.liveRanks == [1])
        #expect(coord.stats.handshakeRefused >= 2)
        #expect(coord.stats.refused == 1)
        coord.shutdown()
    }

    @Test(.enabled(if: CurveKeyPair.isAvailable)) func sealedTokenOpensOnlyWithItsKey() throws {
        let worker = try CurveKeyPair.generate(), other = try CurveKeyPair.generate()
        let box = try SealedToken.seal(Data(token.utf8), to: worker.publicKey)
        #expect(box.range(of: Data(token.utf8)) == nil)
        #expect(try SealedToken.open(box, with: worker) == Data(token.utf8))
        #expect(throws: SealedTokenError.cannotOpen) { try SealedToken.open(box, with: other) }
    }

    @Test func encryptionIsOnBeyondLoopbackUnlessInsecure() {
        var o = SessionOptions()
        #expect(!o.encrypted)                                  // tcp://127.0.0.1:0
        for local in ["tcp://127.0.0.1:5555", "tcp://localhost:1", "tcp://[::1]:7", "tcp://lo:9", "ipc:///tmp/x", "inproc://a"] {
            #expect(SessionOptions.isLocal(local), "\(local)")
        }
        for remote in ["tcp://*:5555", "tcp://0.0.0.0:5555", "tcp://10.0.0.1:5555", "tcp://node1:5555", "tcp://[::]:5555", "tcp://eth0:1"] {
            #expect(!SessionOptions.isLocal(remote), "\(remote)")
        }
        o.bind = "tcp://*:5555"
        #expect(o.encrypted == true)
        o.insecure = true
        #expect(!o.encrypted)
        o.curve = true
        #expect(o.problem == "--insecure: contradicts --curve")
    }
}
