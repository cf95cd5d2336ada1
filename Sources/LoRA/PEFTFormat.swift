// The adapter directory peft's save_pretrained writes and PeftModel.from_pretrained reads for a
// LlamaForCausalLM: adapter_config.json and adapter_model.safetensors with tensors named
// base_model.model.model.layers.{i}.{self_attn|mlp}.{q,k,v,o,gate,up,down}_proj.lora_{A,B}.weight,
// A [r × in], B [out × r], fp32, metadata {"format": "pt"}.
import Foundation
import Formats
import LlamaModel
import Support
import TensorCore

public enum PEFTFormat {
    public static let configFile = "adapter_config.json"
    public static let weightsFile = "adapter_model.safetensors"

    public static func tensorName(layer: Int, target: LoRATarget, matrix: String) -> String {
        "base_model.model.model.layers.\(layer).\(target.modulePath).\(matrix).weight"
    }

    /// Writes the two files into `dir` (created if missing; existing files replaced atomically).
    public static func write(_ a: LoRAAdapters, to dir: URL, baseModel: String? = nil) throws {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let r = a.config.rank
        var tensors: [(name: String, shape: [Int], values: [Float])] = []
        for s in a.slots {
            tensors.append((tensorName(layer: s.layer, target: s.target, matrix: "lora_A"), [r, s.inFeatures], a.a(s)))
            tensors.append((tensorName(layer: s.layer, target: s.target, matrix: "lora_B"), [s.outFeatures, r], a.b(s)))
        }
        try SafetensorsWriter.write(tensors, metadata: ["format": "pt"], to: dir.appendingPathComponent(weightsFile))
        // The keys peft 0.21 writes that matter for loading a plain LoRA; the rest take peft's defaults.
        let config: [String: Any] = [
            "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": baseModel ?? NSNull(),
            "r": r, "lora_alpha": a.config.alpha, "lora_dropout": a.config.dropout, "bias": "none",
            "target_modules": a.config.orderedTargets.map(\.moduleName), "fan_in_fan_out": false,
            "inference_mode": true, "init_lora_weights": true, "use_rslora": false, "use_dora": false,
            "modules_to_save": NSNull(), "layers_to_transform": NSNull(), "layers_pattern": NSNull(),
            "rank_pattern": [String: Any](), "alpha_pattern": [String: Any](), "revision": NSNull(),
        ]
        let data = try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
        try AtomicFile.write(data, to: dir.appendingPathComponent(configFile))
    }

