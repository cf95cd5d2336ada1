// The Llama forward pass in fp32 over cblas_sgemm, tokens of the whole batch stacked into the M dimension
// of every projection. Attention runs per (sequence, query head) on strided views of the fused q|k|v buffer,
// spread over cores with single-threaded BLAS. Residual adds are fused into the o and down products
// (beta = 1). Positions restart at 0 in every sequence (no KV cache: this is a scorer, not a generator).
import Foundation
import TensorCore

/// Reusable buffers for one batch geometry; allocated once, reused across calls with the same token count.
final class Workspace {
    let tokens: Int
    var x: [Float]        // [N × d] residual stream
    var h: [Float]        // [N × d] normed input of a block
    var qkv: [Float]      // [N × maxQKV]
    var attn: [Float]     // [N × maxQ]
    var gu: [Float]       // [N × 2·maxI]
    var act: [Float]      // [N × maxI]

    init(tokens n: Int, config c: LlamaConfig) {
        tokens = n
        let hd = c.headDim
        let maxQKV = c.layers.map { ($0.numHeads + 2 * $0.numKVHeads) * hd }.max()!
        let maxQ = c.layers.map { $0.numHeads * hd }.max()!
        let maxI = c.layers.map(\.intermediateSize).max()!
        x = .init(repeating: 0, count: n * c.hiddenSize)
        h = .init(repeating: 0, count: n * c.hiddenSize)
        qkv = .init(repeating: 0, count: n * maxQKV)
        attn = .init(repeating: 0, count: n * maxQ)
        gu = .init(repeating: 0, count: n * 2 * maxI)
        act = .init(repeating: 0, count: n * maxI)
    }
}

/// Runs a `LlamaWeights` model forward. Not thread-safe: one runner per thread.
public final class LlamaRunner {
    public let weights: LlamaWeights
    public var config: LlamaConfig { weights.config }
    private var ws: Workspace?
    private var ropeCos: [Float] = []   // [maxPos × hd/2]
    private var ropeSin: [Float] = []
    private var ropePositions = 0

    public init(weights: LlamaWeights) {
        self.weights = weights
    }

    /// Final-normed hidden states [batch·seqLen × d] of `tokens` (row-major [batch × seqLen]).
    public func hiddenStates(tokens: [Int32], batch: Int, seqLen: Int) throws -> [Float] {
        try run(tokens: tokens, batch: batch, seqLen: seqLen)
        return ws!.h
    }

    /// Logits [batch·seqLen × vocab].
    public func logits(tokens: [Int32], batch: Int, seqLen: Int) throws -> [Float] {
        try run(tokens: tokens, batch: batch, seqLen: seqLen)
        let n = batch * seqLen, v = config.vocabSize, d = config.hiddenSize
        var out = [Float](repeating: 0, count: n * v)
        let head = weights.lmHead ?? weights.embed
        ws!.h.withUnsafeBufferPointer { h in
            head.withUnsafeBufferPointer { w in
                out.withUnsafeMutableBufferPointer { o in
                    BLAS.gemm(m: n, n: v, k: d, a: h.baseAddress!, b: w.baseAddress!, bTransposed: true, c: o.baseAddress!)
                }
            }
        }
        return out
    }

    /// Next-token negative log-likelihoods: for each sequence, positions 0..<seqLen-1 predict 1..<seqLen.
    /// Returns per-sequence NLL sums (Double) and the number of scored tokens per sequence (seqLen − 1).
    /// The LM head runs only on the rows that have a target, one sequence at a time, so logits never
    /// occupy more than [seqLen × vocab].
    public func nextTokenNLL(tokens: [Int32], batch: Int, seqLen: Int) throws -> [Double] {
        try run(tokens: tokens, batch: batch, seqLen: seqLen)
        let v = config.vocabSize, d = config.hiddenSize, rows = seqLen - 1
        guard rows > 0 else { return Array(repeating: 0, count: batch) }
        var logits = [Float](repeating: 0, count: rows * v)
        var sums = [Double](repeating: 0, count: batch)
        let head = weights.lmHead ?? weights.embed
        var perRow = [Double](repeating: 0, count: rows)
        for b in 0..<batch {
            ws!.h.withUnsafeBufferPointer { h in
                head.withUnsafeBufferPointer { w in
                    logits.withUnsafeMutableBufferPointer { o in
                        BLAS.gemm(m: rows, n: v, k: d, a: h.baseAddress! + b * seqLen * d, b: w.baseAddress!,
                                  bTransposed: true, c: o.baseAddress!)
                    }
                }
            }
            logits.withUnsafeBufferPointer { lp in
                perRow.withUnsafeMutableBufferPointer { pr in
                    let base = lp.baseAddress!, out = pr.baseAddress!
                    Kernels.parallelRows(rows, minRowsPerChunk: 8) { range in
                        for r in range {
                            out[r] = Kernels.nll(base + r * v, count: v, target: Int(tokens[b * seqLen + r + 1]))
                        }
                    }
                }
            }
            sums[b] = perRow.reduce(0, +)
        }
        return sums
    }

