// Per-rank timeline of a cluster job in Chrome's trace-event format (opens in Perfetto and chrome://tracing):
// one "complete" event per span (load, forward, backward, reduce, wait, score, write …), one process per rank.
import Foundation

public struct TraceEvent: Codable, Equatable, Sendable {
    public var name: String
    /// Category: the job phase the span belongs to.
    public var cat: String
    public var ph: String
    /// Start and duration in microseconds since the job's origin (rank 0's wall clock at start-up).
    public var ts: Double
    public var dur: Double?
    public var pid: Int
    public var tid: Int
    public var args: [String: String]?
}

/// Records spans on one rank. Thread-safe; cheap enough for a few hundred spans per job.
public final class TraceRecorder: @unchecked Sendable {
    public let rank: Int
    /// Wall-clock seconds (since 1970) of the job's time zero, shared by all ranks.
    public var origin: Double
    private let lock = NSLock()
    private var events: [TraceEvent] = []

    public init(rank: Int, origin: Double = Date().timeIntervalSince1970) {
        self.rank = rank
        self.origin = origin
    }

    /// Runs `body` and records it as a span named `name` in phase `phase`.
    @discardableResult
    public func span<T>(_ name: String, phase: String, args: [String: String]? = nil, _ body: () throws -> T) rethrows -> T {
        let start = Date().timeIntervalSince1970
        defer { record(name, phase: phase, start: start, end: Date().timeIntervalSince1970, args: args) }
        return try body()
    }

    /// Records a span between two wall-clock instants (seconds since 1970).
    public func record(_ name: String, phase: String, start: Double, end: Double, args: [String: String]? = nil) {
        let e = TraceEvent(name: name, cat: phase, ph: "X", ts: (start - origin) * 1e6, dur: max(0, end - start) * 1e6,
                           pid: rank, tid: 0, args: args)
        lock.lock(); events.append(e); lock.unlock()
    }

    public var recorded: [TraceEvent] {
        lock.lock(); defer { lock.unlock() }
        return events
    }

    /// Seconds spent in spans of `phase` named `name` (all names when nil).
    public func seconds(phase: String, name: String? = nil) -> Double {
        recorded.filter { $0.cat == phase && (name == nil || $0.name == name) }.reduce(0) { $0 + ($1.dur ?? 0) } / 1e6
    }
}

public enum ChromeTrace {
    /// The trace file: every rank's events plus a process name per rank ("rank 2 (host)"), and the job's origin
    /// (`otherData.origin`, wall-clock seconds since 1970; the trace-event format's free-form metadata object), so
    /// spans can be put on the wall clock — e.g. beside network counters sampled outside the job.
    public static func encode(events: [TraceEvent], rankNames: [Int: String], origin: Double) throws -> Data {
        var all = rankNames.keys.sorted().map { r in
            TraceEvent(name: "process_name", cat: "__metadata", ph: "M", ts: 0, dur: nil, pid: r, tid: 0,
                       args: ["name": rankNames[r]!])
        }
        all += events.sorted { ($0.pid, $0.ts) < ($1.pid, $1.ts) }
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        struct File: Encodable { var traceEvents: [TraceEvent]; var displayTimeUnit = "ms"; var otherData: [String: Double] }
        return try enc.encode(File(traceEvents: all, otherData: ["origin": origin]))
    }
}
