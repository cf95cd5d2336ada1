// The tensors of a LoRA checkpoint: adapter values and AdamW's two moments, as one F32 safetensors file.
import Formats
import Foundation

struct TuneCheckpointTensors {
    var parameters: [Float]
    var m: [Float]
    var v: [Float]

    static let fileName = "state.safetensors"

    func write(to dir: URL) throws {
        try SafetensorsWriter.write([("parameters", [parameters.count], parameters), ("exp_avg", [m.count], m),
                                     ("exp_avg_sq", [v.count], v)],
                                    metadata: ["format": "llmprune-lora-checkpoint"],
                                    to: dir.appendingPathComponent(Self.fileName))
    }

    static func read(from dir: URL) throws -> TuneCheckpointTensors {
        let f = try SafetensorsFile(path: dir.appendingPathComponent(fileName).path)
        return TuneCheckpointTensors(parameters: try f.floats("parameters"), m: try f.floats("exp_avg"),
                                     v: try f.floats("exp_avg_sq"))
    }
}
