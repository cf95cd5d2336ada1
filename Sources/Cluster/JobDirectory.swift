// The job directory of a cluster job: its settings, the attempts made, per-phase checkpoints (unit scores, plan),
// the timeline and report, and per-rank death markers. Only rank 0 writes the job-level files; each rank writes
// its own `attempt-E/rank-R.*`. Every file is written atomically, so a job killed at any instant leaves either the
// previous or the new version. Layout: docs/cluster.md.
import Foundation
import Glibc
import ProcessShim
import Support

public enum JobError: Error, CustomStringConvertible, Equatable {
    case exists(path: String)
    case notAJob(path: String, reason: String)
    case corrupt(path: String, reason: String)
    case alreadyComplete(path: String)

    public var description: String {
        switch self {
        case .exists(let p): "job directory \(p) exists (continue it with --resume \(p), or pass --force to start over)"
        case .notAJob(let p, let why): "\(p): not a job directory (\(why))"
        case .corrupt(let p, let why): "\(p): \(why)"
        case .alreadyComplete(let p): "job \(p) is already complete (llmprune cluster status \(p))"
        }
    }
}

/// job.json: what the job is (the command-line arguments it was started with).
public struct JobSpec: Codable, Equatable, Sendable {
    public var version = 1
    public var command: String
    public var arguments: [String]
    public var created: Double

    public init(command: String, arguments: [String]) {
        self.command = command
        self.arguments = arguments
        created = Date().timeIntervalSince1970
    }
}

/// state.json: the attempts and the completed phases.
public struct JobState: Codable, Equatable, Sendable {
    public struct Attempt: Codable, Equatable, Sendable {
        public var epoch: Int
        public var ranks: Int
        /// How the work was split (e.g. "samples", "layers", "data-parallel").
        public var mode: String
        public var started: Double
        /// The phase this attempt began with (earlier ones came from checkpoints).
        public var startPhase: String
        public var ended: Double?
        /// "complete", or why it stopped ("rank 2 lost: …"). Nil while running or when it was killed.
        public var outcome: String?
        /// Staging directory of the output, removed by the next attempt if this one did not commit it.
        public var staging: String?
    }
    public var attempts: [Attempt] = []
    /// Phase → epoch in which it completed.
    public var completed: [String: Int] = [:]

    public init() {}

    public func isComplete(_ phase: String) -> Bool { completed[phase] != nil }
    /// The first of the job's checkpointed `phases` not yet complete (nil when the job is done).
    public func nextPhase(of phases: [String]) -> String? { phases.first { !isComplete($0) } }
}

/// One rank's identity for an attempt (attempt-E/rank-R.json).
public struct RankRecord: Codable, Equatable, Sendable {
    public var rank: Int
    public var host: String
    public var pid: Int
    public var started: Double
}

public struct JobDirectory: Sendable {
    public let url: URL

    public init(_ url: URL) { self.url = url.standardizedFileURL }

    var jobFile: URL { url.appendingPathComponent("job.json") }
    var stateFile: URL { url.appendingPathComponent("state.json") }
    public var traceFile: URL { url.appendingPathComponent("trace.json") }
    public var reportFile: URL { url.appendingPathComponent("report.json") }
    public func attemptDir(_ epoch: Int) -> URL { url.appendingPathComponent("attempt-\(epoch)") }
    public func rankFile(_ epoch: Int, _ rank: Int) -> URL { attemptDir(epoch).appendingPathComponent("rank-\(rank).json") }
    public func exitMarker(_ epoch: Int, _ rank: Int) -> URL { attemptDir(epoch).appendingPathComponent("rank-\(rank).exit") }
    public func stallMarker(_ epoch: Int, _ rank: Int) -> URL { attemptDir(epoch).appendingPathComponent("rank-\(rank).stalled") }

    public var exists: Bool { FileManager.default.fileExists(atPath: jobFile.path) }

    // MARK: job-level files (rank 0)

    /// Creates a fresh job directory. An existing one is refused unless `force` (then it is emptied).
    public func create(_ spec: JobSpec, force: Bool) throws {
        let fm = FileManager.default
        if fm.fileExists(atPath: url.path) {
            guard force else { throw JobError.exists(path: url.path) }
            try fm.removeItem(at: url)
        }
        try fm.createDirectory(at: url, withIntermediateDirectories: false)
        try write(spec, to: jobFile)
        try write(JobState(), to: stateFile)
    }

    public func spec() throws -> JobSpec {
        guard exists else { throw JobError.notAJob(path: url.path, reason: "no job.json") }
        return try read(JobSpec.self, from: jobFile)
    }

    public func state() throws -> JobState { try read(JobState.self, from: stateFile) }

    public func update(_ body: (inout JobState) throws -> Void) throws {
        var s = try state()
        try body(&s)
        try write(s, to: stateFile)
    }

