// Layer-sharded (pipeline) importance pass over MPI point-to-point (docs/pipeline.md). Rank r owns a contiguous
// block of layers and loads only those weights (rank 0 also the embedding, the last rank the final norm and
// LM head). Forward: the residual stream [N × d] goes rank r → r+1; the last rank computes the loss;
// backward: ∂loss/∂(residual) goes rank r+1 → r, down to the lowest scored layer. Each rank computes the
// exact gradients (and Fisher) of its own scored layers — every sample crosses every stage — scores them,
// and sends only the per-unit score vectors to rank 0, which builds the plan.
// Message order is fixed and acyclic (each rank receives from r−1, then sends to r+1; later receives from
// r+1, then sends to r−1), so blocking MPI_Send/MPI_Recv cannot deadlock.
import Cluster
import Foundation
import LlamaModel
import Pruning

/// What one stage held and used.
public struct PipelineStageReport: Sendable, Codable, Equatable {
    public var rank: Int
    public var layerStart: Int
    public var layerEnd: Int
    public var weightBytes: Int
    public var peakActivationBytes: Int
    public var seconds: Double
    public init(rank: Int, layerStart: Int, layerEnd: Int, weightBytes: Int, peakActivationBytes: Int, seconds: Double) {
        self.rank = rank
        self.layerStart = layerStart
        self.layerEnd = layerEnd
        self.weightBytes = weightBytes
        self.peakActivationBytes = peakActivationBytes
        self.seconds = seconds
    }
}

public struct Pipeline {
    public let comm: Communicator
    /// Layer block of every rank.
    public let stages: [Range<Int>]

    static let forwardTag = 101, backwardTag = 102

    public init(comm: Communicator, config: LlamaConfig) throws {
        self.comm = comm
        stages = try PipelinePartition.balanced(config: config, stages: comm.size)
    }

    public var layers: Range<Int> { stages[comm.rank] }
    public var isFirst: Bool { comm.rank == 0 }
    public var isLast: Bool { comm.rank == comm.size - 1 }

    /// Loads this rank's stage of the model at `path`.
    public func loadStage(path: String, tokenizer: Bool = true) throws -> StageWeights {
        try ModelLoader.loadStage(path: path, layers: layers, embedding: isFirst, head: isLast, tokenizer: tokenizer)
    }

    /// Runs the pipelined gradient pass (GPipe): the batch is cut into `microBatches` contiguous micro-batches;
    /// every micro-batch goes forward through the stages in turn (so stage r works on micro-batch m while stage
    /// r+1 works on m−1), then backward in reverse order. Gradients and Fisher sums of the micro-batches are
    /// combined with weights nₘ/N — the batch loss is the mean of per-sample means — exactly as sample sharding
    /// combines ranks, so the result is the whole batch's up to summation order. Every rank must call it with
    /// the same tokens, geometry and micro-batch count. With `consume`, each scored layer's combined gradient
    /// is handed over as soon as its last micro-batch is done and not kept. With `trace`, the steps are spans of
    /// phase "importance" (wait = blocked on a neighbour). `blocking` wraps each blocking send and receive (so
    /// the job can tell that this rank has done its part and waits on a neighbour).
    public func gradients(makePass: () -> StageGradientPass, tokens: [Int32], batch: Int, seqLen: Int, fisher: Bool,
                          microBatches: Int = 1, trace: TraceRecorder? = nil, blocking: ((() throws -> Void) throws -> Void)? = nil,
                          consume: ((_ layer: Int, _ gradient: LayerGradients, _ fisher: LayerGradients?) throws -> Void)? = nil)
        throws -> (result: GradientResult, peakActivationBytes: Int)
    {
        let r = comm.rank
        func traced<T>(_ name: String, _ body: () throws -> T) throws -> T {
            guard let trace else { return try body() }
            return try trace.span(name, phase: PrunePhase.importance.rawValue, body)
        }
        func step<T>(_ name: String, _ body: () throws -> T) throws -> T {
            guard let blocking, name == "wait" || name == "send" else { return try traced(name, body) }
            var result: T? = nil
            try blocking { result = try traced(name, body) }
            return result!
        }
        let m = max(1, min(microBatches, batch))
        let chunks = (0..<m).map { ShardedGradients.shard(rank: $0, size: m, samples: batch) }
        let passes = chunks.map { _ in makePass() }
        let first = passes[0], d = first.config.hiddenSize
        precondition(first.stage.layers == layers, "pipeline: stage \(first.stage.layers) is not rank \(r)'s \(layers)")
        var loss = 0.0, peak = 0
        for (c, pass) in zip(chunks, passes) {
            let count = c.count * seqLen * d
            let input = isFirst ? nil : try step("wait") { try comm.receiveFloats(count, from: r - 1, tag: Self.forwardTag) }
            let toks = Array(tokens[(c.lowerBound * seqLen)..<(c.upperBound * seqLen)])
            let output = try step("forward") { try pass.forward(tokens: toks, batch: c.count, seqLen: seqLen, input: input) }
            if let output, !isLast { try step("send") { try comm.send(output, to: r + 1, tag: Self.forwardTag) } }
            if isLast { loss += try step("loss") { try pass.lossBackward() } * Double(c.count) / Double(batch) }
        }
        var grads: [Int: LayerGradients] = [:], fishers: [Int: LayerGradients] = [:]
        if first.runsBackward {
            for (k, (c, pass)) in zip(chunks, passes).enumerated().reversed() {
                let count = c.count * seqLen * d, w = Float(c.count) / Float(batch)
                let dOut = pass.receivesOutputGradient
                    ? try step("wait") { try comm.receiveFloats(count, from: r + 1, tag: Self.backwardTag) } : nil
                let add = { (l: Int, g: LayerGradients, f: LayerGradients?) throws in
                    // One micro-batch (w = 1): take the arrays as they are, no scaled copy of a layer's gradient.
                    grads[l] = grads[l].map { $0.adding(g, scaledBy: w) } ?? (w == 1 ? g : g.scaled(by: w))
                    if let f { fishers[l] = fishers[l].map { $0.adding(f, scaledBy: w) } ?? (w == 1 ? f : f.scaled(by: w)) }
                    if k == 0, let consume {       // the layer's last micro-batch: hand it over
                        try consume(l, grads.removeValue(forKey: l)!, fishers.removeValue(forKey: l))
                    }
                }
                if let dIn = try step("backward", { try pass.backward(outputGradient: dOut, fisher: fisher, consume: add) }) {
                    try step("send") { try comm.send(dIn, to: r - 1, tag: Self.backwardTag) }
                }
                peak = max(peak, passes.reduce(0) { $0 + $1.peakActivationBytes })
                pass.reset()
            }
        } else {
            peak = passes.reduce(0) { $0 + $1.peakActivationBytes }
        }
        for p in passes { p.reset() }
        return (GradientResult(loss: isLast ? loss : 0, gradients: grads, fisher: fisher ? fishers : nil,
                               peakActivationBytes: peak), peak)
    }
}
