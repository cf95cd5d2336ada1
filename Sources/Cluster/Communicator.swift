// The data plane: an MPI communicator (MPICH) for float reductions. Outside `mpiexec` it falls back to a
// single rank without touching MPI, so every library path and test also runs as one plain process.
// Every MPI return code is checked: MPI_COMM_WORLD returns errors instead of aborting inside MPICH, a failed
// data-plane call throws `MPIError` ("MPI_Allreduce failed: <MPI_Error_string>"), which the CLI prints as one line
// before MPI_Abort ends the other ranks; calls that cannot throw (init, finalize, abort) print that line and exit.
import CMPI
import Foundation
import MPIShim
import Support

/// A failed MPI call: which one, its return code and MPICH's text for it.
public struct MPIError: Error, CustomStringConvertible, Equatable {
    public let call: String
    public let code: Int32
    public let message: String

    public init(call: String, code: Int32) {
        self.call = call
        self.code = code
        message = Self.errorString(code)
    }

    /// One line: MPICH's error strings can hold the whole error stack over several lines.
    public var description: String { oneLineMessage("\(call) failed: \(message)") }

    /// MPI_Error_string of `code` (safe before MPI_Init and after MPI_Finalize, which the standard allows).
    static func errorString(_ code: Int32) -> String {
        var text = [CChar](repeating: 0, count: Int(MPI_MAX_ERROR_STRING) + 1)
        var length: Int32 = 0
        guard MPI_Error_string(code, &text, &length) == MPI_SUCCESS else { return "MPI error code \(code)" }
        return String(decoding: text.prefix(max(0, min(Int(length), text.count))).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

public final class Communicator: @unchecked Sendable {
    /// The process's world, joined on first use. Call `finalize()` before exiting (MPI requires it).
    public static let world = Communicator()
    /// Elements per MPI call: counts are Int32, and very large reductions go in pieces.
    static let chunk = 1 << 26

    public let rank: Int
    public let size: Int
    /// True when this communicator is backed by MPI (the world under `mpiexec`, or a group split from it).
    public let usesMPI: Bool
    /// The MPI communicator every call of this object goes through (MPI_COMM_WORLD, or a split of it).
    let handle: MPI_Comm

    /// Joins MPI_COMM_WORLD when launched by a process manager (PMI variables set), else a world of one.
    init() {
        let env = ProcessInfo.processInfo.environment
        guard env["PMI_RANK"] != nil || env["PMI_SIZE"] != nil || env["MPI_LOCALRANKID"] != nil else {
            rank = 0; size = 1; usesMPI = false; handle = MPI_COMM_WORLD
            return
        }
        var provided: Int32 = 0
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        // MULTIPLE: a rank's watch thread may call MPI_Abort while the main thread sits in a collective.
        // `world` is a static initialiser and cannot throw, so failures here end the process naming the call.
        Self.exitUnless(MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided), "MPI_Init_thread", rank: nil)
        // Errors come back as return codes (the default handler aborts inside MPICH before the code can be read).
        Self.exitUnless(MPI_Comm_set_errhandler(MPI_COMM_WORLD, shim_mpi_errors_return()), "MPI_Comm_set_errhandler",
                        rank: nil)
        var r: Int32 = 0, s: Int32 = 1
        Self.exitUnless(MPI_Comm_rank(MPI_COMM_WORLD, &r), "MPI_Comm_rank", rank: nil)
        Self.exitUnless(MPI_Comm_size(MPI_COMM_WORLD, &s), "MPI_Comm_size", rank: Int(r))
        rank = Int(r); size = Int(s); usesMPI = true; handle = MPI_COMM_WORLD
    }

    private init(handle: MPI_Comm, rank: Int, size: Int, usesMPI: Bool) {
        self.handle = handle
        self.rank = rank
        self.size = size
        self.usesMPI = usesMPI
    }

    /// The ranks of this communicator with the same `color`, ordered by `key` (MPI_Comm_split; collective). A
    /// pipeline × data-parallel grid uses it for the group of ranks that hold the same stage and the group of ranks
    /// that form one pipeline. Outside MPI: a world of one.
    public func split(color: Int, key: Int) throws -> Communicator {
        guard usesMPI else { return Communicator(handle: handle, rank: 0, size: 1, usesMPI: false) }
        var sub = MPI_Comm(0)
        try Self.check(MPI_Comm_split(handle, Int32(color), Int32(key), &sub), "MPI_Comm_split")
        try Self.check(MPI_Comm_set_errhandler(sub, shim_mpi_errors_return()), "MPI_Comm_set_errhandler")
        var r: Int32 = 0, n: Int32 = 1
        try Self.check(MPI_Comm_rank(sub, &r), "MPI_Comm_rank")
        try Self.check(MPI_Comm_size(sub, &n), "MPI_Comm_size")
        return Communicator(handle: sub, rank: Int(r), size: Int(n), usesMPI: true)
    }

    /// Throws `MPIError` naming `call` unless `code` is MPI_SUCCESS.
    @inline(__always)
    static func check(_ code: Int32, _ call: String) throws {
        if code != MPI_SUCCESS { throw MPIError(call: call, code: code) }
    }

    /// For the calls that cannot throw: unless `code` is MPI_SUCCESS, writes the failure as the CLI writes an error
    /// (one line on stderr) and exits with `status`. MPI_Abort is not tried: MPI may not be usable at that point
    /// (not initialised, already finalised, or the abort itself failed).
    static func exitUnless(_ code: Int32, _ call: String, rank: Int?, status: Int32 = 1) {
        guard code != MPI_SUCCESS else { return }
        let who = rank.map { "[rank \($0)] " } ?? ""
        FileHandle.standardError.write(Data("llmprune: error: \(who)\(MPIError(call: call, code: code))\n".utf8))
        exit(status)
    }

    /// Bytes this rank handed to MPI (buffers sent, received, or contributed to a reduction), for the
    /// bytes-moved accounting. Main thread only.
    public private(set) var traffic = Traffic()

    public struct Traffic: Codable, Equatable, Sendable {
        public var sent = 0, received = 0, reduced = 0, broadcast = 0
        public var total: Int { sent + received + reduced + broadcast }
        public init() {}
        public static func - (a: Traffic, b: Traffic) -> Traffic {
            var t = Traffic()
            t.sent = a.sent - b.sent; t.received = a.received - b.received
            t.reduced = a.reduced - b.reduced; t.broadcast = a.broadcast - b.broadcast
            return t
        }
        public static func + (a: Traffic, b: Traffic) -> Traffic {
            var t = Traffic()
            t.sent = a.sent + b.sent; t.received = a.received + b.received
            t.reduced = a.reduced + b.reduced; t.broadcast = a.broadcast + b.broadcast
            return t
        }
    }

    /// In-place element-wise sum over all ranks.
    public func allReduceSum(_ buffer: inout [Float]) throws {
        guard usesMPI, size > 1 else { return }
        traffic.reduced += 4 * buffer.count
        try buffer.withUnsafeMutableBufferPointer { b in
            for lo in stride(from: 0, to: b.count, by: Self.chunk) {
                let n = Int32(min(Self.chunk, b.count - lo))
                try Self.check(MPI_Allreduce(shim_mpi_in_place(), b.baseAddress! + lo, n, MPI_FLOAT, shim_mpi_sum(),
                                             handle), "MPI_Allreduce")
            }
        }
    }

    /// In-place element-wise sum over all ranks, in double precision.
    public func allReduceSum(_ buffer: inout [Double]) throws {
        guard usesMPI, size > 1 else { return }
        traffic.reduced += 8 * buffer.count
        try buffer.withUnsafeMutableBufferPointer { b in
            for lo in stride(from: 0, to: b.count, by: Self.chunk) {
                let n = Int32(min(Self.chunk, b.count - lo))
                try Self.check(MPI_Allreduce(shim_mpi_in_place(), b.baseAddress! + lo, n, MPI_DOUBLE, shim_mpi_sum(),
                                             handle), "MPI_Allreduce")
            }
        }
    }

    /// Element-wise sum over all ranks into `root`'s buffer (MPI_Reduce). Other ranks' buffers are left as
    /// they were. Every rank must call it with the same count and root. (The root receives into a separate buffer:
    /// MPICH 4.0.2 crashes on MPI_IN_PLACE in MPI_Reduce on 3 ranks, measured here.)
    public func reduceSum(_ buffer: inout [Float], root: Int) throws {
        guard usesMPI, size > 1 else { return }
        traffic.reduced += 4 * buffer.count
        var result = rank == root ? [Float](repeating: 0, count: buffer.count) : []
        try buffer.withUnsafeBufferPointer { b in
            try result.withUnsafeMutableBufferPointer { out in
                for lo in stride(from: 0, to: b.count, by: Self.chunk) {
                    let n = Int32(min(Self.chunk, b.count - lo))
                    try Self.check(MPI_Reduce(b.baseAddress! + lo, out.baseAddress.map { $0 + lo }, n, MPI_FLOAT,
                                              shim_mpi_sum(), Int32(root), handle), "MPI_Reduce")
                }
            }
        }
        if rank == root { buffer = result }
    }

    /// `root`'s bytes on every rank (MPI_Bcast of the length, then of the bytes).
    public func broadcast(_ bytes: [UInt8], root: Int) throws -> [UInt8] {
        guard usesMPI, size > 1 else { return bytes }
        var n = Int64(bytes.count)
        try Self.check(MPI_Bcast(&n, 1, MPI_INT64_T, Int32(root), handle), "MPI_Bcast")
        var out = rank == root ? bytes : [UInt8](repeating: 0, count: Int(n))
        if n > 0 {
            try Self.check(out.withUnsafeMutableBytes { MPI_Bcast($0.baseAddress, Int32(n), MPI_BYTE, Int32(root), handle) },
                           "MPI_Bcast")
        }
        traffic.broadcast += Int(n) + 8
        return out
    }

    /// Every rank's `bytes` (all of the same length), in rank order, on every rank (MPI_Allgather).
    public func allGather(_ bytes: [UInt8]) throws -> [[UInt8]] {
        guard usesMPI, size > 1 else { return [bytes] }
        var out = [UInt8](repeating: 0, count: bytes.count * size)
        let n = Int32(bytes.count)
        try Self.check(bytes.withUnsafeBytes { mine in
            out.withUnsafeMutableBytes { MPI_Allgather(mine.baseAddress, n, MPI_BYTE, $0.baseAddress, n, MPI_BYTE, handle) }
        }, "MPI_Allgather")
        traffic.broadcast += out.count
        return (0..<size).map { Array(out[$0 * bytes.count ..< ($0 + 1) * bytes.count]) }
    }

    // MARK: point to point (pipeline stages). Blocking MPI_Send / MPI_Recv in pieces of `chunk` elements;
    // sender and receiver must agree on the count. Not for a world of one (there is no peer).

    private func send(_ base: UnsafeRawPointer, count: Int, stride: Int, type: MPI_Datatype, to peer: Int, tag: Int) throws {
        for lo in Swift.stride(from: 0, to: max(count, 1), by: Self.chunk) {
            let n = Int32(min(Self.chunk, count - lo))
            try Self.check(MPI_Send(base + lo * stride, n, type, Int32(peer), Int32(tag), handle), "MPI_Send")
        }
    }

    /// Receives by posting the request and polling it with growing sleeps (50 µs up to 2 ms) instead of
    /// MPI_Recv: MPICH's blocking receive spins a core, and a pipeline stage waits most of the pass for its
    /// neighbour; with several ranks on one host the spinning would take the core from the rank that computes.
    private func receive(_ base: UnsafeMutableRawPointer, count: Int, stride: Int, type: MPI_Datatype, from peer: Int,
                         tag: Int) throws {
        for lo in Swift.stride(from: 0, to: max(count, 1), by: Self.chunk) {
            let n = Int32(min(Self.chunk, count - lo))
            var request = MPI_Request(0)
            try Self.check(MPI_Irecv(base + lo * stride, n, type, Int32(peer), Int32(tag), handle, &request),
                           "MPI_Irecv")
            try Self.poll(&request)
        }
    }

    /// Waits for `request` by MPI_Test with growing sleeps (see `receive`).
    private static func poll(_ request: inout MPI_Request) throws {
        var done: Int32 = 0, sleep: UInt32 = 50
        while true {
            try check(MPI_Test(&request, &done, shim_mpi_status_ignore()), "MPI_Test")
            if done != 0 { return }
            usleep(sleep)
            sleep = min(2000, sleep * 2)
        }
    }

    /// Sends `values` to `peer` and receives `count` floats from `source` at once (MPI_Isend, then the polled
    /// receive, then the send completed): the pair exchanges of a 1F1B pipeline schedule (send an activation
    /// forward while receiving a gradient back), which as two blocking calls in a fixed order could deadlock.
    public func exchange(_ values: [Float], to peer: Int, tag: Int, receive count: Int, from source: Int,
                         tag sourceTag: Int) throws -> [Float] {
        precondition(usesMPI && peer != rank && source != rank, "exchange: no peers \(peer), \(source) in a world of \(size)")
        traffic.sent += 4 * values.count
        traffic.received += 4 * count
        var out = [Float](repeating: 0, count: count)
        try values.withUnsafeBufferPointer { v in
            var requests: [MPI_Request] = []
            for lo in Swift.stride(from: 0, to: max(values.count, 1), by: Self.chunk) {
                var request = MPI_Request(0)
                let n = Int32(min(Self.chunk, values.count - lo))
                try Self.check(MPI_Isend(v.baseAddress.map { $0 + lo } ?? UnsafePointer(bitPattern: 16)!, n, MPI_FLOAT,
                                         Int32(peer), Int32(tag), handle, &request), "MPI_Isend")
                requests.append(request)
            }
            try out.withUnsafeMutableBytes {
                try receive($0.baseAddress ?? UnsafeMutableRawPointer(bitPattern: 16)!, count: count, stride: 4,
                            type: MPI_FLOAT, from: source, tag: sourceTag)
            }
            for i in requests.indices { try Self.poll(&requests[i]) }
        }
        return out
    }

    /// Sends `values` to rank `peer` (blocking until the buffer may be reused).
    public func send(_ values: [Float], to peer: Int, tag: Int) throws {
        precondition(usesMPI && peer != rank, "send: no peer \(peer) in a world of \(size)")
        traffic.sent += 4 * values.count
        try values.withUnsafeBytes { try send($0.baseAddress ?? UnsafeRawPointer(bitPattern: 16)!, count: values.count, stride: 4, type: MPI_FLOAT, to: peer, tag: tag) }
    }

    /// Receives exactly `count` floats from rank `peer`.
    public func receiveFloats(_ count: Int, from peer: Int, tag: Int) throws -> [Float] {
        precondition(usesMPI && peer != rank, "receive: no peer \(peer) in a world of \(size)")
        traffic.received += 4 * count
        var out = [Float](repeating: 0, count: count)
        try out.withUnsafeMutableBytes { try receive($0.baseAddress ?? UnsafeMutableRawPointer(bitPattern: 16)!, count: count, stride: 4, type: MPI_FLOAT, from: peer, tag: tag) }
        return out
    }

    public func barrier() throws {
        if usesMPI { try Self.check(MPI_Barrier(handle), "MPI_Barrier") }
    }

    private var finalized = false

    /// Leaves MPI (collective: every rank calls it once, at the end).
    public func finalize() {
        guard usesMPI, !finalized else { return }
        finalized = true
        Self.exitUnless(MPI_Finalize(), "MPI_Finalize", rank: size > 1 ? rank : nil)
    }

    /// How long a rank waits inside MPI_Abort for the process manager to end it before it exits by itself.
    public static let abortGrace = 3.0

    /// Ends every rank of the job (after a local error, so that no peer waits forever in a collective). Safe from
    /// any thread (MPI_THREAD_MULTIPLE). Never returns: this rank is gone within 0.2 s + `abortGrace`.
    public func abort(code: Int32) -> Never {
        if usesMPI && size > 1 {
            // The process manager forwards each rank's output asynchronously and stops forwarding once the abort
            // kills the job: a short pause lets the line that says why reach the user (seen with hydra: a worker's
            // "coordinator refused this worker" line lost in about 1 run in 12 under load).
            usleep(200_000)
            Self.armAbortDeadline(code: code, rank: rank)
            // MPI_Abort returns only if it failed; then this rank at least says so and exits.
            Self.exitUnless(MPI_Abort(MPI_COMM_WORLD, code), "MPI_Abort", rank: rank, status: code)
        }
        exit(code)
    }

    /// MPI_Abort hands the abort to the local hydra proxy, which must reach mpiexec to have the ranks killed. When
    /// this rank's host is cut off from mpiexec (measured with a partitioned node: the rank sat in MPI_Abort until
    /// the network healed, holding its memory and a core), nothing ever kills it. A detached thread ends the
    /// process after `abortGrace` instead. `_exit`: atexit handlers and stdio flushing could block on the same MPI
    /// state, and nothing of this rank's output is worth more than ending.
    static func armAbortDeadline(code: Int32, rank: Int) {
        let t = Thread {
            Thread.sleep(forTimeInterval: abortGrace)
            let line = String(format: "llmprune: error: [rank %d] MPI_Abort did not end this rank within %.1f s "
                              + "(process manager unreachable?); exiting with status %d\n", rank, abortGrace, code)
            _ = line.withCString { Glibc.write(2, $0, strlen($0)) }
            _exit(code)
        }
        t.name = "llmprune-abort-deadline"
        t.start()
    }
}
