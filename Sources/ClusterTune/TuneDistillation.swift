// `tune --teacher`: what a tune job records about its teacher and KD settings, so a checkpoint is only continued
// with the teacher and settings it was trained with. The teacher is identified as a prune plan identifies its
// model (`ModelIdentity`: path, file size and time, config fingerprint); the loss itself is in
// Sources/LoRA/Distillation.swift.
import Cluster
import Foundation
import LlamaModel
import LoRA
import Pruning

/// The teacher of a tune job (`--teacher`, `--kd-weight`, `--kd-temperature`).
public struct TeacherOptions: Sendable {
    public var path: String
    public var settings: DistillationSettings
    public init(path: String, settings: DistillationSettings) {
        self.path = path
        self.settings = settings
    }
}

/// The teacher and KD settings of a run, as checkpoint.json and report.json record them.
public struct DistillationRecord: Codable, Equatable, Sendable {
    public var teacher: ModelIdentity
    public var weight: Double
    public var temperature: Double

    /// The record of `options` (headers only: the teacher's weights are not read).
    public init(_ options: TeacherOptions) throws {
        let c = try Checkpoint.open(path: options.path)
        teacher = try ModelIdentity(path: c.path, format: c.format, config: c.config)
        weight = options.settings.weight
        temperature = options.settings.temperature
    }

    /// Refuses to continue a checkpoint trained with `saved` under `now`, naming the flag that differs.
    public static func checkResume(saved: DistillationRecord?, now: DistillationRecord?) throws {
        switch (saved, now) {
        case (nil, nil): return
        case (nil, .some): throw DistillationError.setting("teacher", "the checkpoint was trained without a teacher")
        case (.some(let s), nil):
            throw DistillationError.setting("teacher", "the checkpoint was distilled from \(s.teacher.path)")
        case (.some(let s), .some(let n)):
            if s.teacher != n.teacher {
                throw DistillationError.setting("teacher", "\(n.teacher.path) is not the teacher the checkpoint was "
                    + "distilled from (\(s.teacher.path), \(s.teacher.fileSize) bytes, config \(s.teacher.configFingerprint.prefix(12)))")
            }
            if s.weight != n.weight {
                throw DistillationError.setting("kd-weight", "the checkpoint was trained with \(s.weight), not \(n.weight)")
            }
            if s.temperature != n.temperature {
                throw DistillationError.setting("kd-temperature", "the checkpoint was trained with \(s.temperature), not \(n.temperature)")
            }
        }
    }

    /// Before any rank starts: with `--resume`, the job's latest checkpoint must have been trained with `now`.
    public static func checkResume(jobDir: URL, now: DistillationRecord?) throws {
        let dir = JobDirectory(jobDir)
        let file = dir.file("checkpoint.json")
        guard FileManager.default.fileExists(atPath: file.path) else { return }
        try checkResume(saved: try dir.read(TuneCheckpoint.self, from: file).distillation, now: now)
    }
}

/// Mean CE and KD parts of a step's loss (the KD part is T²·KL per scored prediction).
public struct LossParts: Codable, Equatable, Sendable {
    public var ce: Double
    public var kd: Double
}

extension TeacherOptions {
    /// Loads the teacher (every rank, read-only, as the model is loaded) after checking it indexes the same tokens
    /// as the student.
    func load(student: LoadedModel) throws -> Teacher {
        let t = try ModelLoader.load(path: path, tokenizer: true)
        if let why = Teacher.incompatibility(student: student.config, studentTokenizer: student.tokenizer,
                                             teacher: t.config, teacherTokenizer: t.tokenizer) {
            throw DistillationError.setting("teacher", "\(path): \(why)")
        }
        return try Teacher(weights: t.weights, settings: settings)
    }
}
