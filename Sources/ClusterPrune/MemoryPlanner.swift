// The memory planner of `cluster prune` (docs/cluster.md §8): each rank's peak resident memory, predicted from the
// shapes, the checkpoint's dtype, the sharding and the calibration size alone, before anything is loaded, so a job
// that cannot fit a per-rank budget (`--mem-per-rank`) stops at once with what would make it fit.
//
// The model follows what the code holds, phase by phase (peak = the largest phase):
//   load        fp32 arrays being filled + the checkpoint pages read so far (mapped file, counted in RSS)
//   importance  fp32 weights held + (low memory) the block's mapped pages, one widened layer, one layer's gradient
//               sums (+ Fisher and its per-sample temporary) + activations (workspace, kept layer inputs, backward
//               buffers, the last stage's logits chunk, transfer copies)
//   reconstruction (with --reconstruct) the weights held + (low memory) one widened layer + the sweep's streams and
//               micro-batch internals + one pruned layer's Grams and solve + the refits kept for the write (+ the
//               stream received and sent, layers mode)
//   write       low memory: mapped pages + one widened layer + its cut; fp32: the block + one cut layer
// plus a runtime constant (Swift, MPI, ZeroMQ, OpenBLAS, tokenizer, calibration text) measured on this machine.
import Foundation
import LlamaModel
import Pruning

/// What a job's memory depends on.
public struct MemoryPlanInputs: Sendable {
    public var config: LlamaConfig
    public var shard: ShardMode
    public var ranks: Int
    /// Layers stay mapped in the file dtype and are widened one at a time (layers mode only).
    public var lowMemory: Bool
    /// Bytes per parameter of the checkpoint's layer tensors (2 for bf16/f16, 4 for f32, ≈0.6 for Q4_1).
    public var fileBytesPerParameter: Double
    public var samples: Int
    public var sampleLength: Int
    public var scored: Range<Int>
    public var needsGradient: Bool
    public var needsFisher: Bool
    public var microBatches: Int
    /// The pruning ratio: the cut copy of a layer is ≈ (1 − ratio) of it.
    public var ratio: Double
    /// The per-rank budget, if any: with an automatic activation cache, the cache takes only the room it leaves.
    public var budget: Int? = nil
    /// Bytes a rank may spend on keeping layer internals from the forward sweep (no recomputation in the backward);
    /// nil: automatic (the budget's headroom, less 5 %; without a budget, 2 GiB as a single process allows).
    public var activationCache: Int? = nil
    /// The reconstruction after the cut, if any (its sweep, one layer's Grams and the refits held until the write).
    public var reconstruction: ReconstructionSettings? = nil

    public init(config: LlamaConfig, shard: ShardMode, ranks: Int, lowMemory: Bool, fileBytesPerParameter: Double,
                samples: Int, sampleLength: Int, scored: Range<Int>, needsGradient: Bool, needsFisher: Bool,
                microBatches: Int = 1, ratio: Double = 0.25) {
        self.config = config
        self.shard = shard
        self.ranks = ranks
        self.lowMemory = lowMemory
        self.fileBytesPerParameter = fileBytesPerParameter
        self.samples = samples
        self.sampleLength = sampleLength
        self.scored = scored
        self.needsGradient = needsGradient
        self.needsFisher = needsFisher
        self.microBatches = microBatches
        self.ratio = ratio
    }
}

/// Predicted bytes per rank, by component.
public struct MemoryPlan: Codable, Sendable, Equatable {
    public struct Rank: Codable, Sendable, Equatable {
        public var rank: Int
        public var layerStart: Int
        public var layerEnd: Int
        /// Checkpoint pages resident through the job (low memory: the block's layers, in the file dtype).
        public var mappedBytes: Int
        /// fp32 arrays held through the job (all weights of the block; low memory: only embedding / head / norms).
        public var weightBytes: Int
        /// One layer widened to fp32 at a time (low memory).
        public var layerBytes: Int
        /// One scored layer's gradient sums (and Fisher sums with their temporary).
        public var gradientBytes: Int
        public var activationBytes: Int
        public var runtimeBytes: Int
        /// Top layers of the block whose internals are kept from the forward sweep, and their bytes.
        public var cachedLayers: Int
        public var cacheBytes: Int
        /// The phase with the largest footprint.
        public var peakPhase: String
        public var peakBytes: Int
    }
    public var lowMemory: Bool
    public var ranks: [Rank]
    public var largest: Int { ranks.map(\.peakBytes).max() ?? 0 }
}

