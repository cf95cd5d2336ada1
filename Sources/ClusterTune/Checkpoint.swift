// The tensors of a LoRA checkpoint: adapter values and AdamW's two moments, as one F32 safetensors file.
import Formats
import Foundation

struct TuneCheckpointTensors {
    var parameters: [Float]
    var m: [Float]
    var v: [Float]

    static let fileName = "state.safetensors"

    /// The file of pipeline stage `s` (its slice of the adapters and moments).
    static func stageFileName(_ s: Int) -> String { "stage-\(s).safetensors" }

    func write(to dir: URL, name: String = fileName) throws {
        try SafetensorsWriter.write([("parameters", [parameters.count], parameters), ("exp_avg", [m.count], m),
                                     ("exp_avg_sq", [v.count], v)],
                                    metadata: ["format": "llmprune-lora-checkpoint"],
                                    to: dir.appendingPathComponent(name))
    }

    static func read(from dir: URL, name: String = fileName) throws -> TuneCheckpointTensors {
        let f = try SafetensorsFile(path: dir.appendingPathComponent(name).path)
        return TuneCheckpointTensors(parameters: try f.floats("parameters"), m: try f.floats("exp_avg"),
                                     v: try f.floats("exp_avg_sq"))
    }
}
