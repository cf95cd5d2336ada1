// `llmprune cluster prune`: the importance pass, the plan and the cut of one model across the ranks of an MPI job.
// Rank 0 is the coordinator (ZeroMQ control plane, job directory, plan) and also does a rank's share of the work.
// Phases: load → importance → plan → write; each ends with a checkpoint in the job directory, and a relaunch
// with --resume starts at the first phase without one. Every MPI collective is entered after a `go` from the
// coordinator for (phase, epoch), epoch = attempt number, so all ranks issue the same sequence.
//
//   --shard samples: every rank loads the whole model and takes 1/N of the calibration samples; per layer, the
//       gradient sums (and per-sample squared-gradient sums) are MPI_Reduce'd to the rank that owns the layer,
//       before any abs, so the scores are exactly one process's.
//   --shard layers: every rank loads only its block of layers (rank 0 the embedding, the last rank the head);
//       activations flow up the ranks and their gradients down; each rank scores its own layers.
// Either way each rank cuts its own block and writes its own shard; rank 0 writes the index and commits the
// directory with one rename.
import Cluster
import Formats
import Foundation
import LlamaModel
import ModelExport
import Pruning

public enum ShardMode: String, Codable, Sendable, CaseIterable {
    case samples, layers
}

/// Phases of a prune job, in order. Loading is redone by every attempt; the others end with a checkpoint.
public enum PrunePhase: String, Codable, CaseIterable, Sendable, Comparable, JobPhase {
    case load, importance, plan, write

    /// The checkpointed phases, in order.
    static let checkpointed: [String] = [importance, plan, write].map(\.rawValue)

    public static func < (a: PrunePhase, b: PrunePhase) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// scores.json: the importance phase's checkpoint.
public struct ScoresCheckpoint: Codable, Equatable, Sendable {
    public var epoch: Int
    public var loss: Double?
    public var calibration: CalibrationProvenance?
    public var scores: [LayerScores]
    public var stages: [PipelineStageReport]
}

extension JobDirectory {
    public var scoresFile: URL { file("scores.json") }
    public var planFile: URL { file("plan.json") }
}

public struct ClusterPruneOptions: Sendable {
    public var modelPath: String
    public var out: URL
    public var jobDir: URL
    public var shard: ShardMode = .samples
    public var settings: PruneSettings
    /// The job's command-line arguments, recorded in job.json for --resume.
    public var spec: JobSpec
    public var resume = false
    public var force = false
    /// Control plane (bind, heartbeats, CURVE, quiet, fault hooks).
    public var session = SessionOptions()
    /// Micro-batches of the layer-sharded pipeline (nil: 1). More overlap the stages, but each stage then holds
    /// the gradient sums of all its scored layers until the last micro-batch is done (k·4 bytes per weight).
    public var microBatches: Int? = nil
    /// Layers mode: keep the block's layers in the mapped checkpoint (file dtype) and widen one at a time.
    public var lowMemory = false
    /// The dtype every rank writes its shard in; nil: the input's (`HFExport.defaultDType`), resolved by each rank
    /// from the same file header, so all shards agree.
    public var dtype: TensorDType? = nil
    /// The planner's prediction for this job (recorded in report.json beside the measured peaks).
    public var memoryPlan: MemoryPlan? = nil
    /// Refit o_proj/down_proj after the cut (`lstsq` only; ClusterReconstruction.swift); nil: none.
    public var reconstruction: ReconstructionSettings? = nil