    /// Rank 0: creates the job (or reopens it with `resume`), removes the staging directories of attempts that
    /// did not commit, and records a new attempt starting at the first of `phases` without a checkpoint.
    public func beginAttempt(spec: JobSpec, resume: Bool, force: Bool, ranks: Int, mode: String, phases: [String],
                             quiet: Bool, staging: (_ epoch: Int) -> String?) throws -> JobState.Attempt {
        let fm = FileManager.default
        if resume { _ = try self.spec() } else { try create(spec, force: force) }
        var state = try self.state()
        guard let start = state.nextPhase(of: phases) else { throw JobError.alreadyComplete(path: url.path) }
        if let last = state.attempts.last, !quiet {
            for line in try diagnose(epoch: last.epoch).lines {
                FileHandle.standardError.write(Data("llmprune: previous \(line)\n".utf8))
            }
        }
        for a in state.attempts { if let s = a.staging { try? fm.removeItem(atPath: s) } }   // may be partial
        let epoch = (state.attempts.map(\.epoch).max() ?? -1) + 1
        let attempt = JobState.Attempt(epoch: epoch, ranks: ranks, mode: mode, started: Date().timeIntervalSince1970,
                                       startPhase: start, staging: staging(epoch))
        state.attempts.append(attempt)
        try write(state, to: stateFile)
        if !quiet {
            FileHandle.standardError.write(Data("llmprune: job \(url.path), attempt \(epoch) on \(ranks) rank(s), mode \(mode), starting at phase \(start)\n".utf8))
        }
        return attempt
    }

    /// Rank 0: marks `phase` complete in `epoch`.
    public func complete(_ phase: String, epoch: Int) throws { try update { $0.completed[phase] = epoch } }

    /// Rank 0: records how attempt `epoch` ended.
    public func end(epoch: Int, outcome: String) throws {
        try update { s in
            if let i = s.attempts.lastIndex(where: { $0.epoch == epoch }) {
                s.attempts[i].outcome = outcome
                s.attempts[i].ended = Date().timeIntervalSince1970
                if outcome == "complete" { s.attempts[i].staging = nil }
            }
        }
    }

    /// A file of the job directory.
    public func file(_ name: String) -> URL { url.appendingPathComponent(name) }

    /// Writes `value` as pretty JSON, atomically.
    public func write<T: Encodable>(_ value: T, to file: URL) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try enc.encode(value), to: file)
    }

    /// Reads a JSON file of the job; a missing or malformed file is a `JobError.corrupt` naming it.
    public func read<T: Decodable>(_ type: T.Type, from file: URL) throws -> T {
        let data: Data
        do { data = try Data(contentsOf: file) } catch {
            throw JobError.corrupt(path: file.path, reason: "cannot read: \(error.localizedDescription)")
        }
        do { return try JSONDecoder().decode(type, from: data) } catch {
            throw JobError.corrupt(path: file.path, reason: "not a valid \(file.lastPathComponent): \(error)")
        }
    }

    // MARK: per-rank files

    /// The job token of attempt `epoch`, for its user only (attempt-E/token, mode 0600, created with that mode
    /// so it is never readable by others even for an instant): what an operator needs to match a captured or
    /// logged message to the attempt. Only the rank 0 of that attempt writes it.
    public func tokenFile(_ epoch: Int) -> URL { attemptDir(epoch).appendingPathComponent("token") }

    public func recordToken(_ token: String, epoch: Int) throws {
        try FileManager.default.createDirectory(at: attemptDir(epoch), withIntermediateDirectories: true)
        let path = tokenFile(epoch).path
        unlink(path)   // a leftover of an attempt with this number: O_EXCL below must create the file anew
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemError(code: errno, path: path) }
        defer { close(fd) }
        let bytes = Array((token + "\n").utf8)
        guard Glibc.write(fd, bytes, bytes.count) == bytes.count else {
            throw SystemError(code: errno, path: path)
        }
    }

    /// Records this rank for `epoch` and starts its death watchdog; returns the watchdog's pipe.
    public func registerRank(epoch: Int, rank: Int) throws -> RankWatchdog {
        try FileManager.default.createDirectory(at: attemptDir(epoch), withIntermediateDirectories: true)
        let me = RankRecord(rank: rank, host: ProcessInfo.processInfo.hostName,
                            pid: Int(ProcessInfo.processInfo.processIdentifier), started: Date().timeIntervalSince1970)
        try write(me, to: rankFile(epoch, rank))
        return try RankWatchdog(marker: exitMarker(epoch, rank))
    }

    /// How attempt `epoch` ended, from the state and the ranks' markers (see `AttemptDiagnosis`).
    public func diagnose(epoch: Int) throws -> AttemptDiagnosis {
        let s = try state()
        guard let attempt = s.attempts.first(where: { $0.epoch == epoch }) else {
            throw JobError.corrupt(path: stateFile.path, reason: "no attempt \(epoch)")
        }
        var ranks: [AttemptDiagnosis.Rank] = []
        for r in 0..<attempt.ranks {
            let rec = try? read(RankRecord.self, from: rankFile(epoch, r))
            var exit: (Double, String)? = nil
            if let text = try? String(contentsOf: exitMarker(epoch, r), encoding: .utf8) {
                let line = text.trimmingCharacters(in: .whitespacesAndNewlines)
                if let sp = line.firstIndex(of: " "), let t = Double(line[..<sp]) {
                    exit = (t, String(line[line.index(after: sp)...]))
                }
            }
            ranks.append(.init(rank: r, host: rec?.host, pid: rec?.pid, started: rec?.started, exitTime: exit?.0,
                               exit: exit?.1,
                               stalled: FileManager.default.fileExists(atPath: stallMarker(epoch, r).path)))
        }
        return AttemptDiagnosis(attempt: attempt, ranks: ranks)
    }
}