    /// Reads a peft LoRA adapter directory for a model of config `model`.
    public static func load(from dir: URL, model: LlamaConfig) throws -> LoRAAdapters {
        let cfgURL = dir.appendingPathComponent(configFile), wURL = dir.appendingPathComponent(weightsFile)
        func fail(_ url: URL, _ r: String) -> LoRAError { .malformedAdapter(path: url.path, reason: r) }
        guard let raw = FileManager.default.contents(atPath: cfgURL.path) else { throw fail(cfgURL, "cannot read the file") }
        guard let obj = (try? JSONSerialization.jsonObject(with: raw)) as? [String: Any] else {
            throw fail(cfgURL, "not a JSON object")
        }
        if let t = obj["peft_type"] as? String, t != "LORA" { throw fail(cfgURL, "peft_type \"\(t)\" is not LORA") }
        guard let r = (obj["r"] as? NSNumber)?.intValue, r > 0 else { throw fail(cfgURL, "missing or invalid \"r\"") }
        let alpha = (obj["lora_alpha"] as? NSNumber)?.doubleValue ?? 8       // peft's default lora_alpha
        let dropout = (obj["lora_dropout"] as? NSNumber)?.doubleValue ?? 0
        for flag in ["use_rslora", "use_dora", "fan_in_fan_out"] where (obj[flag] as? Bool) == true {
            throw fail(cfgURL, "\"\(flag)\": true is not supported")
        }
        for key in ["rank_pattern", "alpha_pattern"] {
            if let p = obj[key] as? [String: Any], !p.isEmpty { throw fail(cfgURL, "a non-empty \"\(key)\" is not supported") }
        }
        for key in ["layers_to_transform", "modules_to_save"] {
            if let v = obj[key], !(v is NSNull), !((v as? [Any])?.isEmpty ?? false) {
                throw fail(cfgURL, "\"\(key)\" is not supported")
            }
        }
        if let b = obj["bias"] as? String, b != "none" { throw fail(cfgURL, "bias \"\(b)\" is not supported (only \"none\")") }
        guard let names = obj["target_modules"] as? [String], !names.isEmpty else {
            throw fail(cfgURL, "\"target_modules\" must be a non-empty list of module names (a regex string is not supported)")
        }
        var targets = Set<LoRATarget>()
        for n in names {
            guard let t = LoRATarget(moduleName: n) else {
                throw fail(cfgURL, "target module \"\(n)\" is not one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj")
            }
            targets.insert(t)
        }
        let config = LoRAConfig(rank: r, alpha: alpha, dropout: dropout, targets: targets)
        do { try config.validate() } catch { throw fail(cfgURL, "\(error)") }
        let adapters = try LoRAAdapters(config: config, model: model)

        let file: SafetensorsFile
        do { file = try SafetensorsFile(path: wURL.path) } catch { throw fail(wURL, "\(error)") }
        var expected = Set<String>()
        for s in adapters.slots {
            for (matrix, shape) in [("lora_A", [r, s.inFeatures]), ("lora_B", [s.outFeatures, r])] {
                let name = tensorName(layer: s.layer, target: s.target, matrix: matrix)
                expected.insert(name)
                guard let got = file.shape(of: name) else { throw fail(wURL, "missing tensor \(name)") }
                guard got == shape else { throw fail(wURL, "\(name) has shape \(got), the model needs \(shape)") }
                let values: [Float]
                do { values = try file.floats(name) } catch { throw fail(wURL, "\(error)") }
                if matrix == "lora_A" { adapters.setA(s, values) } else { adapters.setB(s, values) }
            }
        }
        if let extra = file.tensorNames.sorted().first(where: { !expected.contains($0) }) {
            throw fail(wURL, "unexpected tensor \(extra) (not a LoRA matrix of this model's \(model.numLayers) layers and targets)")
        }
        return adapters
    }
}

public enum LoRAMerge {
    /// Plain weights with every adapter folded in: W += (alpha/r)·B·A (the base is not modified).
    public static func merged(base: LlamaWeights, adapters a: LoRAAdapters) throws -> LlamaWeights {
        try a.checkFits(base.config)
        let c = base.config, hd = c.headDim, r = a.config.rank, scale = a.config.scale
        var layers = base.layers
        a.parameters.withUnsafeBufferPointer { P in
            for s in a.slots {
                let shape = c.layers[s.layer]
                let (kp, row0): (WritableKeyPath<LayerWeights, [Float]>, Int) = {
                    switch s.target {
                    case .q: return (\.wqkv, 0)
                    case .k: return (\.wqkv, shape.numHeads * hd)
                    case .v: return (\.wqkv, (shape.numHeads + shape.numKVHeads) * hd)
                    case .o: return (\.wo, 0)
                    case .gate: return (\.wGateUp, 0)
                    case .up: return (\.wGateUp, shape.intermediateSize)
                    case .down: return (\.wDown, 0)
                    }
                }()
                layers[s.layer][keyPath: kp].withUnsafeMutableBufferPointer { w in
                    BLAS.gemm(m: s.outFeatures, n: s.inFeatures, k: r, a: P.baseAddress! + s.bOffset,
                              b: P.baseAddress! + s.aOffset, bTransposed: false,
                              c: w.baseAddress! + row0 * s.inFeatures, alpha: scale, beta: 1)
                }
            }
        }
        return LlamaWeights(config: c, embed: base.embed, layers: layers, finalNorm: base.finalNorm, lmHead: base.lmHead)
    }
}
