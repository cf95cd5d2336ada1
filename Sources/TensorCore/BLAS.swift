// Thin, shape-explicit wrappers over OpenBLAS cblas_sgemm. Every matrix product in llmprune goes through
// here with tokens batched into the M dimension. Row-major throughout.
import CBLAS
import CDNNL
import Foundation

public enum BLAS {
    /// C[m×n] = alpha · A[m×k] · op(B) + beta · C, where op(B) = Bᵀ when `bTransposed` (B stored [n×k],
    /// the PyTorch Linear weight layout) and B otherwise (B stored [k×n]).
    /// Leading dimensions default to dense rows; pass them to address column blocks of wider buffers.
    @inline(__always)
    public static func gemm(
        m: Int, n: Int, k: Int,
        a: UnsafePointer<Float>, lda: Int? = nil,
        b: UnsafePointer<Float>, ldb: Int? = nil, bTransposed: Bool,
        c: UnsafeMutablePointer<Float>, ldc: Int? = nil,
        alpha: Float = 1, beta: Float = 0,
        aTransposed: Bool = false
    ) {
        let lda = lda ?? (aTransposed ? m : k)
        let ldb = ldb ?? (bTransposed ? k : n)
        let ldc = ldc ?? n
        cblas_sgemm(CblasRowMajor, aTransposed ? CblasTrans : CblasNoTrans, bTransposed ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// Threads OpenBLAS uses for one product; setting it sets oneDNN's too (its OpenMP pool, BF16Matmul), so
    /// `--threads` governs both pools.
    public static var threads: Int {
        get { Int(openblas_get_num_threads()) }
        set {
            openblas_set_num_threads(Int32(newValue))
            _ = llmprune_omp_set_num_threads(Int32(newValue))
        }
    }

    /// The thread count set outside any `singleThreaded` region (what `--threads` asked for).
    public static var configuredThreads: Int {
        singleThreadLock.lock()
        defer { singleThreadLock.unlock() }
        return singleThreadDepth > 0 ? threadsBeforeSingle : threads
    }

    /// Runs `body` with OpenBLAS at one thread — for products issued by several workers at once —
    /// and restores the count when the last of overlapping callers leaves. A plain save/set/restore per caller is
    /// not enough: of two overlapping callers the second saves the first's 1 and restores it last, leaving the
    /// process at one thread for good (seen in the test process, where suites run concurrently; with OpenBLAS'
    /// Haswell kernels, whose rounding depends on the thread count, that broke bit-exact comparisons).
    ///
    /// Only OpenBLAS' count changes (a process-wide setting). oneDNN's OpenMP count is a per-thread ICV: set by one
    /// thread and restored by another it would stay changed on the first, and a oneDNN primitive created at one
    /// thread count and run at a larger one computes wrong results (seen: relative error 6.3 in BF16MatmulTests).
    public static func singleThreaded<R>(_ body: () throws -> R) rethrows -> R {
        singleThreadLock.lock()
        if singleThreadDepth == 0 { threadsBeforeSingle = threads; openblas_set_num_threads(1) }
        singleThreadDepth += 1
        singleThreadLock.unlock()
        defer {
            singleThreadLock.lock()
            singleThreadDepth -= 1
            if singleThreadDepth == 0 { openblas_set_num_threads(Int32(threadsBeforeSingle)) }
            singleThreadLock.unlock()
        }
        return try body()
    }

    private static let singleThreadLock = NSLock()
    nonisolated(unsafe) private static var singleThreadDepth = 0
    nonisolated(unsafe) private static var threadsBeforeSingle = 1

    /// Makes OpenBLAS' idle workers sleep soon after a product instead of spinning for ~0.1 s. Its pthreads
    /// server (driver/others/blas_server.c) keeps each worker polling with sched_yield for 2^28 cycles after every
    /// call unless OPENBLAS_THREAD_TIMEOUT says otherwise; between two products llmprune runs its own kernels on
    /// Dispatch workers and oneDNN's on OpenMP's, and on a 2-core machine the yielding worker takes a core from them.
    /// Measured on SmolLM2 (`tune`, 3 steps of 8 × 256, 2 threads, alternating runs): `--compute bf16` +20%, fp32
    /// +13%; the forward alone, whose products run back to back, does not change (docs/bf16.md, "OpenBLAS' idle
    /// spin"). OpenBLAS reads the variable when it is loaded, so this sets it, has OpenBLAS read its environment
    /// again and restarts its worker pool (the same shutdown and lazy re-init it does after fork). A value the user
    /// gave is kept. The entry points are looked up at run time: an OpenBLAS that does not export them keeps its
    /// default. Call it once, before any other thread uses OpenBLAS.
    public static func shortenIdleSpin(log2Cycles: Int = idleSpinLog2Cycles) {
        guard getenv("OPENBLAS_THREAD_TIMEOUT") == nil else { return }
        typealias Call = @convention(c) () -> Int32
        let rtldDefault = UnsafeMutableRawPointer(bitPattern: 0)
        guard let readEnv = dlsym(rtldDefault, "openblas_read_env"),
              let shutdown = dlsym(rtldDefault, "blas_thread_shutdown_"),
              let initialize = dlsym(rtldDefault, "blas_thread_init") else { return }
        setenv("OPENBLAS_THREAD_TIMEOUT", String(log2Cycles), 1)
        _ = unsafeBitCast(readEnv, to: Call.self)()
        _ = unsafeBitCast(shutdown, to: Call.self)()
        _ = unsafeBitCast(initialize, to: Call.self)()
    }

    /// log2 of the cycles an idle OpenBLAS worker polls before it sleeps (OpenBLAS clamps it to 4…30; default 28).
    public static let idleSpinLog2Cycles = 8

    /// OpenBLAS' own description of its kernel (e.g. "Cooperlake"), for benchmark reports.
    public static var coreName: String { String(cString: openblas_get_corename()) }
}
