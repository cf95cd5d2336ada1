// Control-plane messages: a versioned JSON header frame plus an optional binary payload frame.
// The wire format is specified in docs/cluster-protocol.md; decoding is strict and never traps.
import Foundation

/// One idempotent unit of work, keyed by (phase, shard, epoch). Re-sending or re-reporting the same unit
/// is harmless: the coordinator counts a unit as completed once.
public struct WorkUnit: Hashable, Codable, Sendable, CustomStringConvertible {
    public var phase: String
    public var shard: Int
    public var epoch: Int

    public init(phase: String, shard: Int, epoch: Int = 0) {
        self.phase = phase
        self.shard = shard
        self.epoch = epoch
    }

    public var description: String { "\(phase)/\(shard)@\(epoch)" }
}

/// What a worker says about itself in `hello`.
public struct WorkerInfo: Equatable, Sendable {
    public var rank: Int
    public var host: String
    public var pid: Int
    public var capabilities: [String]

    public init(rank: Int, host: String, pid: Int, capabilities: [String] = []) {
        self.rank = rank
        self.host = host
        self.pid = pid
        self.capabilities = capabilities
    }
}

/// The `kind` field of a header.
public enum ControlKind: String, Sendable, CaseIterable {
    case hello, welcome, refused, heartbeat, assign, progress, done, go, abort, shutdown

    /// Kinds that may carry a second (binary payload) frame.
    public var allowsPayload: Bool { self == .welcome || self == .assign || self == .done }
}

/// The kind-specific content of a message.
public enum ControlBody: Equatable, Sendable {
    /// Worker → coordinator: join request (the rank is the header's sender rank).
    case hello(host: String, pid: Int, capabilities: [String])
    /// Coordinator → worker: accepted; `config` is the job configuration (string map, caller-defined keys).
    case welcome(config: [String: String])
    /// Coordinator → worker: not accepted (wrong token, version, rank …). Carries an empty job token.
    case refused(reason: String)
    /// Either direction: liveness only (any message also counts as a heartbeat).
    case heartbeat
    /// Coordinator → worker: do this unit (parameters in the payload frame if any).
    case assign(WorkUnit)
    /// Worker → coordinator: progress of a unit.
    case progress(WorkUnit, done: Int, total: Int, message: String)
    /// Worker → coordinator: unit finished; a one-line summary and an optional small payload.
    case done(WorkUnit, summary: String)
    /// Coordinator → worker: permission to enter the collective of (phase, epoch).
    case go(phase: String, epoch: Int)
    /// Coordinator → worker: stop the job now.
    case abort(reason: String)
    /// Coordinator → worker: the job is finished; exit normally.
    case shutdown

    public var kind: ControlKind {
        switch self {
        case .hello: .hello
        case .welcome: .welcome
        case .refused: .refused
        case .heartbeat: .heartbeat
        case .assign: .assign
        case .progress: .progress
        case .done: .done
        case .go: .go
        case .abort: .abort
        case .shutdown: .shutdown
        }
    }
}

/// Size limits applied by `ControlMessage.decode` (and, on the coordinator's ROUTER, by ZMQ_MAXMSGSIZE).
public struct ControlLimits: Sendable, Equatable {
    /// Largest accepted header frame (JSON), bytes.
    public var headerBytes: Int
    /// Largest accepted payload frame, bytes.
    public var payloadBytes: Int

    public init(headerBytes: Int = 1 << 20, payloadBytes: Int = 16 << 20) {
        self.headerBytes = headerBytes
        self.payloadBytes = payloadBytes
    }

    public static let `default` = ControlLimits()

    /// The per-frame limit handed to libzmq: the larger of the two.
    public var maxFrameBytes: Int { max(headerBytes, payloadBytes) }
}

/// Why a message could not be decoded. Decoding never traps; callers log and drop.
public enum ControlDecodingError: Error, Equatable, Sendable, CustomStringConvertible {
    case badFrameCount(Int)
    case frameTooLarge(frame: Int, size: Int, limit: Int)
    case badJSON(String)
    case unsupportedVersion(Int?)
    case unknownKind(String)
    case missingField(String)
    case unexpectedField(String)
    case invalidField(String, String)
    case payloadMismatch(String)

    public var description: String {
        switch self {
        case .badFrameCount(let n): "control message has \(n) frames (expected 1 or 2)"
        case .frameTooLarge(let f, let size, let limit): "control frame \(f) is \(size) bytes (limit \(limit))"
        case .badJSON(let why): "control header is not valid JSON: \(why)"
        case .unsupportedVersion(let v):
            "control protocol version \(v.map(String.init) ?? "missing") (this build speaks \(ControlMessage.protocolVersion))"
        case .unknownKind(let k): "unknown control message kind '\(k)'"
        case .missingField(let f): "control header lacks field '\(f)'"
        case .unexpectedField(let f): "control header has unexpected field '\(f)'"
        case .invalidField(let f, let why): "control header field '\(f)' is invalid: \(why)"
        case .payloadMismatch(let why): "control payload: \(why)"
        }
    }
}

