// The memory planner of `tune` (docs/cluster.md §8, docs/pipeline.md): each rank's peak resident memory predicted
// from the checkpoint's headers (shapes, storage dtype), the grid (P stages × D replicas), the adapter config and
// the largest micro-batch of the run, before any weight is loaded — so a job that cannot fit `--mem-per-rank`
// stops at once, naming the smallest --pipeline that would fit.
//   weights      fp32 arrays held: the block's layers (low memory: none, one widened at a time), the embedding on
//                the first stage, final norm and LM head on the last (a tied head is the embedding)
//   mapped       low memory: the block's layers in the file dtype (read every step, so resident), and the pages
//                of the tensors converted at load (the file stays mapped)
//   load         the checkpoint pages read while converting (a GGUF or safetensors mapping, in RSS until unmapped)
//   adapters     the flat adapters and their gradients (whole model: 8 bytes per adapter parameter), the stage's
//                AdamW moments (8 bytes per stage parameter) and the update's copy of the stage's slice
//   activations  `LoRAStagePass.activationBytes` (kept layer inputs of the micro-batches in flight, pool, copies)
//   runtime      Swift, MPI, ZeroMQ, OpenBLAS, tokenizer; plus the data set (records and tokenized examples)
import Foundation
import LlamaModel
import LoRA
import Tokenizer

public struct TuneMemoryInputs: Sendable {
    public var config: LlamaConfig
    /// Bytes per parameter of the checkpoint's layer tensors (2 for bf16/f16, 4 for f32, ≈0.6 for Q4_1).
    public var fileBytesPerParameter: Double
    public var pipeline: Int
    public var ranks: Int
    public var lowMemory: Bool
    public var lora: LoRAConfig
    /// The largest micro-batch of the run: examples × longest sequence (right-padded).
    public var microBatch: Int
    public var seqLen: Int
    /// Micro-batches a replica runs per step (bounds the 1F1B micro-batches in flight).
    public var microBatchesPerReplica: Int
    /// Bytes of the data set as held (records' text and tokenized examples).
    public var dataBytes: Int

    public init(config: LlamaConfig, fileBytesPerParameter: Double, pipeline: Int, ranks: Int, lowMemory: Bool,
                lora: LoRAConfig, microBatch: Int, seqLen: Int, microBatchesPerReplica: Int, dataBytes: Int) {
        self.config = config
        self.fileBytesPerParameter = fileBytesPerParameter
        self.pipeline = pipeline
        self.ranks = ranks
        self.lowMemory = lowMemory
        self.lora = lora
        self.microBatch = microBatch
        self.seqLen = seqLen
        self.microBatchesPerReplica = microBatchesPerReplica
        self.dataBytes = dataBytes
    }
}

public struct TuneMemoryPlan: Codable, Sendable, Equatable {
    public struct Rank: Codable, Sendable, Equatable {
        public var rank: Int, stage: Int, replica: Int
        public var layerStart: Int, layerEnd: Int
        public var weightBytes: Int, mappedBytes: Int, loadBytes: Int, adapterBytes: Int, activationBytes: Int
        public var runtimeBytes: Int
        /// "load" or "train": the moment with the largest footprint.
        public var peakPhase: String
        public var peakBytes: Int
    }
    public var pipeline: Int
    public var lowMemory: Bool
    public var ranks: [Rank]
    public var largest: Int { ranks.map(\.peakBytes).max() ?? 0 }
}

public enum TuneMemoryPlanner {
    /// Resident bytes of a tune rank before it holds weights, data or activations (Swift runtime, Foundation,
    /// MPICH, libzmq, OpenBLAS's buffers, the tokenizer tables): measured here as VmHWM of a tune of the tiny
    /// test model minus everything counted below (docs/pipeline.md, "Memory").
    public static let runtimeBytes = 60 << 20

