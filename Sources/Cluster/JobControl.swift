// The two control roles inside a cluster job. Rank 0 runs `CoordinatorSide`: the coordinator plus a monitor thread
// that consumes its events (joins, per-rank progress, finished units, lost ranks) while the main thread computes or
// sits in MPI. Other ranks run `WorkerSide`: a worker plus a watch thread. Either side ends the whole job with
// MPI_Abort when the other is lost (abort-and-relaunch; the job resumes from its checkpoints with --resume).
import Foundation

/// The per-rank status lines on rank 0's terminal.
public final class RankProgressDisplay: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [Int: String] = [:]
    private let ranks: Int
    private let quiet: Bool
    private let tty = isatty(2) != 0
    private var drawn = 0
    private let start = Date()

    init(ranks: Int, quiet: Bool) {
        self.ranks = ranks
        self.quiet = quiet
    }

    func update(rank: Int, _ text: String) {
        guard !quiet else { return }
        lock.lock(); defer { lock.unlock() }
        let line = String(format: "[%7.2f s] rank %d: %@", Date().timeIntervalSince(start), rank, text)
        lines[rank] = line
        if !tty {
            FileHandle.standardError.write(Data((line + "\n").utf8))
            return
        }
        // Redraw one line per rank in place.
        var out = drawn > 0 ? "\u{1B}[\(drawn)A" : ""
        for r in 0..<ranks { out += "\u{1B}[2K" + (lines[r] ?? "rank \(r): waiting") + "\n" }
        drawn = ranks
        FileHandle.standardError.write(Data(out.utf8))
    }

    /// A line of its own above the status block (log messages).
    func log(_ text: String) {
        lock.lock(); defer { lock.unlock() }
        if tty && drawn > 0 {
            FileHandle.standardError.write(Data("\u{1B}[\(drawn)A\u{1B}[J".utf8))
            drawn = 0
        }
        FileHandle.standardError.write(Data("llmprune: \(text)\n".utf8))
    }
}

/// How long a rank may go without progress inside a phase before rank 0 aborts the job (flags --progress-timeout,
/// --progress-floor). Heartbeats prove only that a process lives; a rank parked by a bug, a stuck file system or a
/// dead device heartbeats on while every other rank waits for it. Progress is any `progress` or `done` a rank
/// sends (rank 0: its own progress), counted from the start of the phase. A rank that waits on others (at a
/// rendezvous, after a `done`, or inside a collective it announced with ClusterSession.waiting) is not behind.
public struct ProgressDeadline: Sendable, Equatable {
    /// Seconds without progress, for every rank and phase; nil derives the deadline from the other ranks' pace.
    public var fixed: Double? = nil
    /// With the derived deadline: never less than this many seconds.
    public var floor: Double = 60
    /// With the derived deadline: this many times the time the slowest waiting rank took past the laggard.
    public var factor: Double = 10

    public init() {}

    /// The rank over its deadline, given each rank's last progress (monotonic seconds, the phase start at the
    /// earliest) and the ranks waiting on others, with the deadline and how it was derived; nil if none is over.
    ///
    /// Fixed: the working rank with the oldest progress, once that is `fixed` seconds old. Derived: a working
    /// rank r ≥ 1 is late only while other ranks wait; the slowest of them took `pace` seconds from r's last progress
    /// to the start of its wait (its part of the phase, for ranks that began together), and r gets
    /// max(floor, factor × pace). While no rank waits (all computing) nothing is late. Rank 0 is never late by the
    /// derived rule: it alone does work the others have no share in (the perplexity before and after tune, the plan,
    /// the report), so the others' pace says nothing about its own — measured: tune's perplexity before training
    /// took rank 0 over 60 s on a loaded machine while rank 1, done loading in 0.74 s, waited. Only a fixed
    /// `--progress-timeout` times rank 0.
    public func overdue(last: [Double], waiting: Set<Int>, now: Double) -> (rank: Int, limit: Double, basis: String)? {
        for r in last.indices.sorted(by: { last[$0] < last[$1] }) where !waiting.contains(r) {
            if let fixed {
                if now - last[r] > fixed { return (r, fixed, "--progress-timeout") }
                continue
            }
            if r == 0 { continue }
            let paces = waiting.filter { $0 != r }.map { Swift.max(0, last[$0] - last[r]) }
            guard let pace = paces.max() else { continue }
            let limit = Swift.max(floor, factor * pace)
            if now - last[r] > limit {
                return (r, limit, String(format: "%g × %.2f s, the slowest waiting rank's time past it, at least %g s",
                                         factor, pace, floor))
            }
        }
        return nil
    }
}

/// Notes of the `progress` messages that say a rank waits on others (ClusterSession.waiting); not displayed.
public enum ProgressNote {
    public static let waiting = "waiting on other ranks"
    public static let resumed = "resumed"
}

/// What a worker reported when it finished a unit.
struct UnitReport: Sendable {
    var rank: Int
    var summary: String
    var payload: Data?
}

final class CoordinatorSide: @unchecked Sendable {
    let coordinator: Coordinator
    let comm: Communicator
    let dir: JobDirectory
    let epoch: Int
    let watchdog: RankWatchdog
    let display: RankProgressDisplay
    /// The command that continues the job, for the abort message.
    var resumeHint = ""
    private let cond = NSCondition()
    private var done: [WorkUnit: UnitReport] = [:]   // under cond
    private var stopped = false                     // under cond
    /// The phase the job is in, for the loss message.
    var phase: String {
        get { cond.lock(); defer { cond.unlock() }; return _phase }
        set { cond.lock(); _phase = newValue; cond.unlock() }
    }
    private var _phase = "start"
    let deadline: ProgressDeadline
    /// When the current phase (or step) began for every rank, monotonic; nil before the first phase.
    private var phaseStart: Double? = nil          // under cond
    private var lastProgress: [Int: Double] = [:]  // under cond
    private var waitingRanks = Set<Int>()          // under cond: ranks that said they wait on others
    private var awaiting: String? = nil            // under cond: the unit rank 0 waits for in awaitDone