/// One control-plane message: header fields, body and optional payload.
public struct ControlMessage: Equatable, Sendable {
    /// The protocol version this build speaks; a header with another version is rejected.
    public static let protocolVersion = 1

    public var version: Int
    /// The job token: a per-job shared string both sides must present (not a cryptographic secret).
    public var job: String
    /// Sender's MPI rank (the coordinator uses its own rank, normally 0).
    public var sender: Int
    /// Per-sender, strictly increasing sequence number.
    public var sequence: UInt64
    public var body: ControlBody
    /// Optional binary payload (second frame); only for welcome, assign, done.
    public var payload: Data?

    public init(job: String, sender: Int, sequence: UInt64, body: ControlBody, payload: Data? = nil,
                version: Int = ControlMessage.protocolVersion) {
        self.version = version
        self.job = job
        self.sender = sender
        self.sequence = sequence
        self.body = body
        self.payload = payload
    }

    public var kind: ControlKind { body.kind }

    /// The work unit a message refers to, if any.
    public var unit: WorkUnit? {
        switch body {
        case .assign(let u), .progress(let u, _, _, _), .done(let u, _): u
        default: nil
        }
    }

    /// The frames to send: `[header]` or `[header, payload]`.
    public func encode() throws -> [Data] {
        var h = ControlHeader(v: version, job: job, rank: sender, seq: sequence, kind: kind.rawValue)
        switch body {
        case .hello(let host, let pid, let caps):
            h.host = host; h.pid = pid; h.caps = caps
        case .welcome(let config):
            h.config = config
        case .refused(let reason), .abort(let reason):
            h.reason = reason
        case .heartbeat, .shutdown:
            break
        case .assign(let u):
            h.setUnit(u)
        case .progress(let u, let done, let total, let message):
            h.setUnit(u); h.done = done; h.total = total; h.msg = message
        case .done(let u, let summary):
            h.setUnit(u); h.summary = summary
        case .go(let phase, let epoch):
            h.phase = phase; h.epoch = epoch
        }
        if let payload {
            guard kind.allowsPayload else { throw ControlDecodingError.payloadMismatch("\(kind) carries no payload") }
            h.plen = payload.count
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let header = try enc.encode(h)
        return payload.map { [header, $0] } ?? [header]
    }

    /// Decodes the frames of one message (without a ROUTER identity frame). Strict: size limits, version,
    /// known kind, exactly the fields of that kind with valid values, payload only where allowed.
    public static func decode(_ frames: [Data], limits: ControlLimits = .default)
        throws(ControlDecodingError) -> ControlMessage
    {
        guard frames.count == 1 || frames.count == 2 else { throw .badFrameCount(frames.count) }
        guard frames[0].count <= limits.headerBytes else {
            throw .frameTooLarge(frame: 0, size: frames[0].count, limit: limits.headerBytes)
        }
        if frames.count == 2, frames[1].count > limits.payloadBytes {
            throw .frameTooLarge(frame: 1, size: frames[1].count, limit: limits.payloadBytes)
        }
        let h: ControlHeader
        do {
            h = try JSONDecoder().decode(ControlHeader.self, from: frames[0])
        } catch let e as ControlDecodingError {
            throw e
        } catch let DecodingError.keyNotFound(key, _) {
            throw .missingField(key.stringValue)
        } catch let DecodingError.typeMismatch(_, ctx) {
            throw .invalidField(ctx.codingPath.map(\.stringValue).joined(separator: "."), "wrong type")
        } catch let DecodingError.valueNotFound(_, ctx) {
            throw .invalidField(ctx.codingPath.map(\.stringValue).joined(separator: "."), "null")
        } catch {
            throw .badJSON(String(describing: error).prefix(200).description)
        }
        let kind = ControlKind(rawValue: h.kind)!  // checked in ControlHeader.init(from:)
        let payload = frames.count == 2 ? frames[1] : nil
        if let payload {
            guard kind.allowsPayload else { throw .payloadMismatch("\(kind) carries no payload") }
            guard h.plen == payload.count else {
                throw .payloadMismatch("header says \(h.plen.map(String.init) ?? "none"), frame has \(payload.count) bytes")
            }
        } else if h.plen != nil {
            throw .payloadMismatch("header announces \(h.plen!) bytes but there is no payload frame")
        }
        func need<T>(_ v: T?, _ name: String) throws(ControlDecodingError) -> T {
            guard let v else { throw .missingField(name) }
            return v
        }
        func unit() throws(ControlDecodingError) -> WorkUnit {
            WorkUnit(phase: try need(h.phase, "phase"), shard: try need(h.shard, "shard"), epoch: try need(h.epoch, "epoch"))
        }
        let body: ControlBody
        switch kind {
        case .hello:
            body = .hello(host: try need(h.host, "host"), pid: try need(h.pid, "pid"), capabilities: try need(h.caps, "caps"))
        case .welcome: body = .welcome(config: try need(h.config, "config"))
        case .refused: body = .refused(reason: try need(h.reason, "reason"))
        case .heartbeat: body = .heartbeat
        case .assign: body = .assign(try unit())
        case .progress:
            let done = try need(h.done, "done"), total = try need(h.total, "total")
            guard done <= total else { throw .invalidField("done", "\(done) > total \(total)") }
            body = .progress(try unit(), done: done, total: total, message: try need(h.msg, "msg"))
        case .done: body = .done(try unit(), summary: try need(h.summary, "summary"))
        case .go: body = .go(phase: try need(h.phase, "phase"), epoch: try need(h.epoch, "epoch"))
        case .abort: body = .abort(reason: try need(h.reason, "reason"))
        case .shutdown: body = .shutdown
        }
        return ControlMessage(job: h.job, sender: h.rank, sequence: h.seq, body: body, payload: payload, version: h.v)
    }
}

/// The JSON header as it is on the wire (flat; absent fields are omitted). Decoding checks the version first,
/// then the kind, then that exactly the fields of that kind are present with in-range values.
struct ControlHeader: Codable {
    var v: Int
    var job: String
    var rank: Int
    var seq: UInt64
    var kind: String
    var phase: String?
    var shard: Int?
    var epoch: Int?
    var host: String?
    var pid: Int?
    var caps: [String]?
    var config: [String: String]?
    var reason: String?
    var done: Int?
    var total: Int?
    var msg: String?
    var summary: String?
    var plen: Int?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case v, job, rank, seq, kind, phase, shard, epoch, host, pid, caps, config, reason, done, total, msg, summary, plen
    }

