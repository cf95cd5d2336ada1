// The Llama forward pass in fp32 over cblas_sgemm, tokens of the whole batch stacked into the M dimension
// of every projection. Attention runs per (sequence, query head) on strided views of the fused q|k|v buffer,
// spread over cores with single-threaded BLAS. Residual adds are fused into the o and down products
// (beta = 1). Positions restart at 0 in every sequence (no KV cache: this is a scorer, not a generator).
import Foundation
import TensorCore

/// An owned, fixed-size float buffer (no copy-on-write, stable address) for activations.
final class FloatBuffer {
    let p: UnsafeMutablePointer<Float>
    let count: Int
    init(_ count: Int) {
        self.count = count
        p = .allocate(capacity: max(count, 1))
        p.initialize(repeating: 0, count: max(count, 1))
    }
    deinit { p.deallocate() }
    var array: [Float] { Array(UnsafeBufferPointer(start: p, count: count)) }
}

/// Reusable activation buffers for one batch geometry, sized for the widest layer.
final class Workspace {
    let tokens: Int
    let x: FloatBuffer      // [N × d] residual stream
    let h: FloatBuffer      // [N × d] normed input of a block
    let qkv: FloatBuffer    // [N × maxQKV]
    let attn: FloatBuffer   // [N × maxQ]
    let gu: FloatBuffer     // [N × 2·maxI]
    let act: FloatBuffer    // [N × maxI]

    init(tokens n: Int, config c: LlamaConfig) {
        tokens = n
        let hd = c.headDim
        let maxQKV = c.layers.map { ($0.numHeads + 2 * $0.numKVHeads) * hd }.max()!
        let maxQ = c.layers.map { $0.numHeads * hd }.max()!
        let maxI = c.layers.map(\.intermediateSize).max()!
        x = FloatBuffer(n * c.hiddenSize)
        h = FloatBuffer(n * c.hiddenSize)
        qkv = FloatBuffer(n * maxQKV)
        attn = FloatBuffer(n * maxQ)
        gu = FloatBuffer(n * 2 * maxI)
        act = FloatBuffer(n * maxI)
    }
}

/// Wall time per phase of the forward pass, collected when `LlamaRunner.profile` is set. sgemm phases are
/// the projections and the LM head; `attention` is the per-head score/softmax/value work.
public struct ForwardProfile: Sendable {
    public var seconds: [String: Double] = [:]
    public var gemmFlops: Double = 0          // FLOPs of the projection and LM-head products
    public var attentionFlops: Double = 0     // FLOPs of the attention products (full T×T blocks)
    public init() {}
    public static let gemmPhases: Set<String> = ["qkv", "o", "gate_up", "down", "lm_head"]
    public var total: Double { seconds.values.reduce(0, +) }
    public var gemmSeconds: Double { seconds.filter { Self.gemmPhases.contains($0.key) }.map(\.value).reduce(0, +) }
}

/// Runs a `LlamaWeights` model forward. Not thread-safe: one runner per thread.
public final class LlamaRunner {
    public let weights: LlamaWeights
    /// Set to a fresh profile to collect phase timings.
    public var profile: ForwardProfile?

    @inline(__always)
    func timed<R>(_ phase: String, flops: Double = 0, _ body: () throws -> R) rethrows -> R {
        guard profile != nil else { return try body() }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let r = try body()
        profile!.seconds[phase, default: 0] += Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
        if ForwardProfile.gemmPhases.contains(phase) { profile!.gemmFlops += flops }
        return r
    }
    public var config: LlamaConfig { weights.config }
    var ws: Workspace?
    private(set) var ropeCos: [Float] = []   // [maxPos × hd/2]
    private(set) var ropeSin: [Float] = []
    private var ropePositions = 0

    public init(weights: LlamaWeights) {
        self.weights = weights
    }

    /// Final-normed hidden states [batch·seqLen × d] of `tokens` (row-major [batch × seqLen]).
    public func hiddenStates(tokens: [Int32], batch: Int, seqLen: Int) throws -> [Float] {
        try run(tokens: tokens, batch: batch, seqLen: seqLen)
        return ws!.h.array
    }

    /// Logits [batch·seqLen × vocab].
    public func logits(tokens: [Int32], batch: Int, seqLen: Int) throws -> [Float] {
        try run(tokens: tokens, batch: batch, seqLen: seqLen)
        let n = batch * seqLen, v = config.vocabSize, d = config.hiddenSize
        var out = [Float](repeating: 0, count: n * v)
        let h = ws!.h.p
        (weights.lmHead ?? weights.embed).withUnsafeBufferPointer { w in
            out.withUnsafeMutableBufferPointer { o in
                BLAS.gemm(m: n, n: v, k: d, a: h, b: w.baseAddress!, bTransposed: true, c: o.baseAddress!)
            }
        }
        return out
    }

