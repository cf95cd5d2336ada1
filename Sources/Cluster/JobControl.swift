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

    init(coordinator: Coordinator, comm: Communicator, dir: JobDirectory, epoch: Int, watchdog: RankWatchdog,
         display: RankProgressDisplay) {
        self.coordinator = coordinator
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
                    display.update(rank: rank, "\(unit.phase) \(d)/\(total) \(message)")
                case .done(let rank, let unit, let summary, let payload):
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
        }
    }

    /// Waits until every rank in `ranks` has reported `done` for (phase, its rank, epoch).
    func awaitDone(phase: String, ranks: Range<Int>) -> [Int: UnitReport] {
        cond.lock(); defer { cond.unlock() }
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