    // MARK: - the pass

    private func ensureRope(_ positions: Int) {
        guard positions > ropePositions else { return }
        let half = config.headDim / 2
        ropeCos = .init(repeating: 0, count: positions * half)
        ropeSin = .init(repeating: 0, count: positions * half)
        // inv_freq as transformers computes it: theta^(-2j/hd), angles in fp32 like its matmul.
        let inv = (0..<half).map { j in Float(1.0 / Foundation.pow(config.ropeTheta, Double(2 * j) / Double(config.headDim))) }
        for p in 0..<positions {
            for j in 0..<half {
                let a = Float(p) * inv[j]
                ropeCos[p * half + j] = Foundation.cos(a)
                ropeSin[p * half + j] = Foundation.sin(a)
            }
        }
        ropePositions = positions
    }

    private func run(tokens: [Int32], batch: Int, seqLen: Int) throws {
        let c = config
        let n = batch * seqLen, d = c.hiddenSize, hd = c.headDim
        guard batch > 0, seqLen > 0, tokens.count == n else {
            throw ModelError.invalidInput("forward: \(tokens.count) tokens do not fill \(batch) × \(seqLen)")
        }
        if let bad = tokens.first(where: { $0 < 0 || Int($0) >= c.vocabSize }) {
            throw ModelError.invalidInput("forward: token id \(bad) outside the vocabulary (\(c.vocabSize))")
        }
        if ws?.tokens != n { ws = Workspace(tokens: n, config: c) }
        let ws = ws!
        ensureRope(seqLen)

        // Embedding lookup.
        weights.embed.withUnsafeBufferPointer { e in
            ws.x.withUnsafeMutableBufferPointer { x in
                for t in 0..<n {
                    (x.baseAddress! + t * d).update(from: e.baseAddress! + Int(tokens[t]) * d, count: d)
                }
            }
        }
        for layer in weights.layers {
            attentionBlock(layer, ws: ws, batch: batch, seqLen: seqLen)
            mlpBlock(layer, ws: ws, tokens: n)
        }
        weights.finalNorm.withUnsafeBufferPointer { w in
            Kernels.rmsNorm(ws.x, weight: w.baseAddress!, out: &ws.h, rows: n, dim: d, eps: c.rmsNormEps)
        }
        _ = hd
    }

