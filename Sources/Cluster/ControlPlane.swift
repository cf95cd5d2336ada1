// Shared machinery of the control plane: logging hook, monotonic clock, CURVE keys, and the I/O loop that
// owns a ZeroMQ socket on its own thread (so heartbeats keep flowing while the caller computes or sits in an
// MPI collective).
import CZeroMQ
import Dispatch
import Foundation

/// Where the control plane writes its log lines (one line per call, no trailing newline).
public typealias ControlLog = @Sendable (String) -> Void

public enum ControlPlane {
    /// A log that writes `[prefix] line` to stderr.
    public static func stderrLog(_ prefix: String) -> ControlLog {
        { line in FileHandle.standardError.write(Data("[\(prefix)] \(line)\n".utf8)) }
    }

    /// Seconds on a monotonic clock (immune to wall-clock jumps).
    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
}

/// Why a token/heartbeat setting is unusable, or nil.
func controlConfigProblem(token: String, interval: Double, timeout: Double) -> String? {
    if token.isEmpty { return "empty job token" }
    if !(interval > 0) { return "heartbeat interval \(interval) s is not positive" }
    if !(timeout > interval) { return "heartbeat timeout \(timeout) s does not exceed the interval \(interval) s" }
    return nil
}

/// A CURVE key pair in Z85 text (40 characters each).
public struct CurveKeyPair: Sendable, Equatable {
    public let publicKey: String
    public let secretKey: String

    public init(publicKey: String, secretKey: String) {
        self.publicKey = publicKey
        self.secretKey = secretKey
    }

    /// Whether the installed libzmq supports CURVE (`zmq_has("curve")`).
    public static var isAvailable: Bool { ZContext.has("curve") }

    /// A fresh key pair from `zmq_curve_keypair`.
    public static func generate() throws -> CurveKeyPair {
        var pub = [CChar](repeating: 0, count: 41)
        var sec = [CChar](repeating: 0, count: 41)
        guard zmq_curve_keypair(&pub, &sec) == 0 else { throw ZMQError(call: "curve_keypair", code: zmq_errno()) }
        let p = pub.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        let s = sec.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return CurveKeyPair(publicKey: p, secretKey: s)
    }
}

/// CURVE settings of a worker: the coordinator's public key (distributed out of band, e.g. in the job
/// directory) and the worker's own pair (fresh per process unless given).
public struct CurveClientKeys: Sendable, Equatable {
    public var serverPublicKey: String
    public var client: CurveKeyPair

    public init(serverPublicKey: String, client: CurveKeyPair? = nil) throws {
        self.serverPublicKey = serverPublicKey
        self.client = try client ?? CurveKeyPair.generate()
    }
}

/// Owns one ZeroMQ socket and drives it from a private thread: sends queued frames, receives, and calls
/// `tick` for timers. Subclasses keep their state under `cond` and override the hooks; the socket is touched
/// only by the loop thread (plus construction and option setting before `start`).
class ControlLoop: @unchecked Sendable {
    let cond = NSCondition()
    let context: ZContext
    /// The data socket; loop thread only once started. Nil after the loop ends.
    private(set) var socket: ZSocket?
    private var wakeRecv: ZSocket?            // loop thread only
    private var wakeSend: ZSocket?            // under `cond`
    private var outbox: [[Data]] = []         // under `cond`
    private var stopping = false              // under `cond`
    private var closeLingerMs: Int32 = 0      // under `cond`
    private(set) var running = false          // under `cond`
    private let finished = DispatchSemaphore(value: 0)
    /// Further sockets the loop serves (the coordinator's ZAP handler and handshake monitor), each with what to
    /// do with a message; loop thread only once started. Their handlers run without `cond` held.
    private var auxiliary: [(socket: ZSocket, handle: (ZSocket, [Data]) -> Void)] = []
    let log: ControlLog

    init(context: ZContext, socket: ZSocket, log: @escaping ControlLog) throws {
        self.context = context
        self.socket = socket
        self.log = log
        let name = "inproc://llmprune-control-wake-\(UUID().uuidString)"
        let r = try ZSocket(context, type: ZMQ_PAIR)
        try r.bind(name)
        let s = try ZSocket(context, type: ZMQ_PAIR)
        try s.setOption(ZMQ_SNDTIMEO, 0)
        try s.connect(name)
        wakeRecv = r
        wakeSend = s
    }