    /// Next-token negative log-likelihoods: for each sequence, positions 0..<seqLen-1 predict 1..<seqLen.
    /// Returns per-sequence NLL sums. The LM head runs over a few sequences at a time (≈512 rows, so the
    /// product stays efficient while logits stay small); the last row of a sequence has no target and is
    /// skipped where it ends a chunk, computed and ignored inside one.
    public func nextTokenNLL(tokens: [Int32], batch: Int, seqLen: Int) throws -> [Double] {
        try run(tokens: tokens, batch: batch, seqLen: seqLen)
        let v = config.vocabSize, d = config.hiddenSize
        guard seqLen > 1 else { return Array(repeating: 0, count: batch) }
        let perChunk = max(1, min(batch, 512 / seqLen))
        let logits = FloatBuffer((perChunk * seqLen - 1) * v)
        var nll = [Double](repeating: 0, count: batch * seqLen)     // by row; last row of each sequence unused
        let h = ws!.h.p
        var first = 0
        while first < batch {
            let seqs = min(perChunk, batch - first)
            let rows = seqs * seqLen - 1, row0 = first * seqLen
            timed("lm_head", flops: 2.0 * Double(rows * v * d)) {
                (weights.lmHead ?? weights.embed).withUnsafeBufferPointer { w in
                    BLAS.gemm(m: rows, n: v, k: d, a: h + row0 * d, b: w.baseAddress!, bTransposed: true, c: logits.p)
                }
            }
            timed("nll") {
                nll.withUnsafeMutableBufferPointer { out in
                    tokens.withUnsafeBufferPointer { tk in
                        let o = out.baseAddress! + row0, next = tk.baseAddress! + row0 + 1, base = logits.p
                        Kernels.parallelRows(rows, minRowsPerChunk: 8) { range in
                            for r in range where r % seqLen != seqLen - 1 {
                                o[r] = Kernels.nll(base + r * v, count: v, target: Int(next[r]))
                            }
                        }
                    }
                }
            }
            first += seqs
        }
        return (0..<batch).map { b in nll[(b * seqLen)..<(b * seqLen + seqLen - 1)].reduce(0, +) }
    }

    // MARK: - the pass

    func ensureRope(_ positions: Int) {
        guard positions > ropePositions else { return }
        (ropeCos, ropeSin) = Self.ropeTables(config: config, positions: positions)
        ropePositions = positions
    }

    /// cos and sin [positions × headDim/2] of the rotary angles. inv_freq as transformers computes it:
    /// theta^(-2j/hd) in double, angles in fp32 like its matmul.
    public static func ropeTables(config: LlamaConfig, positions: Int) -> (cos: [Float], sin: [Float]) {
        let half = config.headDim / 2
        var cs = [Float](repeating: 0, count: positions * half), sn = cs
        let inv = (0..<half).map { j in Float(1.0 / Foundation.pow(config.ropeTheta, Double(2 * j) / Double(config.headDim))) }
        for p in 0..<positions {
            for j in 0..<half {
                let a = Float(p) * inv[j]
                cs[p * half + j] = Foundation.cos(a)
                sn[p * half + j] = Foundation.sin(a)
            }
        }
        return (cs, sn)
    }

    /// Sizes the workspace and rotary tables for [batch × seqLen] and writes the token embeddings into ws.x.
    func prepare(tokens: [Int32], batch: Int, seqLen: Int) -> Workspace {
        let n = batch * seqLen, d = config.hiddenSize
        if ws?.tokens != n { ws = Workspace(tokens: n, config: config) }
        let ws = ws!
        ensureRope(seqLen)
        timed("embed") {
            weights.embed.withUnsafeBufferPointer { e in
                for t in 0..<n { (ws.x.p + t * d).update(from: e.baseAddress! + Int(tokens[t]) * d, count: d) }
            }
        }
        return ws
    }

    func validate(tokens: [Int32], batch: Int, seqLen: Int) throws {
        guard batch > 0, seqLen > 0, tokens.count == batch * seqLen else {
            throw ModelError.invalidInput("forward: \(tokens.count) tokens do not fill \(batch) × \(seqLen)")
        }
        if let bad = tokens.first(where: { $0 < 0 || Int($0) >= config.vocabSize }) {
            throw ModelError.invalidInput("forward: token id \(bad) outside the vocabulary (\(config.vocabSize))")
        }
    }

    private func run(tokens: [Int32], batch: Int, seqLen: Int) throws {
        let n = batch * seqLen
        try validate(tokens: tokens, batch: batch, seqLen: seqLen)
        let ws = prepare(tokens: tokens, batch: batch, seqLen: seqLen)
        for layer in weights.layers {
            attentionBlock(layer, ws: ws, batch: batch, seqLen: seqLen)
            mlpBlock(layer, ws: ws, tokens: n)
        }
        norm(weights.finalNorm, ws: ws, rows: n)
    }