    private func attentionBlock(_ l: LayerWeights, ws: Workspace, batch: Int, seqLen: Int) {
        let c = config, d = c.hiddenSize, hd = c.headDim, n = batch * seqLen
        let nq = l.shape.numHeads, nkv = l.shape.numKVHeads, rep = nq / nkv
        let width = (nq + 2 * nkv) * hd, qWidth = nq * hd
        l.inputNorm.withUnsafeBufferPointer { w in
            Kernels.rmsNorm(ws.x, weight: w.baseAddress!, out: &ws.h, rows: n, dim: d, eps: c.rmsNormEps)
        }
        // q|k|v [N × width] = h [N × d] · Wqkvᵀ
        ws.h.withUnsafeBufferPointer { h in
            l.wqkv.withUnsafeBufferPointer { w in
                ws.qkv.withUnsafeMutableBufferPointer { o in
                    BLAS.gemm(m: n, n: width, k: d, a: h.baseAddress!, b: w.baseAddress!, bTransposed: true, c: o.baseAddress!)
                }
            }
        }
        ropeCos.withUnsafeBufferPointer { cs in
            ropeSin.withUnsafeBufferPointer { sn in
                ws.qkv.withUnsafeMutableBufferPointer { q in
                    // q heads and k heads are adjacent columns: rotate nq + nkv heads from column 0.
                    Kernels.rope(q.baseAddress!, tokens: n, rowStride: width, colOffset: 0, heads: nq + nkv,
                                 headDim: hd, positions: { $0 % seqLen }, cos: cs.baseAddress!, sin: sn.baseAddress!)
                }
            }
        }
        // Scaled dot-product attention per (sequence, head); one single-threaded BLAS per core.
        let scale = 1 / Float(hd).squareRoot()
        let pairs = batch * nq
        let workers = min(ProcessInfo.processInfo.activeProcessorCount, pairs)
        let savedThreads = BLAS.threads
        BLAS.threads = 1
        ws.qkv.withUnsafeBufferPointer { qkvb in
            ws.attn.withUnsafeMutableBufferPointer { ab in
                let qkv = qkvb.baseAddress!, attn = ab.baseAddress!
                DispatchQueue.concurrentPerform(iterations: workers) { wk in
                    let scores = UnsafeMutablePointer<Float>.allocate(capacity: seqLen * seqLen)
                    defer { scores.deallocate() }
                    var p = wk
                    while p < pairs {
                        let b = p / nq, h = p % nq, g = h / rep
                        let rows = qkv + b * seqLen * width
                        BLAS.gemm(m: seqLen, n: seqLen, k: hd, a: rows + h * hd, lda: width,
                                  b: rows + (nq + g) * hd, ldb: width, bTransposed: true, c: scores)
                        Kernels.causalSoftmax(scores, rows: seqLen, cols: seqLen, shift: 0, scale: scale)
                        BLAS.gemm(m: seqLen, n: hd, k: seqLen, a: scores, b: rows + (nq + nkv + g) * hd, ldb: width,
                                  bTransposed: false, c: attn + b * seqLen * qWidth + h * hd, ldc: qWidth)
                        p += workers
                    }
                }
            }
        }
        BLAS.threads = savedThreads
        // x += attn [N × nq·hd] · Woᵀ
        ws.attn.withUnsafeBufferPointer { a in
            l.wo.withUnsafeBufferPointer { w in
                ws.x.withUnsafeMutableBufferPointer { x in
                    BLAS.gemm(m: n, n: d, k: qWidth, a: a.baseAddress!, b: w.baseAddress!, bTransposed: true,
                              c: x.baseAddress!, beta: 1)
                }
            }
        }
    }

    private func mlpBlock(_ l: LayerWeights, ws: Workspace, tokens n: Int) {
        let c = config, d = c.hiddenSize, inter = l.shape.intermediateSize
        l.postNorm.withUnsafeBufferPointer { w in
            Kernels.rmsNorm(ws.x, weight: w.baseAddress!, out: &ws.h, rows: n, dim: d, eps: c.rmsNormEps)
        }
        ws.h.withUnsafeBufferPointer { h in
            l.wGateUp.withUnsafeBufferPointer { w in
                ws.gu.withUnsafeMutableBufferPointer { o in
                    BLAS.gemm(m: n, n: 2 * inter, k: d, a: h.baseAddress!, b: w.baseAddress!, bTransposed: true,
                              c: o.baseAddress!)
                }
            }
        }
        ws.gu.withUnsafeBufferPointer { g in
            ws.act.withUnsafeMutableBufferPointer { a in
                Kernels.swiglu(g.baseAddress!, out: a.baseAddress!, rows: n, inner: inter)
            }
        }
        ws.act.withUnsafeBufferPointer { a in
            l.wDown.withUnsafeBufferPointer { w in
                ws.x.withUnsafeMutableBufferPointer { x in
                    BLAS.gemm(m: n, n: d, k: inter, a: a.baseAddress!, b: w.baseAddress!, bTransposed: true,
                              c: x.baseAddress!, beta: 1)
                }
            }
        }
    }
}
