// Gram matrices of activations and the symmetric positive-definite solve of a ridge least-squares refit
// (Pruning/Reconstruction.swift): Float64 products per micro-batch (OpenBLAS dsyrk / dgemm) into a Float64 sum,
// and LAPACK's Cholesky (dpotrf + dpotrs, as OpenBLAS exports them) in Float64.
import CBLAS

/// A Float64 accumulator of XᵀY over the rows of micro-batches: [a × b], row-major. Each micro-batch is widened
/// to Float64 and multiplied in Float64 (dsyrk / dgemm), so the sum does not depend on how the rows are split into
/// micro-batches or over ranks beyond Float64 rounding. With `symmetric` (X = Y) only the upper triangle is
/// computed (dsyrk) and the lower is mirrored by `matrix`.
public final class GramAccumulator {
    public let a: Int, b: Int
    public let symmetric: Bool
    /// Also the column sums of X and Y and the row count: `matrix` is then the Gram of [X, 1] and [Y, 1]
    /// ([(a+1) × (b+1)]), what an affine refit (weights and a bias) needs.
    public let affine: Bool
    /// Σ over batches, [a × b] row-major (upper triangle only while `symmetric`, until `matrix`).
    public private(set) var sum: [Double]
    /// Σ of X's [a] and Y's [b] columns (affine only).
    public private(set) var sumX: [Double], sumY: [Double]
    /// Rows accumulated so far.
    public private(set) var rows = 0
    private var wideX: [Double] = [], wideY: [Double] = []

    public init(_ a: Int, _ b: Int, symmetric: Bool, affine: Bool = false) {
        precondition(!symmetric || a == b)
        self.a = a; self.b = b; self.symmetric = symmetric; self.affine = affine
        sum = [Double](repeating: 0, count: a * b)
        sumX = [Double](repeating: 0, count: affine ? a : 0)
        sumY = [Double](repeating: 0, count: affine && !symmetric ? b : 0)
    }

    /// Bytes one accumulator holds for micro-batches of `rows` rows: the sum and the widened inputs.
    public static func bytes(_ a: Int, _ b: Int, symmetric: Bool, rows: Int) -> Int {
        8 * (a * b + rows * (symmetric ? a : a + b))
    }

    /// sum += xᵀ·y for x [n × a] (leading dimension ldx) and y [n × b] (ldy); y is ignored when symmetric.
    public func add(x: UnsafePointer<Float>, ldx: Int? = nil, y: UnsafePointer<Float>? = nil, ldy: Int? = nil, rows n: Int) {
        guard n > 0 else { return }
        let a = self.a, b = self.b
        Self.widen(x, ld: ldx ?? a, rows: n, cols: a, into: &wideX)
        if !symmetric { Self.widen(y!, ld: ldy ?? b, rows: n, cols: b, into: &wideY) }
        let sym = symmetric
        wideX.withUnsafeBufferPointer { xp in
            wideY.withUnsafeBufferPointer { yp in
                sum.withUnsafeMutableBufferPointer { s in
                    if sym {
                        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(a), Int32(n), 1, xp.baseAddress!,
                                    Int32(a), 1, s.baseAddress!, Int32(a))
                    } else {
                        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(a), Int32(b), Int32(n), 1,
                                    xp.baseAddress!, Int32(a), yp.baseAddress!, Int32(b), 1, s.baseAddress!, Int32(b))
                    }
                }
            }
        }
        if affine {
            Self.addColumnSums(wideX, rows: n, cols: a, into: &sumX)
            if !symmetric { Self.addColumnSums(wideY, rows: n, cols: b, into: &sumY) }
        }
        rows += n
    }

    /// s[j] += Σ_r x[r × cols + j] (Float64, in row order, so the result does not depend on threads).
    static func addColumnSums(_ x: [Double], rows n: Int, cols: Int, into s: inout [Double]) {
        x.withUnsafeBufferPointer { xp in
            s.withUnsafeMutableBufferPointer { sp in
                for r in 0..<n { for j in 0..<cols { sp[j] += xp[r * cols + j] } }
            }
        }
    }

    /// out [rows × cols] (dense, Float64) = x [rows × cols] (leading dimension ld).
    static func widen(_ x: UnsafePointer<Float>, ld: Int, rows n: Int, cols: Int, into out: inout [Double]) {
        if out.count < n * cols { out = [Double](repeating: 0, count: n * cols) }
        out.withUnsafeMutableBufferPointer { o in
            let op = o.baseAddress!
            Kernels.parallelRows(n, minRowsPerChunk: 64) { range in
                for r in range { for j in 0..<cols { op[r * cols + j] = Double(x[r * ld + j]) } }
            }
        }
    }

    /// Adds another accumulator's sum (the same shape), e.g. one received from another rank.
    public func add(_ other: [Double], rows n: Int) {
        precondition(other.count == sum.count && !affine)
        for i in sum.indices { sum[i] += other[i] }
        rows += n
    }

    /// The full [a × b] matrix (the lower triangle mirrored when symmetric); when affine the [(a+1) × (b+1)] Gram
    /// of [X, 1] and [Y, 1]: XᵀY bordered by Y's column sums (last row), X's (last column) and the row count.
    public func matrix() -> [Double] {
        var m = sum
        if symmetric { for i in 0..<a { for j in 0..<i { m[i * b + j] = m[j * b + i] } } }
        guard affine else { return m }
        let sy = symmetric ? sumX : sumY, w = b + 1
        var out = [Double](repeating: 0, count: (a + 1) * w)
        for i in 0..<a {
            for j in 0..<b { out[i * w + j] = m[i * b + j] }
            out[i * w + b] = sumX[i]
        }
        for j in 0..<b { out[a * w + j] = sy[j] }
        out[a * w + b] = Double(rows)
        return out
    }
}

public enum LinearSolve {
    /// Solves X·A = B for X, A [n × n] symmetric positive definite (row-major = column-major), B and X [m × n]
    /// row-major (each row one right-hand side: LAPACK's column-major n × m). Returns nil when A is not positive
    /// definite (dpotrf's info > 0).
    public static func choleskySolveRight(_ a: [Double], n: Int, _ b: [Double], m: Int) -> [Double]? {
        precondition(a.count == n * n && b.count == m * n)
        var f = a, x = b
        var uplo: CChar = 85   // "U"
        var nn = Int32(n), nrhs = Int32(m), lda = Int32(n), ldb = Int32(n), info: Int32 = 0
        f.withUnsafeMutableBufferPointer { fp in _ = dpotrf_(&uplo, &nn, fp.baseAddress!, &lda, &info) }
        guard info == 0 else { return nil }
        f.withUnsafeMutableBufferPointer { fp in
            x.withUnsafeMutableBufferPointer { xp in
                _ = dpotrs_(&uplo, &nn, &nrhs, fp.baseAddress!, &lda, xp.baseAddress!, &ldb, &info)
            }
        }
        return info == 0 ? x : nil
    }

    /// C[m × n] = A[m × k] · B[k × n] in Float64 (row-major).
    public static func dgemm(m: Int, n: Int, k: Int, _ a: [Double], _ b: [Double]) -> [Double] {
        var c = [Double](repeating: 0, count: m * n)
        a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                c.withUnsafeMutableBufferPointer { cp in
                    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1,
                                ap.baseAddress!, Int32(k), bp.baseAddress!, Int32(n), 0, cp.baseAddress!, Int32(n))
                }
            }
        }
        return c
    }
}
