// The dtype a written model's weights are stored in (`--dtype f32|bf16|f16` of prune, apply, cluster prune and merge).
// Every tensor is written in that one dtype, norms and biases included, as transformers' `save_pretrained` writes a
// model loaded or cast to that torch dtype (every floating parameter in the model dtype; Llama-family classes keep
// no module in fp32), and config.json's `torch_dtype` / `dtype` name it. Computation stays fp32: the weights are
// narrowed tensor by tensor as they are written (Formats' FloatEncoding, round to nearest even).
import Foundation
import Formats
import LlamaModel

extension HFExport {
    /// The dtype written when none is asked for: bf16 for a GGUF input (its quantised types have no safetensors
    /// counterpart, and bf16 keeps fp32's range at half the size); for a safetensors input its own float dtype, so
    /// fp32 stays fp32 and bf16 stays bf16. A checkpoint mixing dtypes gets the one holding the most elements of the
    /// model's tensors (fp32 norms beside bf16 matrices give bf16); a tie goes to the wider (f32, then bf16).
    public static func defaultDType(modelPath: String) throws -> TensorDType {
        let (format, byType) = try ModelLoader.storedElements(path: modelPath)
        if format == "gguf" { return .bf16 }
        let widestFirst: [TensorDType] = [.f32, .bf16, .f16]
        var best: TensorDType? = nil, most = 0
        for d in widestFirst {
            let n = byType[d.safetensorsName] ?? 0
            if n > most { (best, most) = (d, n) }
        }
        return best ?? .f32
    }
}

extension LlamaWeights {
    /// Replaces every value by the one it reads back as from a `dtype` file (nothing changes for f32), in place: the
    /// model an export in `dtype` holds, to evaluate without reading it back. An array shared with another model is
    /// copied on write, so the caller releases that model first when memory matters.
    public func round(to dtype: TensorDType) {
        guard dtype != .f32 else { return }
        func r(_ a: inout [Float]) {
            a.withUnsafeMutableBufferPointer { p in
                for i in p.indices { p[i] = FloatEncoding.rounded(p[i], to: dtype) }
            }
        }
        r(&embed)
        r(&finalNorm)
        if lmHead != nil { r(&lmHead!) }
        for l in layers.indices {
            r(&layers[l].inputNorm); r(&layers[l].wqkv); r(&layers[l].wo); r(&layers[l].postNorm)
            r(&layers[l].wGateUp); r(&layers[l].wDown)
            r(&layers[l].bqkv); r(&layers[l].bo); r(&layers[l].bGateUp); r(&layers[l].bDown)
        }
    }
}
