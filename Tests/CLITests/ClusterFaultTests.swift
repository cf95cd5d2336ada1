// Fault tolerance of `cluster prune` on the tiny model, with real processes under mpiexec:
//  - a rank killed with SIGKILL in the middle of the importance phase: the launcher (MPICH hydra) stops the other
//    ranks at once, `cluster status` names the rank that died first, and `--resume` finishes with the plan of a
//    single process;
//  - a hung rank (SIGSTOP): the coordinator declares it lost after the heartbeat timeout and aborts the job;
//    resumed, same plan;
//  - a rank that heartbeats but makes no progress (parked, not stopped) misses its progress deadline: derived from
//    the other ranks' pace (samples mode, at a rendezvous) or fixed (layers mode, its neighbours blocked in MPI);
//    rank 0 aborts naming it and the phase, and the job resumes with the same plan;
//  - a rank presenting a wrong job token is refused and the job stops with that reason;
//  - a rank whose process manager does not answer (its hydra proxy stopped, as when its node is cut off from
//    mpiexec) still ends within the heartbeat timeout plus the abort grace (scripts/test_netns.sh cuts a real link).
// The test hook LLMPRUNE_FAULT=stall@RANK:STEP parks a rank mid-phase (heartbeats continue) so the test can strike.
import Foundation
import Testing

/// Starts `mpiexec -n ranks llmprune cluster prune …` without waiting; stderr goes to a file.
func startClusterJob(_ ranks: Int, command: [String] = ["cluster", "prune"], _ args: [String], fault: String,
                     log: URL) throws -> Process {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: mpiexecPath()!)
    p.arguments = ["-n", "\(ranks)", llmpruneBinary().path] + command + args
    var env = ProcessInfo.processInfo.environment
    env["LLMPRUNE_DATA"] = packageRoot.deletingLastPathComponent().appendingPathComponent("shared/data").path
    env["LLMPRUNE_FAULT"] = fault
    p.environment = env
    FileManager.default.createFile(atPath: log.path, contents: nil)
    let h = try FileHandle(forWritingTo: log)
    p.standardError = h
    p.standardOutput = h
    try p.run()
    return p
}

/// Waits for `path` to exist; false after `timeout` seconds.
func waitForFile(_ path: String, timeout: Double) -> Bool {
    let deadline = Date(timeIntervalSinceNow: timeout)
    while Date() < deadline {
        if FileManager.default.fileExists(atPath: path) { return true }
        Thread.sleep(forTimeInterval: 0.05)
    }
    return false
}

/// Waits for the process to end; the seconds it took, or nil after `timeout` (then it is killed).
func waitForExit(_ p: Process, timeout: Double) -> Double? {
    let t0 = Date()
    while p.isRunning {
        if Date().timeIntervalSince(t0) > timeout {
            p.terminate()
            return nil
        }
        Thread.sleep(forTimeInterval: 0.02)
    }
    return Date().timeIntervalSince(t0)
}

/// Field `index` (1-based, as in proc(5)) of /proc/PID/stat; nil once the process is gone.
func procStat(_ pid: pid_t, _ index: Int) -> String? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = text.range(of: ") ", options: .backwards) else { return nil }
    // Fields 1 and 2 (pid, "(comm)") end at the last ") "; the command name may hold spaces.
    let rest = text[close.upperBound...].split(separator: " ")
    return index >= 3 && index - 3 < rest.count ? String(rest[index - 3]) : nil
}

/// Running or sleeping; a zombie (ended, not yet reaped by a stopped parent) counts as gone.
func isAlive(_ pid: pid_t) -> Bool { procStat(pid, 3).map { $0 != "Z" } ?? false }

func rankPID(_ job: String, epoch: Int, rank: Int) throws -> pid_t {
    pid_t(try readJSON("\(job)/attempt-\(epoch)/rank-\(rank).json")["pid"] as! Int)
}