public enum MemoryPlanner {
    /// Resident memory of a rank before it holds any weight, once loaded: the Swift runtime and Foundation, MPICH
    /// (with its shared-memory segments), libzmq, the tokenizer tables and the calibration text. Measured on this
    /// machine (docs/cluster.md §8: VmHWM at the end of the load phase minus the weights read).
    public static let runtimeBytes = 56 << 20
    /// Added once products run (rope tables, thread stacks of the BLAS and Dispatch pools); measured likewise: the
    /// resident growth of a rank whose weights and activations are accounted for is a few MiB (OpenBLAS's buffers
    /// are mapped at start-up and are already in `runtimeBytes`).
    public static let computeRuntimeBytes = 4 << 20

    public static func plan(_ x: MemoryPlanInputs) throws -> MemoryPlan {
        let c = x.config, d = c.hiddenSize, V = c.vocabSize
        let N = x.shard == .layers ? x.ranks : 1
        let blocks = try PipelinePartition.balanced(config: c, stages: N)
        let owned = try PipelinePartition.balanced(config: c, stages: x.ranks)    // what each rank cuts and writes
        let low = x.lowMemory && x.shard == .layers
        let f = x.fileBytesPerParameter
        let gradientPass = x.needsGradient || x.needsFisher
        var ranks: [MemoryPlan.Rank] = []
        for r in 0..<x.ranks {
            let block = x.shard == .layers ? blocks[r] : 0..<c.numLayers
            let first = x.shard == .samples || r == 0, last = x.shard == .samples || r == x.ranks - 1
            let blockParams = block.reduce(0) { $0 + c.layerParameterCount(c.layers[$1]) }
            let table = V * d                                          // embedding or untied head, parameters
            // fp32 arrays held through the job, and the checkpoint bytes read (touched) while loading them.
            var held = 0, read = 0.0
            let tiedHead = last && c.tieWordEmbeddings
            if (first && !low) || tiedHead { held += 4 * table; read += f * Double(table) }
            if last {
                held += 4 * d
                if !c.tieWordEmbeddings { held += 4 * table; read += f * Double(table) }
            }
            if !low { held += 4 * blockParams; read += f * Double(blockParams) }
            // Pages that stay resident after the load: a low-memory stage keeps its checkpoint mapped (its block,
            // and the pages of what it widened at load); an fp32 stage unmaps the file.
            let mapped = low ? Int(f * Double(blockParams)) : 0
            let resident = low ? mapped + Int(read) : 0
            let biggest = block.map { c.layerParameterCount(c.layers[$0]) }.max() ?? 0
            let layerBytes = low ? 4 * biggest : 0
            let scoredHere = block.filter { x.scored.contains($0) }
            let linear = scoredHere.map { c.layerParameterCount(c.layers[$0]) - 2 * d }.max() ?? 0
            let maxGateUp = scoredHere.map { 2 * c.layers[$0].intermediateSize * d }.max() ?? 0
            var gradient = 0
            if gradientPass {
                gradient = 4 * linear
                if x.needsFisher { gradient += 4 * linear + 4 * maxGateUp }
                // micro-batches: a stage holds its scored layers' sums until the last micro-batch
                if x.microBatches > 1 && x.shard == .layers { gradient *= max(1, scoredHere.count) }
            }
            let a = activations(x, block: block, last: last)
            let base = runtimeBytes + computeRuntimeBytes, kept = held + resident
            var moments: [(String, Int)] = [("load", runtimeBytes + held + Int(read))]
            if gradientPass {
                moments.append(("forward", base + kept + layerBytes + a.forward))
                if last { moments.append(("loss", base + kept + a.loss)) }
                if block.upperBound > x.scored.lowerBound {
                    moments.append(("backward", base + kept + layerBytes + gradient + a.backward))
                }
            } else if !scoredHere.isEmpty {
                moments.append(("score", base + kept + layerBytes))
            }
            // The write, layer by layer (a cut layer is ≈ 1 − ratio of it): a low-memory stage holds one widened
            // layer and its cut, or the stored embedding read and copied.
            let keptFraction = max(0, min(1, 1 - x.ratio))
            if low {
                let cut = Int(keptFraction * Double(4 * linear))
                var w = layerBytes + cut
                if first { w = max(w, 2 * Int(f * Double(table))) }
                if last && !c.tieWordEmbeddings { w = max(w, Int(f * Double(table))) }
                moments.append(("write", base + kept + w))
            } else {
                // Layer by layer: the block shrinking as each layer is cut (samples mode first drops the layers other
                // ranks write), one cut layer beside it, or rank 0's embedding encoded for the file.
                let others = x.shard == .samples
                    ? 4 * (0..<c.numLayers).filter { !owned[r].contains($0) }.reduce(0) { $0 + c.layerParameterCount(c.layers[$1]) } : 0
                let cutOne = owned[r].filter { x.scored.contains($0) }
                    .map { Int(keptFraction * Double(4 * (c.layerParameterCount(c.layers[$0]) - 2 * d))) }.max() ?? 0
                moments.append(("write", base + held - others + max(cutOne, r == 0 ? 4 * table : 0)))
            }
            if let rc = x.reconstruction, let lastPruned = x.scored.last, block.lowerBound <= lastPruned {
                let n = x.shard == .samples ? (rc.samples + x.ranks - 1) / x.ranks : rc.samples
                let sweep = ReconstructionSweep.bytes(config: c, batch: n, seqLen: rc.sampleLength, method: rc.method)
                let transfer = x.shard == .layers ? 2 * 4 * n * rc.sampleLength * d : 0
                let step = block.filter { x.scored.contains($0) }
                    .map { ReconstructionSweep.stepBytes(original: c.layers[$0], keptFraction: keptFraction,
                                                         headDim: c.headDim, hidden: d,
                                                         rows: min(n, ReconstructionSweep.microBatch(seqLen: rc.sampleLength)) * rc.sampleLength,
                                                         reduced: x.shard == .samples) }
                    .max() ?? 0
                let refits = owned[r].filter { x.scored.contains($0) }.reduce(0) {
                    $0 + Int(keptFraction * Double(4 * d * (c.layers[$1].numHeads * c.headDim + c.layers[$1].intermediateSize)))
                }
                moments.append(("reconstruction", base + kept + layerBytes + sweep + transfer + step + refits))
                if let w = moments.firstIndex(where: { $0.0 == "write" }) { moments[w].1 += refits }
            }
            // The activation cache: as many of the block's top layers as the room allows keep their internals.
            let candidates = gradientPass ? block.filter { $0 >= x.scored.lowerBound }.count : 0
            let perLayer = internalsBytes(x, block: block)
            let room: Int
            if let explicit = x.activationCache { room = explicit }
            else if let b = x.budget { room = max(0, Int(0.95 * Double(b)) - moments.map(\.1).max()!) }
            else { room = 2 << 30 }
            let cached = perLayer > 0 ? min(candidates, room / perLayer) : 0
            // Backward goes top down and frees each layer's cache as it passes: the gradient sums appear only at
            // the top scored layer, when the caches of the unscored layers above it are gone.
            let above = min(cached, block.filter { $0 >= x.scored.upperBound }.count)
            for i in moments.indices where ["forward", "loss", "backward"].contains(moments[i].0) {
                guard moments[i].0 == "backward", cached > 0 else { moments[i].1 += cached * perLayer; continue }
                // A cached layer's backward reads its probabilities and mid residual from its cache.
                let withoutGradient = moments[i].1 - gradient + cached * perLayer
                let atTopScored = moments[i].1 + (cached - above) * perLayer
                moments[i].1 = max(above > 0 ? withoutGradient : 0, atTopScored) - a.cachedSaving
            }
            let top = moments.max { $0.1 < $1.1 }!
            ranks.append(.init(rank: r, layerStart: block.lowerBound, layerEnd: block.upperBound, mappedBytes: resident,
                               weightBytes: held, layerBytes: layerBytes, gradientBytes: gradient,
                               activationBytes: max(a.forward, a.loss, a.backward), runtimeBytes: base,
                               cachedLayers: cached, cacheBytes: cached * perLayer, peakPhase: top.0, peakBytes: top.1))
        }
        return MemoryPlan(lowMemory: low, ranks: ranks)
    }

