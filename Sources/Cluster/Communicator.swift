// The data plane: an MPI communicator (MPICH) for float reductions. Outside `mpiexec` it falls back to a
// single rank without touching MPI, so every library path and test also runs as one plain process.
import CMPI
import Foundation
import MPIShim

public final class Communicator: @unchecked Sendable {
    public let rank: Int
    public let size: Int
    /// True when MPI was initialised by this object (and must be finalised).
    public let usesMPI: Bool

    /// Joins MPI_COMM_WORLD when launched by a process manager (PMI variables set), else a world of one.
    public init() {
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
        let n = Int32(buffer.count)
        buffer.withUnsafeMutableBufferPointer { b in
            _ = MPI_Allreduce(shim_mpi_in_place(), b.baseAddress, n, MPI_FLOAT, shim_mpi_sum(), MPI_COMM_WORLD)
        }
    }

    public func barrier() {
        if usesMPI { MPI_Barrier(MPI_COMM_WORLD) }
    }

    deinit {
        if usesMPI { MPI_Finalize() }
    }
}
