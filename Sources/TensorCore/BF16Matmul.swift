// Products with a fixed (frozen) matrix in bf16 through oneDNN's matmul primitive (Debian libdnnl 2.6, C API):
// both operands rounded to bf16 (nearest even), fp32 accumulation, fp32 output — as on CPUs with AVX512-BF16
// (vdpbf16ps), where oneDNN runs its brgemm kernel ("brg:avx512_core_bf16"). The fixed matrix is converted and
// reordered once into the blocked layout the primitive asks for (weights with format_tag_any, oneDNN developer
// guide "Matrix Multiplication"); the activation is converted per call by a oneDNN reorder. Measured choice of
// library and the pitfalls: docs/bf16.md.
//
// Not thread-safe: one caller at a time (the passes run their products from one thread).
import CDNNL

/// The arithmetic of the frozen base's products: fp32 sgemm, or bf16 inputs with fp32 accumulation.
public enum ComputeType: String, CaseIterable, Sendable, Codable {
    case fp32, bf16
}

/// Why `--compute bf16` cannot run here (one line).
public struct ComputeUnavailable: Error, CustomStringConvertible {
    public let description: String
}

/// oneDNN's CPU engine and stream, the per-shape conversions of activations to bf16, and their scratch buffer.
final class DNNL {
    static let shared = DNNL()
    let engine: dnnl_engine_t
    let stream: dnnl_stream_t
    private var converts: [Shape: Convert] = [:]
    private var scratch: UnsafeMutableRawPointer?
    private var scratchBytes = 0

    struct Shape: Hashable { let rows: Int, cols: Int }

    /// fp32 [rows × cols] → bf16 [rows × cols], both dense row-major.
    struct Convert {
        let primitive: dnnl_primitive_t, from: dnnl_memory_t, to: dnnl_memory_t
    }

    private init() {
        var e: dnnl_engine_t?
        Self.check(dnnl_engine_create(&e, dnnl_cpu, 0), "engine")
        engine = e!
        var s: dnnl_stream_t?
        Self.check(dnnl_stream_create(&s, engine, dnnl_stream_default_flags.rawValue), "stream")
        stream = s!
    }

    /// oneDNN calls that cannot fail once the engine exists and shapes are valid; a failure is a bug, not bad input.
    static func check(_ status: dnnl_status_t, _ what: String) {
        precondition(status == dnnl_success, "oneDNN \(what): status \(status.rawValue)")
    }

    /// A dense row-major [rows × cols] descriptor.
    static func matrix(_ rows: Int, _ cols: Int, _ type: dnnl_data_type_t, _ tag: dnnl_format_tag_t = dnnl_ab)
        -> dnnl_memory_desc_t
    {
        var md = dnnl_memory_desc_t()
        let dims: [Int64] = [Int64(rows), Int64(cols)]
        check(dims.withUnsafeBufferPointer { dnnl_memory_desc_init_by_tag(&md, 2, $0.baseAddress!, type, tag) }, "desc")
        return md
    }

    static func memory(_ md: dnnl_memory_desc_t, engine: dnnl_engine_t, handle: UnsafeMutableRawPointer?) -> dnnl_memory_t {
        var md = md, m: dnnl_memory_t?
        check(dnnl_memory_create(&m, &md, engine, handle), "memory")
        return m!
    }

    static func execute(_ p: dnnl_primitive_t, _ args: [(Int32, dnnl_memory_t)], stream: dnnl_stream_t) {
        let a = args.map { dnnl_exec_arg_t(arg: $0.0, memory: $0.1) }
        check(dnnl_primitive_execute(p, stream, Int32(a.count), a), "execute")
        check(dnnl_stream_wait(stream), "wait")
    }