    /// Adds a socket for the loop to read; before `start` only.
    func serve(_ socket: ZSocket, _ handle: @escaping (ZSocket, [Data]) -> Void) {
        auxiliary.append((socket, handle))
    }

    func start(name: String) {
        cond.lock(); running = true; cond.unlock()
        let t = Thread { [self] in run() }
        t.name = name
        t.start()
    }

    /// Queues frames for the loop thread to send. Caller must hold `cond`.
    func enqueueLocked(_ frames: [Data]) {
        guard !stopping else { return }
        outbox.append(frames)
        _ = try? wakeSend?.send([Data()])   // EAGAIN when many wakes are pending: the loop is awake anyway
    }

    /// Asks the loop to send what is queued, close the socket (keeping unsent messages up to `lingerMs`) and
    /// end; returns when it has. Idempotent; must not be called from the loop thread.
    func stop(lingerMs: Int32 = 0) {
        cond.lock()
        let wasRunning = running
        if !stopping {
            stopping = true
            closeLingerMs = lingerMs
            _ = try? wakeSend?.send([Data()])
        }
        cond.unlock()
        if wasRunning {
            finished.wait()
            finished.signal()   // let later stop() calls through
        }
        cond.lock()
        wakeSend = nil
        cond.unlock()
    }

    // MARK: hooks (loop thread)

    /// One multipart message arrived.
    func received(_ frames: [Data]) {}
    /// Timers; returns seconds until it wants to be called again.
    func tick(now: Double) -> Double { 1 }
    /// The loop is about to end.
    func willStop() {}

    /// Sends on the data socket; loop thread only, with `cond` held (so `sendFailed` may touch state).
    /// Never blocks (ZMQ_SNDTIMEO 0). Returns false on failure.
    /// Queued messages go first, so per-sender sequence numbers leave in order.
    @discardableResult
    func sendNow(_ frames: [Data], what: String) -> Bool {
        flushOutboxLocked()
        return rawSend(frames, what: what)
    }

    private func flushOutboxLocked() {
        let out = outbox
        outbox = []
        for frames in out { rawSend(frames, what: "queued message") }
    }

    @discardableResult
    private func rawSend(_ frames: [Data], what: String) -> Bool {
        guard let socket else { return false }
        do {
            try socket.send(frames)
            return true
        } catch {
            sendFailed(what: what, error: error)
            return false
        }
    }

    func sendFailed(what: String, error: Error) {
        log("send \(what) failed: \(error)")
    }

    private func run() {
        var items = [zmq_pollitem_t](repeating: zmq_pollitem_t(), count: 2 + auxiliary.count)
        while true {
            cond.lock()
            flushOutboxLocked()
            let stop = stopping
            cond.unlock()
            if stop { break }
            guard let socket, let wakeRecv else { break }

            let wait = max(0.001, min(tick(now: ControlPlane.now()), 1.0))
            items[0] = zmq_pollitem_t(socket: socket.raw, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
            items[1] = zmq_pollitem_t(socket: wakeRecv.raw, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
            for (i, a) in auxiliary.enumerated() {
                items[2 + i] = zmq_pollitem_t(socket: a.socket.raw, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
            }
            let rc = zmq_poll(&items, Int32(items.count), Int(wait * 1000))
            if rc < 0 {
                let e = zmq_errno()
                if e == ETERM { break }
                continue  // EINTR
            }
            if items[1].revents & Int16(ZMQ_POLLIN) != 0 {
                while (try? wakeRecv.receive(timeoutMs: 0)) != nil {}
            }
            for (i, a) in auxiliary.enumerated() where items[2 + i].revents & Int16(ZMQ_POLLIN) != 0 {
                for _ in 0..<1000 {
                    guard let frames = try? a.socket.receive(timeoutMs: 0) else { break }
                    a.handle(a.socket, frames)
                }
            }
            if items[0].revents & Int16(ZMQ_POLLIN) != 0 {
                // Bounded batch so timers still run under a flood.
                for _ in 0..<1000 {
                    let frames: [Data]?
                    do { frames = try socket.receive(timeoutMs: 0) } catch {
                        log("receive failed: \(error)")
                        break
                    }
                    guard let frames else { break }
                    received(frames)
                }
            }
        }
        willStop()
        cond.lock()
        socket?.lingerMs = closeLingerMs
        socket = nil          // closes it (linger applies to what is still queued)
        wakeRecv = nil
        auxiliary = []
        running = false
        cond.broadcast()
        cond.unlock()
        finished.signal()
    }
}
