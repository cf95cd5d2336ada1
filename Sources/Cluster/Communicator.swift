// The data plane: an MPI communicator (MPICH) for float reductions. Outside `mpiexec` it falls back to a
// single rank without touching MPI, so every library path and test also runs as one plain process.
import CMPI
import Foundation
import MPIShim

public final class Communicator: @unchecked Sendable {
    /// The process's world, joined on first use. Call `finalize()` before exiting (MPI requires it).
    public static let world = Communicator()
    /// Elements per MPI call: counts are Int32, and very large reductions go in pieces.
    static let chunk = 1 << 26

    public let rank: Int
    public let size: Int
    /// True when MPI was initialised by this object (and must be finalised).
    public let usesMPI: Bool

    /// Joins MPI_COMM_WORLD when launched by a process manager (PMI variables set), else a world of one.
    init() {
        let env = ProcessInfo.processInfo.environment
        guard env["PMI_RANK"] != nil || env["PMI_SIZE"] != nil || env["MPI_LOCALRANKID"] != nil else {
            rank = 0; size = 1; usesMPI = false
            return
        }
        var provided: Int32 = 0
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided)
        var r: Int32 = 0, s: Int32 = 1
        MPI_Comm_rank(MPI_COMM_WORLD, &r)
        MPI_Comm_size(MPI_COMM_WORLD, &s)
        rank = Int(r); size = Int(s); usesMPI = true
    }

    /// In-place element-wise sum over all ranks.
    public func allReduceSum(_ buffer: inout [Float]) {
        guard usesMPI, size > 1 else { return }
        buffer.withUnsafeMutableBufferPointer { b in
            for lo in stride(from: 0, to: b.count, by: Self.chunk) {
                let n = Int32(min(Self.chunk, b.count - lo))
                _ = MPI_Allreduce(shim_mpi_in_place(), b.baseAddress! + lo, n, MPI_FLOAT, shim_mpi_sum(), MPI_COMM_WORLD)
            }
        }
    }

    /// In-place element-wise sum over all ranks, in double precision.
    public func allReduceSum(_ buffer: inout [Double]) {
        guard usesMPI, size > 1 else { return }
        buffer.withUnsafeMutableBufferPointer { b in
            for lo in stride(from: 0, to: b.count, by: Self.chunk) {
                let n = Int32(min(Self.chunk, b.count - lo))
                _ = MPI_Allreduce(shim_mpi_in_place(), b.baseAddress! + lo, n, MPI_DOUBLE, shim_mpi_sum(), MPI_COMM_WORLD)
            }
        }
    }

    public func barrier() {
        if usesMPI { MPI_Barrier(MPI_COMM_WORLD) }
    }

    private var finalized = false

    /// Leaves MPI (collective: every rank calls it once, at the end).
    public func finalize() {
        guard usesMPI, !finalized else { return }
        finalized = true
        MPI_Finalize()
    }

    /// Ends every rank of the job (after a local error, so that no peer waits forever in a collective).
    public func abort(code: Int32) -> Never {
        if usesMPI && size > 1 { MPI_Abort(MPI_COMM_WORLD, code) }
        exit(code)
    }
}