    /// The fp32 [rows × cols] matrix `a` in bf16, in a scratch buffer valid until the next call.
    func bf16(_ a: UnsafePointer<Float>, rows: Int, cols: Int) -> UnsafeMutableRawPointer {
        let bytes = 2 * rows * cols
        if bytes > scratchBytes {
            scratch?.deallocate()
            scratch = .allocate(byteCount: bytes, alignment: 64)
            scratchBytes = bytes
        }
        let key = Shape(rows: rows, cols: cols)
        if converts[key] == nil {
            if converts.count >= 64 { dropConverts() }     // bounded: the LM head's last chunk varies in rows
            var from = Self.matrix(rows, cols, dnnl_f32), to = Self.matrix(rows, cols, dnnl_bf16)
            var pd: dnnl_primitive_desc_t?
            Self.check(dnnl_reorder_primitive_desc_create(&pd, &from, engine, &to, engine, nil), "reorder desc")
            var p: dnnl_primitive_t?
            Self.check(dnnl_primitive_create(&p, pd), "reorder")
            dnnl_primitive_desc_destroy(pd)
            converts[key] = Convert(primitive: p!, from: Self.memory(from, engine: engine, handle: nil),
                                    to: Self.memory(to, engine: engine, handle: nil))
        }
        let c = converts[key]!
        Self.check(dnnl_memory_set_data_handle(c.from, UnsafeMutableRawPointer(mutating: a)), "handle")
        Self.check(dnnl_memory_set_data_handle(c.to, scratch), "handle")
        Self.execute(c.primitive, [(DNNL_ARG_FROM, c.from), (DNNL_ARG_TO, c.to)], stream: stream)
        return scratch!
    }

    private func dropConverts() {
        for c in converts.values {
            dnnl_primitive_destroy(c.primitive); dnnl_memory_destroy(c.from); dnnl_memory_destroy(c.to)
        }
        converts.removeAll()
    }
}

public enum BF16 {
    /// nil when oneDNN runs bf16 products natively on this CPU; otherwise why not, in one line. Native means an
    /// effective ISA with AVX512-BF16 and the brgemm implementation: on AVX-512 without BF16 oneDNN 2.6 still creates
    /// the primitive but emulates bf16 at ~0.37× sgemm (docs/bf16.md), and on AVX2 it has none.
    /// `ONEDNN_MAX_CPU_ISA` (oneDNN's CPU dispatcher control) caps the ISA, as on an older CPU.
    public static let unavailableReason: String? = {
        let isa = dnnl_get_effective_cpu_isa()
        let bf16 = dnnl_cpu_isa_avx512_core_bf16.rawValue
        guard isa.rawValue & bf16 == bf16 else {
            return "this CPU has no AVX512-BF16 (oneDNN's effective ISA: \(isaName(isa))); use --compute fp32"
        }
        let impl = implementation(rows: 16, k: 64, n: 64)
        guard impl.hasPrefix("brg:") else {
            return "oneDNN's bf16 matmul here is \"\(impl)\", not the native AVX512-BF16 kernel; use --compute fp32"
        }
        return nil
    }()

    /// Throws `ComputeUnavailable` unless bf16 products run natively here.
    public static func requireNative() throws {
        if let r = unavailableReason { throw ComputeUnavailable(description: r) }
    }

    static func isaName(_ isa: dnnl_cpu_isa_t) -> String {
        let names: [(dnnl_cpu_isa_t, String)] = [
            (dnnl_cpu_isa_sse41, "sse41"), (dnnl_cpu_isa_avx, "avx"), (dnnl_cpu_isa_avx2, "avx2"),
            (dnnl_cpu_isa_avx2_vnni, "avx2_vnni"), (dnnl_cpu_isa_avx512_core, "avx512_core"),
            (dnnl_cpu_isa_avx512_core_vnni, "avx512_core_vnni"), (dnnl_cpu_isa_avx512_core_bf16, "avx512_core_bf16"),
            (dnnl_cpu_isa_avx512_core_amx, "avx512_core_amx"),
        ]
        return names.first { $0.0 == isa }?.1 ?? "0x" + String(isa.rawValue, radix: 16)
    }