    /// A phase (or a step of one) begins for every rank: from here each rank's progress is timed anew.
    func beginPhase() {
        cond.lock(); phaseStart = ControlPlane.now(); waitingRanks = []; cond.unlock()
    }

    /// `rank` made progress (a message, or rank 0's own step), and now works or waits on others.
    func progressed(_ rank: Int, waiting: Bool = false) {
        cond.lock()
        lastProgress[rank] = ControlPlane.now()
        if waiting { waitingRanks.insert(rank) } else { waitingRanks.remove(rank) }
        cond.unlock()
    }

    /// Aborts the job if a rank is over its progress deadline.
    private func checkProgress() {
        cond.lock()
        let start = phaseStart, name = _phase
        let last = start.map { s in (0..<comm.size).map { Swift.max(s, lastProgress[$0] ?? s) } }
        var waiting = waitingRanks
        if let awaiting {
            waiting.insert(0)
            for r in 1..<comm.size where done[WorkUnit(phase: awaiting, shard: r, epoch: epoch)] != nil { waiting.insert(r) }
        }
        cond.unlock()
        guard let last else { return }
        let now = ControlPlane.now()
        guard let late = deadline.overdue(last: last, waiting: waiting, now: now) else { return }
        fatal(String(format: "rank %d made no progress for %.1f s during phase %@ (epoch %d; deadline %.1f s: %@)",
                     late.rank, now - last[late.rank], name, epoch, late.limit, late.basis))
    }

    init(coordinator: Coordinator, comm: Communicator, dir: JobDirectory, epoch: Int, watchdog: RankWatchdog,
         display: RankProgressDisplay, deadline: ProgressDeadline) {
        self.coordinator = coordinator
        self.deadline = deadline
        self.comm = comm
        self.dir = dir
        self.epoch = epoch
        self.watchdog = watchdog
        self.display = display
        let t = Thread { [self] in monitor() }
        t.name = "llmprune-job-monitor"
        t.start()
    }

    private func monitor() {
        while true {
            cond.lock(); let stop = stopped; cond.unlock()
            if stop { return }
            for e in coordinator.poll(timeout: 0.25) {
                switch e {
                case .joined(let info):
                    display.update(rank: info.rank, "joined from \(info.host) pid \(info.pid)")
                case .progress(let rank, let unit, let d, let total, let message):
                    progressed(rank, waiting: message == ProgressNote.waiting)
                    if message != ProgressNote.waiting && message != ProgressNote.resumed {
                        display.update(rank: rank, "\(unit.phase) \(d)/\(total) \(message)")
                    }
                case .done(let rank, let unit, let summary, let payload):
                    progressed(rank, waiting: true)   // its part is done: it goes on to a rendezvous
                    cond.lock()
                    done[unit] = UnitReport(rank: rank, summary: summary, payload: payload)
                    cond.broadcast()
                    cond.unlock()
                case .lost(let rank, _):
                    fatal(String(format: "rank %d lost: no heartbeat for more than %.1f s during phase %@ (epoch %d)",
                                 rank, coordinator.heartbeatTimeout, phase, epoch))
                case .rejected(let reason):
                    if reason.hasPrefix("refused") { display.log(reason) }
                }
            }
            checkProgress()
        }
    }

    /// Waits until every rank in `ranks` has reported `done` for (phase, its rank, epoch).
    func awaitDone(phase: String, ranks: Range<Int>) -> [Int: UnitReport] {
        cond.lock(); defer { cond.unlock() }
        lastProgress[0] = ControlPlane.now()   // rank 0 has done its part of what comes before
        awaiting = phase
        defer { awaiting = nil; lastProgress[0] = ControlPlane.now() }
        while true {
            let got = ranks.compactMap { done[WorkUnit(phase: phase, shard: $0, epoch: epoch)] }
            if got.count == ranks.count { return Dictionary(uniqueKeysWithValues: got.map { ($0.rank, $0) }) }
            cond.wait()
        }
    }

    /// Records why the attempt stops, tells the workers, and ends every rank (MPI_Abort). Any thread.
    func fatal(_ reason: String) -> Never {
        display.log("\(reason); aborting the job. Resume it with: \(resumeHint)")
        try? dir.end(epoch: epoch, outcome: reason)
        watchdog.say("aborting: \(reason)")
        coordinator.abort(reason: reason)
        comm.abort(code: 4)
    }

    func stop() {
        cond.lock(); stopped = true; cond.unlock()
    }
}

final class WorkerSide: @unchecked Sendable {
    let worker: Worker
    let comm: Communicator
    let watchdog: RankWatchdog
    private let lock = NSLock()
    private var stopped = false

    init(worker: Worker, comm: Communicator, watchdog: RankWatchdog) {
        self.worker = worker
        self.comm = comm
        self.watchdog = watchdog
        let t = Thread { [self] in watch() }
        t.name = "llmprune-worker-watch"
        t.start()
    }

    /// A failed control plane (coordinator lost, job aborted) ends this rank and, through MPI, the job.
    private func watch() {
        while true {
            lock.lock(); let stop = stopped; lock.unlock()
            if stop { return }
            if let f = worker.failure {
                FileHandle.standardError.write(Data("llmprune: [rank \(worker.rank)] \(f); stopping\n".utf8))
                watchdog.say("aborting: \(f)")
                comm.abort(code: 3)
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
    }

    func stop() {
        lock.lock(); stopped = true; lock.unlock()
    }
}