    public init(modelPath: String, out: URL, jobDir: URL, settings: PruneSettings, spec: JobSpec) {
        self.modelPath = modelPath
        self.out = out
        self.jobDir = jobDir
        self.settings = settings
        self.spec = spec
    }
}

/// Draws the calibration set from a loaded model's tokenizer (every rank draws the same one).
public typealias CalibrationDraw = (LoadedModel) throws -> CalibrationSet

/// What rank 0 reports at the end (also report.json).
public struct ClusterPruneReport: Codable, Sendable {
    public struct Phase: Codable, Sendable {
        /// Wall time on rank 0 from the phase's start to its end (0 when it came from a checkpoint).
        public var seconds: Double
        /// Bytes handed to MPI by all ranks (sends, receives, reduction contributions, broadcasts).
        public var mpiBytes: Int
        /// Bytes of control messages the workers sent (score vectors, shard lists, traces).
        public var controlBytes: Int
        public var fromCheckpoint: Bool
    }
    public struct Rank: Codable, Sendable {
        public var rank: Int
        public var host: String
        public var pid: Int
        public var layers: [Int]
        public var weightBytes: Int
        public var peakActivationBytes: Int
        public var peakRSSBytes: Int
        /// VmHWM at the end of load, calibration, importance and write: which phase set the peak.
        public var peakRSSByPhase: [String: Int]?
        public var traffic: Communicator.Traffic
    }
    public var out: String
    public var jobDir: String
    public var plan: String
    public var trace: String
    public var shard: ShardMode
    public var ranks: Int
    public var epoch: Int
    public var startPhase: PrunePhase
    public var parametersBefore: Int
    public var parametersAfter: Int
    public var loss: Double?
    public var layers: [LayerShape]
    public var phases: [String: Phase]
    public var perRank: [Rank]
    public var totalSeconds: Double
    /// The planner's prediction per rank (nil when the job was not planned).
    public var memoryPlan: MemoryPlan?
    /// The dtype of the written weights ("f32", "bf16", "f16"; nil in reports written before it was recorded).
    public var dtype: String? = nil
}

/// Per-rank results sent to rank 0 with the last unit.
struct RankSummary: Codable, Sendable {
    var rank: Int
    var host: String
    var pid: Int
    var layers: [Int]
    var weightBytes: Int
    var peakActivationBytes: Int
    var peakRSSBytes: Int
    var peakRSSByPhase: [String: Int]
    var traffic: [String: Communicator.Traffic]
    var controlBytes: [String: Int]
    var shard: ShardFile
    var events: [TraceEvent]
    /// The reconstruction windows (rank 0's copy goes into the plan) and the layers this rank refit.
    var reconstructionData: CalibrationProvenance? = nil
    var reconstruction: [ReconstructionLayerReport]? = nil
}

/// A rank's importance result (the `done` payload of the importance unit).
struct ImportanceResult: Codable, Sendable {
    var scores: [LayerScores]
    /// The rank's share of the batch loss (samples) or the loss (last stage of layers); nil when none.
    var loss: Double?
    var stage: PipelineStageReport
}

public final class ClusterPruneJob {
    let options: ClusterPruneOptions
    let comm: Communicator
    let calibrate: CalibrationDraw
    let dir: JobDirectory
    /// Draws the reconstruction windows (every rank the same), when `options.reconstruction` is set.
    public var drawReconstruction: CalibrationDraw? = nil
    /// Largest activation cache of this rank's gradient pass, bytes.
    private(set) var peakActivation = 0

    public init(options: ClusterPruneOptions, comm: Communicator = .world, calibrate: @escaping CalibrationDraw) {
        self.options = options
        self.comm = comm
        self.calibrate = calibrate
        dir = JobDirectory(options.jobDir)
    }

    /// Runs this rank's part. Returns the report on rank 0, nil elsewhere.
    public func run() throws -> ClusterPruneReport? {
        let t0 = Date()
        var so = options.session
        so.capabilities = ["prune", options.shard.rawValue]
        so.resumeHint = "llmprune cluster prune --resume \(dir.url.path)"
        let session = try ClusterSession<PrunePhase>(comm: comm, dir: dir, options: so) {
            if !options.resume, !options.force, FileManager.default.fileExists(atPath: options.out.path) {
                throw ExportError.outputExists(path: options.out.path)
            }
            let a = try dir.beginAttempt(spec: options.spec, resume: options.resume, force: options.force, ranks: comm.size,
                                         mode: options.shard.rawValue, phases: PrunePhase.checkpointed,
                                         quiet: options.session.quiet) { epoch in
                HFExport.stagingDirectory(for: options.out, tag: "e\(epoch)").path
            }
            return AttemptInfo(epoch: a.epoch, startPhase: a.startPhase, extra: ["staging": a.staging ?? ""])
        }
        return try session.run { try runPhases($0, start: t0) }
    }

    func setPeakActivation(_ bytes: Int) { peakActivation = max(peakActivation, bytes) }
}
