// The control plane's transport: small owning wrappers over libzmq contexts and sockets.
import CZeroMQ
import Foundation

public struct ZMQError: Error, CustomStringConvertible {
    public let call: String
    public let code: Int32
    public var description: String { "zmq \(call): \(String(cString: zmq_strerror(code)))" }
}

/// A ZeroMQ context; contexts are thread-safe.
public final class ZContext: @unchecked Sendable {
    public let raw: UnsafeMutableRawPointer
    public init() { raw = zmq_ctx_new()! }
    deinit { zmq_ctx_term(raw) }

    public static var version: (major: Int, minor: Int, patch: Int) {
        var a: Int32 = 0, b: Int32 = 0, c: Int32 = 0
        zmq_version(&a, &b, &c)
        return (Int(a), Int(b), Int(c))
    }

    /// Whether the installed libzmq was built with a capability (`"curve"`, `"ipc"`, …).
    public static func has(_ capability: String) -> Bool { zmq_has(capability) != 0 }
}

/// A ZeroMQ socket; not thread-safe, keep it on one thread. Closed with linger 0 so shutdown never blocks.
public final class ZSocket {
    public let raw: UnsafeMutableRawPointer
    private let context: ZContext

    public init(_ context: ZContext, type: Int32) throws {
        guard let s = zmq_socket(context.raw, type) else { throw ZMQError(call: "socket", code: zmq_errno()) }
        raw = s
        self.context = context
    }

    /// Milliseconds `close` may keep unsent messages (applied at close time; 0 = drop them, never block).
    public var lingerMs: Int32 = 0

    deinit {
        var linger: Int32 = lingerMs
        zmq_setsockopt(raw, ZMQ_LINGER, &linger, MemoryLayout<Int32>.size)
        zmq_close(raw)
    }

    public func bind(_ endpoint: String) throws {
        guard zmq_bind(raw, endpoint) == 0 else { throw ZMQError(call: "bind \(endpoint)", code: zmq_errno()) }
    }

    public func connect(_ endpoint: String) throws {
        guard zmq_connect(raw, endpoint) == 0 else { throw ZMQError(call: "connect \(endpoint)", code: zmq_errno()) }
    }

    /// Sets an `int` socket option (ZMQ_SNDHWM, ZMQ_ROUTER_MANDATORY, ZMQ_SNDTIMEO, ZMQ_CURVE_SERVER, …).
    public func setOption(_ option: Int32, _ value: Int32) throws {
        var v = value
        guard zmq_setsockopt(raw, option, &v, MemoryLayout<Int32>.size) == 0 else {
            throw ZMQError(call: "setsockopt \(option)", code: zmq_errno())
        }
    }

    /// Sets an `int64_t` socket option (ZMQ_MAXMSGSIZE).
    public func setOption(_ option: Int32, int64 value: Int64) throws {
        var v = value
        guard zmq_setsockopt(raw, option, &v, MemoryLayout<Int64>.size) == 0 else {
            throw ZMQError(call: "setsockopt \(option)", code: zmq_errno())
        }
    }

    /// Sets a string socket option, passed NUL-terminated (CURVE keys in Z85, ZMQ_ZAP_DOMAIN).
    public func setOption(_ option: Int32, string value: String) throws {
        let rc = value.withCString { zmq_setsockopt(raw, option, $0, strlen($0) + 1) }
        guard rc == 0 else { throw ZMQError(call: "setsockopt \(option)", code: zmq_errno()) }
    }

    /// The endpoint the socket last bound to, with the port the OS picked for `tcp://…:0` (ZMQ_LAST_ENDPOINT).
    public var lastEndpoint: String? {
        var buf = [CChar](repeating: 0, count: 1024)
        var len = buf.count
        guard zmq_getsockopt(raw, ZMQ_LAST_ENDPOINT, &buf, &len) == 0 else { return nil }
        return buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// Sends a multipart message.
    public func send(_ frames: [Data]) throws {
        for (i, f) in frames.enumerated() {
            let flags: Int32 = i + 1 < frames.count ? ZMQ_SNDMORE : 0
            let rc = f.withUnsafeBytes { zmq_send(raw, $0.baseAddress, f.count, flags) }
            guard rc >= 0 else { throw ZMQError(call: "send", code: zmq_errno()) }
        }
    }

    /// Receives one multipart message; nil on timeout (`timeoutMs` ≥ 0) .
    public func receive(timeoutMs: Int32 = -1) throws -> [Data]? {
        var t = timeoutMs
        zmq_setsockopt(raw, ZMQ_RCVTIMEO, &t, MemoryLayout<Int32>.size)
        var frames: [Data] = []
        while true {
            var msg = zmq_msg_t()
            zmq_msg_init(&msg)
            defer { zmq_msg_close(&msg) }
            if zmq_msg_recv(&msg, raw, 0) < 0 {
                let e = zmq_errno()
                if e == EAGAIN && frames.isEmpty { return nil }
                throw ZMQError(call: "recv", code: e)
            }
            frames.append(Data(bytes: zmq_msg_data(&msg), count: zmq_msg_size(&msg)))
            if zmq_msg_more(&msg) == 0 { return frames }
        }
    }
}