    func norm(_ weight: [Float], ws: Workspace, rows: Int) {
        timed("norm") {
            weight.withUnsafeBufferPointer { w in
                Kernels.rmsNorm(ws.x.p, weight: w.baseAddress!, out: ws.h.p, rows: rows, dim: config.hiddenSize,
                                eps: config.rmsNormEps)
            }
        }
    }

    /// out[N × rows(W)] (+)= in[N × k] · Wᵀ for a weight W stored [rows × k].
    func project(_ phase: String, _ input: UnsafePointer<Float>, tokens n: Int, k: Int, weight: [Float],
                         outWidth: Int, out: UnsafeMutablePointer<Float>, accumulate: Bool = false) {
        timed(phase, flops: 2.0 * Double(n * k * outWidth)) {
            weight.withUnsafeBufferPointer { w in
                BLAS.gemm(m: n, n: outWidth, k: k, a: input, b: w.baseAddress!, bTransposed: true, c: out,
                          beta: accumulate ? 1 : 0)
            }
        }
    }

    /// Attention half of a layer: ws.x ← ws.x + attention(norm(ws.x)). Leaves post-RoPE q|k|v in ws.qkv and the
    /// attention output in ws.attn; when `probabilities` is given, the softmax of sequence b, head h is kept at
    /// probabilities + (b·nq + h)·T² (the backward pass needs it).
    func attentionBlock(_ l: LayerWeights, ws: Workspace, batch: Int, seqLen: Int,
                        probabilities: UnsafeMutablePointer<Float>? = nil) {
        let c = config, d = c.hiddenSize, hd = c.headDim, n = batch * seqLen
        let nq = l.shape.numHeads, nkv = l.shape.numKVHeads, rep = nq / nkv
        let width = (nq + 2 * nkv) * hd, qWidth = nq * hd
        norm(l.inputNorm, ws: ws, rows: n)
        project("qkv", ws.h.p, tokens: n, k: d, weight: l.wqkv, outWidth: width, out: ws.qkv.p)
        timed("rope") {
            ropeCos.withUnsafeBufferPointer { cs in
                ropeSin.withUnsafeBufferPointer { sn in
                    // q heads and k heads are adjacent columns: rotate nq + nkv heads from column 0.
                    Kernels.rope(ws.qkv.p, tokens: n, rowStride: width, colOffset: 0, heads: nq + nkv, headDim: hd,
                                 positions: { $0 % seqLen }, cos: cs.baseAddress!, sin: sn.baseAddress!)
                }
            }
        }
        // Scaled dot-product attention per (sequence, head), one single-threaded BLAS per core.
        if profile != nil { profile!.attentionFlops += 4.0 * Double(batch * nq * seqLen * seqLen * hd) }
        timed("attention") {
            let scale = 1 / Float(hd).squareRoot()
            let pairs = batch * nq
            let workers = min(ProcessInfo.processInfo.activeProcessorCount, pairs)
            let savedThreads = BLAS.threads
            BLAS.threads = 1
            let qkv = ws.qkv.p, attn = ws.attn.p
            DispatchQueue.concurrentPerform(iterations: workers) { wk in
                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: seqLen * seqLen)
                defer { scratch.deallocate() }
                var p = wk
                while p < pairs {
                    let b = p / nq, h = p % nq, g = h / rep
                    let scores = probabilities.map { $0 + p * seqLen * seqLen } ?? scratch
                    let rows = qkv + b * seqLen * width
                    BLAS.gemm(m: seqLen, n: seqLen, k: hd, a: rows + h * hd, lda: width,
                              b: rows + (nq + g) * hd, ldb: width, bTransposed: true, c: scores)
                    Kernels.causalSoftmax(scores, rows: seqLen, cols: seqLen, shift: 0, scale: scale)
                    BLAS.gemm(m: seqLen, n: hd, k: seqLen, a: scores, b: rows + (nq + nkv + g) * hd, ldb: width,
                              bTransposed: false, c: attn + b * seqLen * qWidth + h * hd, ldc: qWidth)
                    p += workers
                }
            }
            BLAS.threads = savedThreads
        }
        project("o", ws.attn.p, tokens: n, k: qWidth, weight: l.wo, outWidth: d, out: ws.x.p, accumulate: true)
    }

    /// MLP half of a layer: ws.x ← ws.x + down(silu(gate)·up)(norm(ws.x)); leaves gate|up in ws.gu, the product in ws.act.
    func mlpBlock(_ l: LayerWeights, ws: Workspace, tokens n: Int) {
        let d = config.hiddenSize, inter = l.shape.intermediateSize
        norm(l.postNorm, ws: ws, rows: n)
        project("gate_up", ws.h.p, tokens: n, k: d, weight: l.wGateUp, outWidth: 2 * inter, out: ws.gu.p)
        timed("swiglu") { Kernels.swiglu(ws.gu.p, out: ws.act.p, rows: n, inner: inter) }
        project("down", ws.act.p, tokens: n, k: inter, weight: l.wDown, outWidth: d, out: ws.x.p, accumulate: true)
    }
}