    /// The internals one layer keeps for its backward when cached (`LayerInternals.bytes`), largest of the block.
    static func internalsBytes(_ x: MemoryPlanInputs, block: Range<Int>) -> Int {
        let g = BlockGeometry(batch: samplesPerRank(x), seqLen: x.sampleLength)
        return block.map { LayerInternals.bytes(x.config.layers[$0], config: x.config, geometry: g) }.max() ?? 0
    }

    /// Samples one rank's gradient pass sees: all of them in layers mode, its share in samples mode.
    static func samplesPerRank(_ x: MemoryPlanInputs) -> Int {
        x.shard == .samples ? (x.samples + x.ranks - 1) / x.ranks : x.samples
    }

    /// Activation bytes of one rank's gradient pass at its three high-water moments (see StageGradients.swift and
    /// Backward.swift for the buffers): the forward sweep, the loss on the last stage (one chunk of logits), and
    /// the backward sweep (one layer's recomputed internals and their gradients).
    /// `cachedSaving`: what a cached layer's backward does not allocate (probabilities, mid-layer residual).
    static func activations(_ x: MemoryPlanInputs, block: Range<Int>, last: Bool)
        -> (forward: Int, loss: Int, backward: Int, cachedSaving: Int) {
        let c = x.config, d = c.hiddenSize, hd = c.headDim
        let B = samplesPerRank(x), T = x.sampleLength, n = B * T, row = 4 * n * d
        let qkv = c.layers.map { ($0.numHeads + 2 * $0.numKVHeads) * hd }.max()!
        let q = c.layers.map { $0.numHeads * hd }.max()!, nq = c.layers.map(\.numHeads).max()!
        let I = c.layers.map(\.intermediateSize).max()!
        let workspace = 4 * n * (2 * d + qkv + q + 3 * I)
        let kept = row * block.filter { $0 >= x.scored.lowerBound }.count   // each scored layer's input
        let transfers = 2 * row                                            // the received and the sent [n × d]
        let perChunk = max(1, min(B, 512 / T))
        let logits = 4 * perChunk * T * c.vocabSize
        let backward = 4 * (B * nq * T * T + n * (3 * d + q + qkv + 3 * I))
        return (workspace + kept + transfers,
                last ? workspace + kept + logits + 3 * row : 0,
                workspace + kept + backward + transfers,
                4 * (B * nq * T * T) + row)
    }