    /// oneDNN's implementation name for a bf16 × bf16 → fp32 matmul [rows × k]·[k × n], or "none".
    static func implementation(rows: Int, k: Int, n: Int) -> String {
        let dnnl = DNNL.shared
        var pd: dnnl_primitive_desc_t?
        guard BF16Matmul.descriptor(&pd, rows: rows, k: k, n: n, weights: DNNL.matrix(k, n, dnnl_bf16, dnnl_format_tag_any),
                                    accumulate: false, engine: dnnl.engine) else { return "none" }
        defer { dnnl_primitive_desc_destroy(pd) }
        return BF16Matmul.implName(pd!)
    }
}

/// C[M × n] (+)= A[M × k] · B for a fixed B [k × n] held in bf16 (the activation A is rounded to bf16 per call,
/// accumulation and C in fp32). One primitive per (M, accumulate), created on first use and kept.
public final class BF16Matmul {
    public let k: Int, n: Int
    private var weightsMD: dnnl_memory_desc_t
    private let weights: dnnl_memory_t
    private let weightStorage: UnsafeMutableRawPointer
    /// Bytes of the packed bf16 matrix.
    public let bytes: Int
    private var plans: [Key: Plan?] = [:]     // nil: no native kernel for that M (the caller runs fp32)

    struct Key: Hashable { let rows: Int, accumulate: Bool }
    struct Plan { let primitive: dnnl_primitive_t, src: dnnl_memory_t, dst: dnnl_memory_t }