    public static func plan(_ x: TuneMemoryInputs) throws -> TuneMemoryPlan {
        let c = x.config, d = c.hiddenSize, V = c.vocabSize, P = x.pipeline
        guard P >= 1, x.ranks % P == 0 else {
            throw ModelError.invalidInput("--pipeline \(P) does not divide the \(x.ranks) ranks")
        }
        let blocks = try PipelinePartition.balanced(config: c, stages: P)
        let adapters = try LoRAAdapters(config: x.lora, model: c)
        let low = x.lowMemory
        let f = x.fileBytesPerParameter
        var ranks: [TuneMemoryPlan.Rank] = []
        for rank in 0..<x.ranks {
            let s = rank % P, block = blocks[s], first = s == 0, last = s == P - 1
            let blockParams = block.reduce(0) { $0 + c.layerParameterCount(c.layers[$1]) }
            let table = V * d
            var held = 0, read = 0.0
            if (first && !low) || (last && c.tieWordEmbeddings) { held += 4 * table; read += f * Double(table) }
            if last {
                held += 4 * d
                if !c.tieWordEmbeddings { held += 4 * table; read += f * Double(table) }
            }
            if !low { held += 4 * blockParams; read += f * Double(blockParams) }
            let mapped = low ? Int(f * Double(blockParams)) : 0
            let widened = low ? 4 * (block.map { c.layerParameterCount(c.layers[$0]) }.max() ?? 0) : 0
            let stageParams = adapters.slots.filter { block.contains($0.layer) }
                .reduce(0) { $0 + x.lora.rank * ($1.inFeatures + $1.outFeatures) }
            let adapterBytes = 8 * adapters.parameterCount + 12 * stageParams
            let inFlight = max(1, min(P - s, x.microBatchesPerReplica))
            let act = LoRAStagePass.activationBytes(config: c, layers: block, lora: x.lora, batch: x.microBatch,
                                                    seqLen: x.seqLen, inFlight: inFlight) + widened
            let base = runtimeBytes + x.dataBytes
            let load = base + held + Int(read)
            // A low-memory stage keeps the checkpoint mapped: the pages it read while loading (a tied or untied
            // head on the last stage) stay resident beside its block.
            let train = base + held + mapped + (low ? Int(read) : 0) + adapterBytes + act
            ranks.append(.init(rank: rank, stage: s, replica: rank / P, layerStart: block.lowerBound,
                               layerEnd: block.upperBound, weightBytes: held, mappedBytes: mapped, loadBytes: Int(read),
                               adapterBytes: adapterBytes, activationBytes: act, runtimeBytes: base,
                               peakPhase: train >= load ? "train" : "load", peakBytes: max(train, load)))
        }
        return TuneMemoryPlan(pipeline: P, lowMemory: low, ranks: ranks)
    }

    /// The smallest number of stages whose largest rank fits `budget` (one replica: ranks = stages), trying the
    /// given low-memory setting and then low memory; nil if none up to one stage per layer does.
    public static func smallestFit(_ x: TuneMemoryInputs, budget: Int) throws -> (pipeline: Int, lowMemory: Bool)? {
        for low in x.lowMemory ? [true] : [false, true] {
            for p in 1...x.config.numLayers {
                var y = x
                y.pipeline = p
                y.ranks = p
                y.lowMemory = low
                if try plan(y).largest <= budget { return (p, low) }
            }
        }
        return nil
    }
}

extension TuneJob {
    /// The memory plan of a tune with these options on `ranks` ranks, from the checkpoint's headers and the data
    /// (tokenized with the model's tokenizer; no weight is read), and the inputs it was computed from.
    public static func memoryPlan(_ o: TuneOptions, ranks: Int) throws -> (plan: TuneMemoryPlan, inputs: TuneMemoryInputs) {
        let p = try planned(o, ranks: ranks)
        return (p.plan, p.inputs)
    }

    /// Everything a tune derives before loading a weight: the data, the tokenizer and the memory plan.
    static func planned(_ o: TuneOptions, ranks: Int)
        throws -> (data: TuneData, tokenizer: BPETokenizer, plan: TuneMemoryPlan, inputs: TuneMemoryInputs)
    {
        let records = try AlpacaData.load(path: o.dataPath)
        let tokenizer = try ModelLoader.tokenizer(path: o.modelPath)
        let data = try TuneData(records: records, tokenizer: tokenizer, options: o)
        let inputs = data.memoryInputs(config: try ModelLoader.config(path: o.modelPath),
                                       fileBytesPerParameter: try ModelLoader.layerBytesPerParameter(path: o.modelPath),
                                       options: o, ranks: ranks, records: records)
        return (data, tokenizer, try TuneMemoryPlanner.plan(inputs), inputs)
    }
}