    static let common: Set<String> = ["v", "job", "rank", "seq", "kind", "plen"]
    static func fields(of kind: ControlKind) -> Set<String> {
        switch kind {
        case .hello: ["host", "pid", "caps"]
        case .welcome: ["config"]
        case .refused, .abort: ["reason"]
        case .heartbeat, .shutdown: []
        case .assign: ["phase", "shard", "epoch"]
        case .progress: ["phase", "shard", "epoch", "done", "total", "msg"]
        case .done: ["phase", "shard", "epoch", "summary"]
        case .go: ["phase", "epoch"]
        }
    }

    init(v: Int, job: String, rank: Int, seq: UInt64, kind: String) {
        self.v = v; self.job = job; self.rank = rank; self.seq = seq; self.kind = kind
    }

    mutating func setUnit(_ u: WorkUnit) {
        phase = u.phase; shard = u.shard; epoch = u.epoch
    }

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    init(from decoder: Decoder) throws {
        let keys = Set(try decoder.container(keyedBy: AnyKey.self).allKeys.map(\.stringValue))
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // Version first, so a peer of another build gets "unsupported version", not a field error.
        let v: Int? = (try? c.decodeIfPresent(Int.self, forKey: .v)) ?? nil
        guard let v, v == ControlMessage.protocolVersion else { throw ControlDecodingError.unsupportedVersion(v) }
        self.v = v
        kind = try c.decode(String.self, forKey: .kind)
        guard let k = ControlKind(rawValue: kind) else { throw ControlDecodingError.unknownKind(String(kind.prefix(64))) }
        let allowed = Self.common.union(Self.fields(of: k))
        if let extra = keys.subtracting(allowed).sorted().first {
            throw ControlDecodingError.unexpectedField(String(extra.prefix(64)))
        }
        job = try c.decode(String.self, forKey: .job)
        rank = try c.decode(Int.self, forKey: .rank)
        seq = try c.decode(UInt64.self, forKey: .seq)
        phase = try c.decodeIfPresent(String.self, forKey: .phase)
        shard = try c.decodeIfPresent(Int.self, forKey: .shard)
        epoch = try c.decodeIfPresent(Int.self, forKey: .epoch)
        host = try c.decodeIfPresent(String.self, forKey: .host)
        pid = try c.decodeIfPresent(Int.self, forKey: .pid)
        caps = try c.decodeIfPresent([String].self, forKey: .caps)
        config = try c.decodeIfPresent([String: String].self, forKey: .config)
        reason = try c.decodeIfPresent(String.self, forKey: .reason)
        done = try c.decodeIfPresent(Int.self, forKey: .done)
        total = try c.decodeIfPresent(Int.self, forKey: .total)
        msg = try c.decodeIfPresent(String.self, forKey: .msg)
        summary = try c.decodeIfPresent(String.self, forKey: .summary)
        plen = try c.decodeIfPresent(Int.self, forKey: .plen)
        for (name, value) in [("rank", rank as Int?), ("shard", shard), ("epoch", epoch), ("pid", pid), ("done", done),
                              ("total", total), ("plen", plen)] {
            if let value, value < 0 { throw ControlDecodingError.invalidField(name, "negative (\(value))") }
        }
        if let phase, phase.isEmpty { throw ControlDecodingError.invalidField("phase", "empty") }
    }
}