    /// B from fp32 `b`: stored [k × n] row-major, or, when `transposed`, stored [n × k] (a PyTorch Linear weight
    /// W [out × in] gives B = Wᵀ for Y = X·Wᵀ, and B = W for the input gradient dX = dY·W).
    /// Call only where `BF16.unavailableReason` is nil.
    public init(_ b: UnsafePointer<Float>, k: Int, n: Int, transposed: Bool) {
        precondition(k > 0 && n > 0, "BF16Matmul: empty matrix \(k)×\(n)")
        self.k = k
        self.n = n
        let dnnl = DNNL.shared
        // The layout oneDNN's kernel wants for B; it depends on (k, n) and the types, not on M (checked for M =
        // 1…4096 on oneDNN 2.6), so one packed copy serves every M.
        var pd: dnnl_primitive_desc_t?
        let ok = Self.descriptor(&pd, rows: 512, k: k, n: n, weights: DNNL.matrix(k, n, dnnl_bf16, dnnl_format_tag_any),
                                 accumulate: false, engine: dnnl.engine)
        precondition(ok, "BF16Matmul: oneDNN has no bf16 matmul for \(k)×\(n)")
        weightsMD = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0)!.pointee
        dnnl_primitive_desc_destroy(pd)
        bytes = dnnl_memory_desc_get_size(&weightsMD)
        weightStorage = .allocate(byteCount: bytes, alignment: 64)
        weights = DNNL.memory(weightsMD, engine: dnnl.engine, handle: weightStorage)
        // fp32 → bf16 (nearest even) into the blocked layout, once.
        var from = DNNL.matrix(k, n, dnnl_f32, transposed ? dnnl_ba : dnnl_ab)
        var rpd: dnnl_primitive_desc_t?
        DNNL.check(dnnl_reorder_primitive_desc_create(&rpd, &from, dnnl.engine, &weightsMD, dnnl.engine, nil), "pack desc")
        var r: dnnl_primitive_t?
        DNNL.check(dnnl_primitive_create(&r, rpd), "pack")
        dnnl_primitive_desc_destroy(rpd)
        let src = DNNL.memory(from, engine: dnnl.engine, handle: UnsafeMutableRawPointer(mutating: b))
        DNNL.execute(r!, [(DNNL_ARG_FROM, src), (DNNL_ARG_TO, weights)], stream: dnnl.stream)
        dnnl_memory_destroy(src)
        dnnl_primitive_destroy(r)
    }

    deinit {
        dropPlans()
        dnnl_memory_destroy(weights)
        weightStorage.deallocate()
    }

    /// c[m × n] = a[m × k]·B, or c += a·B with `accumulate`. Returns false, writing nothing, when oneDNN has no
    /// native bf16 kernel for this m with the packed layout: the caller then runs the fp32 product.
    @discardableResult
    public func run(_ a: UnsafePointer<Float>, rows m: Int, into c: UnsafeMutablePointer<Float>, accumulate: Bool) -> Bool {
        guard m > 0 else { return true }
        guard let plan = plan(Key(rows: m, accumulate: accumulate)) else { return false }
        let dnnl = DNNL.shared
        let a16 = dnnl.bf16(a, rows: m, cols: k)
        DNNL.check(dnnl_memory_set_data_handle(plan.src, a16), "handle")
        DNNL.check(dnnl_memory_set_data_handle(plan.dst, c), "handle")
        DNNL.execute(plan.primitive, [(DNNL_ARG_SRC, plan.src), (DNNL_ARG_WEIGHTS, weights), (DNNL_ARG_DST, plan.dst)],
                     stream: dnnl.stream)
        return true
    }

    private func plan(_ key: Key) -> Plan? {
        if let p = plans[key] { return p }
        if plans.count >= 64 { dropPlans() }     // bounded: the LM head's last chunk of a batch varies in rows
        let dnnl = DNNL.shared
        var pd: dnnl_primitive_desc_t?
        var made: Plan?
        if Self.descriptor(&pd, rows: key.rows, k: k, n: n, weights: weightsMD, accumulate: key.accumulate,
                           engine: dnnl.engine) {
            if Self.implName(pd!).hasPrefix("brg:") {
                var p: dnnl_primitive_t?
                DNNL.check(dnnl_primitive_create(&p, pd), "matmul")
                made = Plan(primitive: p!, src: DNNL.memory(DNNL.matrix(key.rows, k, dnnl_bf16), engine: dnnl.engine, handle: nil),
                            dst: DNNL.memory(DNNL.matrix(key.rows, n, dnnl_f32), engine: dnnl.engine, handle: nil))
            }
            dnnl_primitive_desc_destroy(pd)
        }
        plans[key] = .some(made)
        return made
    }

    private func dropPlans() {
        for case let p? in plans.values {
            dnnl_primitive_destroy(p.primitive); dnnl_memory_destroy(p.src); dnnl_memory_destroy(p.dst)
        }
        plans.removeAll()
    }

    /// A matmul descriptor bf16 [rows × k] · `weights` → fp32 [rows × n] (plus a sum post-op when accumulating);
    /// false when oneDNN has none.
    static func descriptor(_ pd: inout dnnl_primitive_desc_t?, rows: Int, k: Int, n: Int, weights: dnnl_memory_desc_t,
                           accumulate: Bool, engine: dnnl_engine_t) -> Bool {
        var src = DNNL.matrix(rows, k, dnnl_bf16), w = weights, dst = DNNL.matrix(rows, n, dnnl_f32)
        var desc = dnnl_matmul_desc_t()
        guard dnnl_matmul_desc_init(&desc, &src, &w, nil, &dst) == dnnl_success else { return false }
        var attr: dnnl_primitive_attr_t?
        DNNL.check(dnnl_primitive_attr_create(&attr), "attr")
        defer { dnnl_primitive_attr_destroy(attr) }
        if accumulate {       // C = A·B + 1·C: oneDNN's sum post-op
            var ops: dnnl_post_ops_t?
            DNNL.check(dnnl_post_ops_create(&ops), "post-ops")
            DNNL.check(dnnl_post_ops_append_sum(ops, 1), "sum")
            DNNL.check(dnnl_primitive_attr_set_post_ops(attr, ops), "post-ops")
            dnnl_post_ops_destroy(ops)
        }
        return withUnsafeMutablePointer(to: &desc) {
            dnnl_primitive_desc_create(&pd, $0, attr, engine, nil) == dnnl_success
        }
    }

    static func implName(_ pd: dnnl_primitive_desc_t) -> String {
        var s: UnsafePointer<CChar>?
        guard dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s) == dnnl_success, let s else { return "?" }
        return String(cString: s)
    }
}