@Suite(.enabled(if: mpiexecPath() != nil, "mpiexec not installed"), .serialized) struct ClusterFaults {
    static let timeout = 2.0

    func strike(shard: String, stallAt step: String, victim: Int, signal sig: Int32, ranks: Int = 3)
        throws -> (s: Scratch, job: String, out: String, log: String, seconds: Double?, status: Int32)
    {
        let s = Scratch()
        let out = s.url.appendingPathComponent("m").path, job = out + ".job"
        let log = s.url.appendingPathComponent("job.log")
        let p = try startClusterJob(ranks, try clusterJobArgs(s, criterion: "element2") + [
            "--out", out, "--shard", shard, "--heartbeat-interval", "0.5", "--heartbeat-timeout", "\(Self.timeout)"],
            fault: "stall@\(victim):\(step)", log: log)
        #expect(waitForFile("\(job)/attempt-0/rank-\(victim).stalled", timeout: 120), "rank \(victim) never stalled")
        let pid = try rankPID(job, epoch: 0, rank: victim)
        kill(pid, sig)
        let seconds = waitForExit(p, timeout: 30)
        kill(pid, SIGKILL)      // a stopped rank may outlive the launcher
        return (s, job, out, try String(contentsOf: log, encoding: .utf8), seconds, p.terminationStatus)
    }

    func resumeAndCompare(_ s: Scratch, job: String, out: String, ranks: Int = 3) throws {
        let r = try clusterRun(ranks, ["prune", "--resume", job])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("starting at phase importance"), "\(r.stderr)")
        let single = try singleProcessPrune(s, criterion: "element2")
        expectSamePlan(single.plan, try readJSON(job + "/plan.json"))
        #expect(FileManager.default.fileExists(atPath: out + "/model.safetensors.index.json"))
        // The failed attempt's staging directory is gone; the job records both attempts.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: s.url.path).filter { $0.contains(".partial-") }
        #expect(leftovers.isEmpty, "\(leftovers)")
        let state = try readJSON(job + "/state.json")
        #expect((state["attempts"] as! [[String: Any]]).count == 2)
        #expect((state["completed"] as! [String: Int])["importance"] == 1)
    }

    @Test func killedRankIsReportedAndTheJobResumes() throws {
        let (s, job, out, log, seconds, status) = try strike(shard: "layers", stallAt: "pipeline", victim: 1, signal: SIGKILL)
        #expect(status != 0, "\(log)")
        let t = try #require(seconds, "the job did not end after the kill: \(log)")
        #expect(t < Self.timeout, "job ended \(t) s after the kill")
        let st = try llmprune(["cluster", "status", job])
        #expect(st.stdout.contains("first to end: rank "), "\(st.stdout)")
        #expect(st.stdout.contains("rank 1: pid \(try rankPID(job, epoch: 0, rank: 1)) on "), "\(st.stdout)")
        // Every rank ended within a moment of the kill: the victim by the signal, the others by the launcher.
        let ends = try (0..<3).map { r -> Double in
            let line = try String(contentsOfFile: "\(job)/attempt-0/rank-\(r).exit", encoding: .utf8)
            #expect(line.hasSuffix(" died\n"), "rank \(r): \(line)")
            return Double(line.split(separator: " ")[0])!
        }
        #expect(ends.max()! - ends.min()! < 0.5, "\(ends)")
        #expect(st.stdout.contains("done         nothing yet"), "\(st.stdout)")
        try resumeAndCompare(s, job: job, out: out)
    }

    @Test func hungRankIsDeclaredLostWithinTheTimeoutAndTheJobResumes() throws {
        let (s, job, out, log, seconds, status) = try strike(shard: "samples", stallAt: "reduce", victim: 2, signal: SIGSTOP)
        #expect(status != 0, "\(log)")
        let t = try #require(seconds, "the job did not end after the hang: \(log)")
        // Detection between timeout and timeout + interval after the last heartbeat, then MPI_Abort.
        #expect(t < Self.timeout + 2, "job ended \(t) s after the hang")
        #expect(log.contains("rank 2 lost"), "\(log)")
        let st = try llmprune(["cluster", "status", job])
        #expect(st.stdout.contains("rank 2 lost"), "\(st.stdout)")
        try resumeAndCompare(s, job: job, out: out)
    }

    /// Rank 1 loses the coordinator (rank 0 stopped) and aborts, but MPI_Abort needs the hydra proxy, which is
    /// stopped too: before the abort deadline the rank sat in MPI_Abort for as long as the proxy did. Now it ends
    /// after the heartbeat timeout (+ one interval), the 0.2 s pause and the 3 s grace of `Communicator.abort`.
    @Test func rankEndsWhenMPIAbortCannotReachTheProcessManager() throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("m").path, job = out + ".job"
        let log = s.url.appendingPathComponent("job.log")
        let p = try startClusterJob(2, try clusterJobArgs(s) + [
            "--out", out, "--heartbeat-interval", "0.5", "--heartbeat-timeout", "\(Self.timeout)"],
            fault: "stall@1:reduce", log: log)
        #expect(waitForFile("\(job)/attempt-0/rank-1.stalled", timeout: 120), "rank 1 never stalled")
        let r0 = try rankPID(job, epoch: 0, rank: 0), r1 = try rankPID(job, epoch: 0, rank: 1)
        let proxy = try #require(procStat(r1, 4).flatMap { pid_t($0) }, "no parent of rank 1")
        let parent = (try? String(contentsOfFile: "/proc/\(proxy)/comm", encoding: .utf8)) ?? "gone"
        #expect(parent == "hydra_pmi_proxy\n", "rank 1's parent is \(parent)")
        kill(proxy, SIGSTOP)
        kill(r0, SIGSTOP)
        let t0 = Date()
        while isAlive(r1) && Date().timeIntervalSince(t0) < 30 { Thread.sleep(forTimeInterval: 0.05) }
        let seconds = Date().timeIntervalSince(t0)
        let survived = isAlive(r1)
        kill(r0, SIGKILL)
        if survived { kill(r1, SIGKILL) }
        kill(proxy, SIGCONT)
        #expect(waitForExit(p, timeout: 30) != nil)
        #expect(!survived, "rank 1 still alive 30 s after its process manager stopped answering")
        #expect(seconds < Self.timeout + 0.5 + 0.2 + 3 + 2, "rank 1 ended \(seconds) s after the stop")
        let marker = try String(contentsOfFile: "\(job)/attempt-0/rank-1.exit", encoding: .utf8)
        #expect(marker.contains("aborting: coordinator lost"), "\(marker)")
    }

    @Test func wrongTokenWorkerIsRefused() throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("m").path
        let log = s.url.appendingPathComponent("job.log")
        let p = try startClusterJob(2, try clusterJobArgs(s) + ["--out", out], fault: "token@1", log: log)
        let seconds = waitForExit(p, timeout: 60)
        let text = try String(contentsOf: log, encoding: .utf8)
        #expect(seconds != nil && p.terminationStatus != 0, "\(text)")
        #expect(text.contains("refused") && text.contains("wrong job token"), "\(text)")
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    /// Rank `victim` parks at `step` and stays alive, heartbeating: only the progress deadline can end the job.
    func park(shard: String, at step: String, victim: Int, deadline: [String]) throws
        -> (s: Scratch, job: String, out: String, log: String, seconds: Double?, status: Int32)
    {
        let s = Scratch()
        let out = s.url.appendingPathComponent("m").path, job = out + ".job"
        let log = s.url.appendingPathComponent("job.log")
        let p = try startClusterJob(3, try clusterJobArgs(s, criterion: "element2") + [
            "--out", out, "--shard", shard, "--heartbeat-interval", "0.5", "--heartbeat-timeout", "\(Self.timeout)"] + deadline,
            fault: "stall@\(victim):\(step)", log: log)
        #expect(waitForFile("\(job)/attempt-0/rank-\(victim).stalled", timeout: 120), "rank \(victim) never stalled")
        let seconds = waitForExit(p, timeout: 30)
        return (s, job, out, try String(contentsOf: log, encoding: .utf8), seconds, p.terminationStatus)
    }

    @Test func rankWithoutProgressMissesTheDerivedDeadlineAndTheJobResumes() throws {
        let (s, job, out, log, seconds, status) = try park(shard: "samples", at: "reduce", victim: 2,
                                                           deadline: ["--progress-floor", "2"])
        #expect(status != 0, "\(log)")
        // The other ranks wait at the rendezvous within a moment, so the floor (2 s) is the deadline; then the
        // monitor's 0.25 s poll and MPI_Abort.
        let t = try #require(seconds, "the job did not end while rank 2 made no progress: \(log)")
        #expect(t < 2 + 2, "job ended \(t) s after the stall")
        #expect(log.contains("rank 2 made no progress for 2."), "\(log)")
        let st = try llmprune(["cluster", "status", job])
        #expect(st.stdout.contains("rank 2 made no progress"), "\(st.stdout)")
        #expect(st.stdout.contains("during phase importance.reduce"), "\(st.stdout)")
        #expect(st.stdout.contains("the slowest waiting rank's time past it, at least 2 s"), "\(st.stdout)")
        try resumeAndCompare(s, job: job, out: out)
    }

    @Test func rankWithoutProgressInsideThePipelineMissesTheFixedDeadline() throws {
        // Rank 1 parks before the pipeline; rank 0 then blocks sending to it and rank 2 receiving from it, both
        // inside MPI: they announced those waits, so rank 1 is the one named.
        let (s, job, out, log, seconds, status) = try park(shard: "layers", at: "pipeline", victim: 1,
                                                           deadline: ["--progress-timeout", "3"])
        #expect(status != 0, "\(log)")
        let t = try #require(seconds, "the job did not end while rank 1 made no progress: \(log)")
        #expect(t < 3 + 2, "job ended \(t) s after the stall")
        let st = try llmprune(["cluster", "status", job])
        #expect(st.stdout.contains("rank 1 made no progress for 3."), "\(st.stdout)")
        #expect(st.stdout.contains("during phase importance (epoch 0; deadline 3.0 s: --progress-timeout)"), "\(st.stdout)")
        try resumeAndCompare(s, job: job, out: out)
    }
}