/// What the markers say about one attempt: which rank ended first and how.
public struct AttemptDiagnosis: Sendable {
    public struct Rank: Sendable {
        public var rank: Int
        public var host: String?
        public var pid: Int?
        public var started: Double?
        /// When the rank's process ended (its watchdog saw the pipe close or a final word).
        public var exitTime: Double?
        /// "finished", "died" (killed without a word), or "aborting: why" / "failed: why".
        public var exit: String?
        public var stalled: Bool
    }
    public var attempt: JobState.Attempt
    public var ranks: [Rank]

    /// The rank whose process ended first without finishing (the likely cause), if any.
    public var firstFailure: Rank? {
        ranks.filter { $0.exit != nil && $0.exit != "finished" }.min { $0.exitTime! < $1.exitTime! }
    }

    /// The first rank that stopped with a reason of its own ("aborting: rank 2 lost …", "failed: …").
    public var firstReason: Rank? {
        ranks.filter { ($0.exit ?? "").hasPrefix("aborting") || ($0.exit ?? "").hasPrefix("failed") }
            .min { $0.exitTime! < $1.exitTime! }
    }

    public var lines: [String] {
        let a = attempt
        var out = ["attempt \(a.epoch): \(a.ranks) rank(s), mode \(a.mode), began with phase \(a.startPhase)"
                   + (a.outcome.map { ", outcome: \($0)" } ?? (a.ended == nil ? ", no outcome recorded (killed?)" : ""))]
        if let f = firstReason, let t = f.exitTime {
            out.append(String(format: "cause: rank %d (pid %@ on %@) %@ %.2f s after the attempt began", f.rank,
                              f.pid.map(String.init) ?? "?", f.host ?? "?", f.exit!, t - a.started))
        } else if let f = firstFailure, let t = f.exitTime {
            let others = ranks.filter { $0.rank != f.rank && $0.exit == "died" }.compactMap(\.exitTime)
            let spread = others.map { $0 - t }.max()
            let what = f.exit == "died" ? "died (killed, no last word)" : f.exit!
            // The launcher stops every rank once one dies, so all end within milliseconds; the first to end is the
            // likely cause, but the order is only as good as the watchdogs' wake-up (ms, worse on a loaded host).
            out.append(String(format: "first to end: rank %d (pid %@ on %@) %@ %.2f s after the attempt began",
                              f.rank, f.pid.map(String.init) ?? "?", f.host ?? "?", what, t - a.started)
                       + (spread.map { String(format: "; %d other rank(s) ended within %.3f s (stopped by the launcher)", others.count, $0) } ?? ""))
        }
        let first = ranks.compactMap(\.exitTime).min()
        for r in ranks {
            var when = ""
            if let t = r.exitTime, let f = first { when = String(format: " at +%.3f s", t - f) }
            out.append("  rank \(r.rank): pid \(r.pid.map(String.init) ?? "?") on \(r.host ?? "?"): \(r.exit ?? "no exit marker")\(when)"
                       + (r.stalled ? " (fault injection: stalled)" : ""))
        }
        return out
    }
}

/// The write end of a rank's death watchdog (see `shim_spawn_watchdog`).
public final class RankWatchdog: @unchecked Sendable {
    private let lock = NSLock()
    private var fd: Int32
    public let pid: Int32

    init(marker: URL) throws {
        var p: pid_t = 0
        let f = shim_spawn_watchdog(marker.path, &p)
        guard f >= 0 else {
            throw JobError.corrupt(path: marker.path, reason: "cannot start the rank watchdog: \(String(cString: strerror(errno)))")
        }
        fd = f
        pid = p
    }

    /// The rank's last word ("finished", "aborting: …"); only the first one counts.
    public func say(_ outcome: String) {
        lock.lock(); defer { lock.unlock() }
        guard fd >= 0 else { return }
        let line = outcome.replacingOccurrences(of: "\n", with: " ") + "\n"
        _ = line.withCString { Glibc.write(fd, $0, strlen($0)) }
        close(fd)
        fd = -1
    }
}