    /// Throws `MemoryBudgetError` when the largest rank's peak exceeds `budget`, saying what would fit: more ranks,
    /// fewer calibration samples, or low-memory execution.
    public static func check(_ x: MemoryPlanInputs, budget: Int) throws -> MemoryPlan {
        var x = x
        x.budget = budget
        let p = try plan(x)
        guard p.largest > budget else { return p }
        var hints: [String] = []
        if x.shard == .samples {
            var y = x; y.shard = .layers; y.lowMemory = true
            if let fit = minimumRanks(y, budget: budget) { hints.append("use --shard layers with ≥ \(fit) ranks") }
        } else {
            if let fit = minimumRanks(x, budget: budget), fit > x.ranks {
                hints.append("use ≥ \(fit) ranks")
            }
            if !x.lowMemory {
                var y = x; y.lowMemory = true
                if let fits = try? plan(y), fits.largest <= budget { hints.append("add --low-memory") }
            }
        }
        if x.needsGradient || x.needsFisher {
            var best: Int? = nil
            for s in stride(from: x.samples - 1, through: 1, by: -1) {
                var y = x; y.samples = s
                if let q = try? plan(y), q.largest <= budget { best = s; break }
            }
            if let best { hints.append("--calib-samples ≤ \(best)") }
        }
        let worst = p.ranks.max { $0.peakBytes < $1.peakBytes }!
        throw MemoryBudgetError(
            message: String(format: "--mem-per-rank %@: needs %.1f GiB per rank with %d rank%@ (rank %d, %@ phase); ",
                            formatGiB(budget), Double(worst.peakBytes) / 1_073_741_824, x.ranks, x.ranks == 1 ? "" : "s",
                            worst.rank, worst.peakPhase)
                + (hints.isEmpty ? "no setting here fits: raise the budget" : hints.joined(separator: " or ")),
            plan: p)
    }

    /// The fewest ranks (up to one per layer) whose largest peak fits, or nil.
    static func minimumRanks(_ x: MemoryPlanInputs, budget: Int) -> Int? {
        for n in 1...x.config.numLayers {
            var y = x; y.ranks = n
            if let p = try? plan(y), p.largest <= budget { return n }
        }
        return nil
    }

    /// "6G", "512M", "1.5G", "6GiB" or plain bytes → bytes (binary units).
    public static func parseSize(_ s: String) -> Int? {
        var t = s.trimmingCharacters(in: .whitespaces).uppercased()
        if t.hasSuffix("IB") { t.removeLast(2) } else if t.hasSuffix("B") && t.count > 1 && Double(String(t.dropLast())) == nil { t.removeLast() }
        let units: [Character: Double] = ["K": 1024, "M": 1_048_576, "G": 1_073_741_824, "T": 1_099_511_627_776]
        var scale = 1.0
        if let u = t.last, let m = units[u] { scale = m; t.removeLast() }
        guard let v = Double(t), v > 0, v.isFinite, v * scale < 9e18 else { return nil }
        return Int(v * scale)
    }

    public static func formatGiB(_ bytes: Int) -> String { String(format: "%.2f GiB", Double(bytes) / 1_073_741_824) }
}

/// A job refused by the planner before loading: one line, and the plan behind it.
public struct MemoryBudgetError: Error, CustomStringConvertible {
    public var message: String
    public var plan: MemoryPlan
    public var description: String { message }
}
