// The shape of a Llama-family model, with per-layer widths from day one: pruned models are heterogeneous,
// each layer keeps its own number of query heads, KV heads and MLP channels, while hidden size and head_dim
// stay global. Read from a Hugging Face config.json or from GGUF metadata; written back as config.json.
import Foundation

/// Widths of one transformer layer.
public struct LayerShape: Codable, Equatable, Sendable {
    public var numHeads: Int          // query heads
    public var numKVHeads: Int        // key/value heads; numHeads is a multiple of it (GQA)
    public var intermediateSize: Int  // SwiGLU channels

    public init(numHeads: Int, numKVHeads: Int, intermediateSize: Int) {
        self.numHeads = numHeads
        self.numKVHeads = numKVHeads
        self.intermediateSize = intermediateSize
    }

    enum CodingKeys: String, CodingKey {
        case numHeads = "num_attention_heads", numKVHeads = "num_key_value_heads", intermediateSize = "intermediate_size"
    }
}

public struct LlamaConfig: Equatable, Sendable {
    public var vocabSize: Int
    public var hiddenSize: Int
    public var headDim: Int
    public var layers: [LayerShape]
    public var rmsNormEps: Float
    public var ropeTheta: Double
    public var ropeScaling: RopeScaling = .none   // RopeScaling.swift
    public var maxPositionEmbeddings: Int
    public var tieWordEmbeddings: Bool
    public var bosTokenId: Int?
    public var eosTokenId: Int?
    /// config.json pad_token_id (GGUF tokenizer.ggml.padding_token_id), written back: a family's own default can
    /// lie outside a small vocabulary (SmolLM3Config's 128004), so transformers needs the model's value.
    public var padTokenId: Int?
    /// The family as config.json names it, written back on export: "llama" or "mistral" (the same math, plus
    /// Mistral's sliding window).
    public var modelType: String
    /// Sliding-window attention: a query at position t sees keys in (t − window, t]. nil: full causal attention.
    public var slidingWindow: Int?
    /// Which layers use the window (empty: all of them, when `slidingWindow` is set).
    public var windowedLayers: [Bool]
    /// Which layers rotate q and k (empty: all). SmolLM3 leaves every 4th layer without RoPE (`no_rope_layers`).
    public var ropeLayers: [Bool]
    /// Biases of the linear products: q/k/v (Qwen2, Llama `attention_bias`), o (Llama `attention_bias`), and
    /// gate/up/down (Llama `mlp_bias`).
    public var qkvBias = false
    public var oBias = false
    public var mlpBias = false

    public var numLayers: Int { layers.count }

    /// The attention window of layer `l` (nil: full causal attention).
    public func attentionWindow(layer l: Int) -> Int? {
        guard let w = slidingWindow else { return nil }
        return windowedLayers.isEmpty || windowedLayers[l] ? w : nil
    }

    /// Whether layer `l` applies rotary embedding to q and k.
    public func usesRope(layer l: Int) -> Bool { ropeLayers.isEmpty || ropeLayers[l] }

    /// The Hugging Face tensor names and shapes ([out, in]) this config implies, in model order.
    public var huggingFaceTensorShapes: [(name: String, shape: [Int])] {
        let d = hiddenSize
        var out: [(name: String, shape: [Int])] = [("model.embed_tokens.weight", [vocabSize, d])]
        for i in layers.indices { out += huggingFaceLayerTensorShapes(i) }
        out.append(("model.norm.weight", [d]))
        if !tieWordEmbeddings { out.append(("lm_head.weight", [vocabSize, d])) }
        return out
    }

    /// Layer `i`'s nine weight tensors, then the biases the config declares (q, k, v, o, gate, up, down), in the
    /// order `LlamaWeights.huggingFaceTensors(layer:)` gives their values.
    public func huggingFaceLayerTensorShapes(_ i: Int) -> [(name: String, shape: [Int])] {
        let l = layers[i], d = hiddenSize, hd = headDim, p = "model.layers.\(i)."
        var out: [(name: String, shape: [Int])] = [
            (p + "input_layernorm.weight", [d]), (p + "self_attn.q_proj.weight", [l.numHeads * hd, d]),
            (p + "self_attn.k_proj.weight", [l.numKVHeads * hd, d]), (p + "self_attn.v_proj.weight", [l.numKVHeads * hd, d]),
            (p + "self_attn.o_proj.weight", [d, l.numHeads * hd]), (p + "post_attention_layernorm.weight", [d]),
            (p + "mlp.gate_proj.weight", [l.intermediateSize, d]), (p + "mlp.up_proj.weight", [l.intermediateSize, d]),
            (p + "mlp.down_proj.weight", [d, l.intermediateSize])]
        if qkvBias {
            out += [(p + "self_attn.q_proj.bias", [l.numHeads * hd]), (p + "self_attn.k_proj.bias", [l.numKVHeads * hd]),
                    (p + "self_attn.v_proj.bias", [l.numKVHeads * hd])]
        }
        if oBias { out.append((p + "self_attn.o_proj.bias", [d])) }
        if mlpBias {
            out += [(p + "mlp.gate_proj.bias", [l.intermediateSize]), (p + "mlp.up_proj.bias", [l.intermediateSize]),
                    (p + "mlp.down_proj.bias", [d])]
        }
        return out
    }

    /// Elements of layer `l`'s bias vectors.
    public func layerBiasCount(_ l: LayerShape) -> Int {
        (qkvBias ? (l.numHeads + 2 * l.numKVHeads) * headDim : 0) + (oBias ? hiddenSize : 0)
            + (mlpBias ? 2 * l.intermediateSize + hiddenSize : 0)
    }

    /// True when every layer has the same widths, i.e. a plain `LlamaConfig` describes the model.
    public var isUniform: Bool { layers.allSatisfy { $0 == layers.first } }

    public init(vocabSize: Int, hiddenSize: Int, headDim: Int, layers: [LayerShape], rmsNormEps: Float,
                ropeTheta: Double, maxPositionEmbeddings: Int, tieWordEmbeddings: Bool,
                bosTokenId: Int? = nil, eosTokenId: Int? = nil, modelType: String = "llama", slidingWindow: Int? = nil,
                windowedLayers: [Bool] = [], ropeLayers: [Bool] = []) {
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.headDim = headDim
        self.layers = layers
        self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.tieWordEmbeddings = tieWordEmbeddings
        self.bosTokenId = bosTokenId
        self.eosTokenId = eosTokenId
        self.modelType = modelType
        self.slidingWindow = slidingWindow
        self.windowedLayers = windowedLayers
        self.ropeLayers = ropeLayers
    }

    /// Parameter count of the model this config describes (norms included, tied head counted once).
    public var parameterCount: Int {
        let d = hiddenSize
        var n = vocabSize * d + d                       // embeddings + final norm
        if !tieWordEmbeddings { n += vocabSize * d }
        for l in layers { n += layerParameterCount(l) }
        return n
    }

    public func layerParameterCount(_ l: LayerShape) -> Int {
        let d = hiddenSize, hd = headDim
        return 2 * d                                                  // two RMSNorm weights
            + (l.numHeads + 2 * l.numKVHeads) * hd * d + d * l.numHeads * hd   // q, k, v, o
            + 3 * d * l.intermediateSize                              // gate, up, down
            + layerBiasCount(l)
    }

    /// Most layers a config may declare (far above any real model; bounds what a corrupt file can allocate).
    public static let maxLayers = 100_000

    /// `parameterCount`, or nil if it (or any tensor size inside it) overflows Int.
    var checkedParameterCount: Int? {
        func mul(_ a: Int, _ b: Int) -> Int? { let (v, o) = a.multipliedReportingOverflow(by: b); return o ? nil : v }
        func add(_ a: Int, _ b: Int) -> Int? { let (v, o) = a.addingReportingOverflow(b); return o ? nil : v }
        let d = hiddenSize, hd = headDim
        guard let embed = mul(vocabSize, d), var n = add(tieWordEmbeddings ? embed : mul(embed, 2) ?? -1, d), n >= 0
        else { return nil }
        for l in layers {
            guard let q = mul(l.numHeads, hd), let kv = mul(l.numKVHeads, hd), let qkv = add(q, mul(kv, 2) ?? -1),
                  let attn = mul(add(qkv, q) ?? -1, d), let mlp = mul(mul(l.intermediateSize, d) ?? -1, 3),
                  let layer = add(add(attn, mlp) ?? -1, mul(d, 2) ?? -1), attn >= 0, mlp >= 0, layer >= 0,
                  let biased = add(layer, qkv + 3 * d + 2 * l.intermediateSize),   // a bound on the biases
                  let total = add(n, layer + layerBiasCount(l)), biased >= 0 else { return nil }
            n = total
        }
        return n
    }

    /// Checks the invariants the forward pass relies on.
    public func validate(source: String) throws {
        func fail(_ m: String) -> ModelError { .invalidConfig(source: source, reason: m) }
        guard vocabSize > 0, hiddenSize > 0, headDim > 0, !layers.isEmpty else {
            throw fail("vocab_size, hidden_size, head_dim and num_hidden_layers must be positive")
        }
        guard layers.count <= Self.maxLayers else {
            throw fail("num_hidden_layers \(layers.count) is more than \(Self.maxLayers)")
        }
        guard headDim % 2 == 0 else { throw fail("head_dim \(headDim) must be even for rotary embedding") }
        guard rmsNormEps > 0, ropeTheta > 0, rmsNormEps.isFinite, ropeTheta.isFinite else {
            throw fail("rms_norm_eps \(rmsNormEps) and rope_theta \(ropeTheta) must be positive and finite (in Float / Double)")
        }
        for (i, l) in layers.enumerated() {
            guard l.numKVHeads > 0, l.numHeads > 0, l.numHeads % l.numKVHeads == 0, l.intermediateSize > 0 else {
                throw fail("layer \(i): \(l.numHeads) query heads, \(l.numKVHeads) KV heads, "
                           + "\(l.intermediateSize) MLP channels (heads must be a positive multiple of KV heads)")
            }
        }
        if let w = slidingWindow, w <= 0 { throw fail("sliding_window \(w) must be positive") }
        guard windowedLayers.isEmpty || windowedLayers.count == layers.count else {
            throw fail("layer_types lists \(windowedLayers.count) layers for \(layers.count)")
        }
        guard ropeLayers.isEmpty || ropeLayers.count == layers.count else {
            throw fail("no_rope_layers lists \(ropeLayers.count) layers for \(layers.count)")
        }
        guard checkedParameterCount != nil else {
            throw fail("sizes too large: vocab_size \(vocabSize), hidden_size \(hiddenSize), head_dim \(headDim) and the "
                       + "layer widths give a parameter count that overflows")
        }
    }
}

// MARK: - config.json

extension LlamaConfig {
    /// The transformers class of each model_type written back.
    static let architectures = ["llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
                                "smollm3": "SmolLM3ForCausalLM"]

    /// A JSON true/false (not a number). `v is Bool` cannot tell: on Linux an NSNumber holding 0 or 1 casts to Bool;
    /// JSONSerialization gives booleans a class of their own, which is what is compared here.
    static func isJSONBool(_ v: Any) -> Bool { type(of: v) == jsonBoolType }
    private static let jsonBoolType: Any.Type = type(of: (try! JSONSerialization.jsonObject(with: Data("[true]".utf8)) as! [Any])[0])

    /// Key holding per-layer widths when they differ between layers (see docs/formats.md).
    public static let layerWidthsKey = "layer_widths"

    /// The model_type of llmprune's `trust_remote_code` outputs (ModelExport/RemoteCode.swift), which transformers
    /// cannot load as their family's own class; `baseModelTypeKey` names that family (llama, mistral, qwen2,
    /// smollm3), read back as `modelType`.
    public static let remoteCodeModelType = "llmprune"
    public static let baseModelTypeKey = "base_model_type"

    /// Parses a Hugging Face `config.json` of a Llama-architecture model (plus llmprune's per-layer widths).
    public init(configJSON data: Data, source: String) throws {
        guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ModelError.invalidConfig(source: source, reason: "not a JSON object")
        }
        func int(_ k: String) throws -> Int {
            guard let v = obj[k] as? NSNumber else {
                throw ModelError.invalidConfig(source: source, reason: "missing or non-numeric \"\(k)\"")
            }
            return v.intValue
        }
        // The families whose math is exactly this model's; the others are refused by name, never computed otherwise.
        var modelType = (obj["model_type"] as? String) ?? "llama"
        if modelType == Self.remoteCodeModelType {
            // llmprune's own heterogeneous output (ModelExport/RemoteCode): the family it was pruned from is kept
            // in base_model_type, and every other key is that family's.
            guard let base = obj[Self.baseModelTypeKey] as? String else {
                throw ModelError.invalidConfig(source: source, reason: "model_type \"\(modelType)\" needs a string \"\(Self.baseModelTypeKey)\"")
            }
            modelType = base
        }
        switch modelType {
        case "llama", "mistral", "qwen2", "smollm3": break
        default:
            throw ModelError.invalidConfig(source: source, reason: "model_type \"\(modelType)\" is not a Llama-architecture model")
        }
        // Biases: Qwen2 always has q/k/v biases and no others (Qwen2Attention / Qwen2MLP ignore attention_bias and
        // mlp_bias); Llama's attention_bias gives q/k/v/o biases, mlp_bias gate/up/down; Mistral has none (its
        // config has no such keys: one that says true is refused rather than guessed).
        var biases = (qkv: false, o: false, mlp: false)
        for key in ["attention_bias", "mlp_bias"] {
            guard let v = obj[key], !(v is NSNull) else { continue }
            guard let b = v as? Bool else {
                throw ModelError.invalidConfig(source: source, reason: "\(key) must be true or false")
            }
            if modelType == "mistral" && b {
                throw ModelError.invalidConfig(source: source, reason: "\(key): true is not part of a mistral model")
            }
            if modelType == "llama" && key == "attention_bias" { biases.qkv = b; biases.o = b }
            if modelType == "llama" && key == "mlp_bias" { biases.mlp = b }
        }
        if modelType == "qwen2" { biases.qkv = true }
        for key in ["hidden_act", "hidden_activation"] {
            if let act = obj[key] as? String, act != "silu" {
                throw ModelError.invalidConfig(source: source, reason: "\(key) \"\(act)\" is not implemented (only silu)")
            }
        }
        if let f = obj["partial_rotary_factor"] as? NSNumber, f.doubleValue != 1 {
            throw ModelError.invalidConfig(source: source, reason: "partial_rotary_factor \(f) is not implemented (only 1)")
        }
        // Mistral's window (transformers' MistralConfig: 4096 when the key is absent, none when null) applies to every
        // layer (MistralAttention reads config.sliding_window; it ignores layer_types); a Llama config has no window
        // (transformers' LlamaConfig ignores the key).
        var slidingWindow: Int?
        var windowedLayers: [Bool] = []
        func windowKey() throws -> Int? {
            guard let v = obj["sliding_window"] else { return 4096 }
            if v is NSNull { return nil }
            guard let n = v as? NSNumber, !Self.isJSONBool(v) else {
                throw ModelError.invalidConfig(source: source, reason: "sliding_window must be an integer or null")
            }
            return n.intValue
        }
        if modelType == "mistral" { slidingWindow = try windowKey() }
        if modelType == "qwen2" {
            // Qwen2Config: sliding_window (default 4096) only when use_sliding_window; layer_types, when absent,
            // marks layers i >= max_window_layers (default 28) "sliding_attention", and only those use the window.
            let use = obj["use_sliding_window"] as? Bool ?? false
            slidingWindow = use ? try windowKey() : nil
            let count = (obj["num_hidden_layers"] as? NSNumber)?.intValue ?? 0
            if let types = obj["layer_types"], !(types is NSNull) {
                guard let t = types as? [String],
                      t.allSatisfy({ $0 == "sliding_attention" || $0 == "full_attention" }) else {
                    throw ModelError.invalidConfig(source: source,
                                                   reason: "layer_types must list \"full_attention\" / \"sliding_attention\"")
                }
                windowedLayers = t.map { $0 == "sliding_attention" }
            } else if slidingWindow != nil, count >= 0, count <= Self.maxLayers {
                let maxWindowLayers = (obj["max_window_layers"] as? NSNumber)?.intValue ?? 28
                windowedLayers = (0..<count).map { $0 >= maxWindowLayers }
            }
            if slidingWindow == nil { windowedLayers = [] }
        }
        let rope = try RopeScaling.parse(configJSON: obj, source: source)   // rope_scaling (v4) / rope_parameters (v5)
        let hidden = try int("hidden_size")
        let heads = try int("num_attention_heads")
        let kv = (obj["num_key_value_heads"] as? NSNumber)?.intValue ?? heads
        let headDim = (obj["head_dim"] as? NSNumber)?.intValue ?? (heads > 0 ? hidden / heads : 0)
        let n = try int("num_hidden_layers")
        guard n <= Self.maxLayers else {
            throw ModelError.invalidConfig(source: source, reason: "num_hidden_layers \(n) is more than \(Self.maxLayers)")
        }
        let inter = try int("intermediate_size")
        var layers = Array(repeating: LayerShape(numHeads: heads, numKVHeads: kv, intermediateSize: inter), count: max(n, 0))
        if let per = obj[Self.layerWidthsKey] {
            // Only an array can be re-serialised: JSONSerialization.data traps (fatalError) on a bare number/string.
            guard per is [Any], JSONSerialization.isValidJSONObject(per),
                  let raw = try? JSONSerialization.data(withJSONObject: per),
                  let decoded = try? JSONDecoder().decode([LayerShape].self, from: raw), decoded.count == n else {
                throw ModelError.invalidConfig(source: source,
                                               reason: "\"\(Self.layerWidthsKey)\" must list \(n) layer shapes")
            }
            layers = decoded
        }
        func firstInt(_ k: String) -> Int? {
            if let v = obj[k] as? NSNumber { return v.intValue }
            if let a = obj[k] as? [NSNumber] { return a.first?.intValue }
            return nil
        }
        // SmolLM3 (transformers' SmolLM3Config): layer i rotates q and k unless no_rope_layers[i] is 0 (default: every
        // no_rope_layer_interval-th layer, 4, goes without); with use_sliding_window, the layers layer_types marks
        // sliding_attention (default: the NoPE layers) use the window.
        var ropeLayers: [Bool] = []
        if modelType == "smollm3" {
            func bad(_ m: String) -> ModelError { .invalidConfig(source: source, reason: m) }
            if let list = obj["no_rope_layers"], !(list is NSNull) {
                guard let a = list as? [NSNumber], a.count == n else { throw bad("no_rope_layers must list \(n) integers") }
                ropeLayers = a.map { $0.intValue != 0 }
            } else {
                let interval = (obj["no_rope_layer_interval"] as? NSNumber)?.intValue ?? 4
                guard interval > 0 else { throw bad("no_rope_layer_interval \(interval) must be positive") }
                ropeLayers = (0..<n).map { ($0 + 1) % interval != 0 }
            }
            let useWindow = (obj["use_sliding_window"] as? Bool) ?? false
            var window: Int?
            if let v = obj["sliding_window"], !(v is NSNull) {
                guard let w = v as? NSNumber, !Self.isJSONBool(v) else { throw bad("sliding_window must be an integer or null") }
                window = w.intValue
            }
            let types: [String]
            if let t = obj["layer_types"], !(t is NSNull) {
                guard let a = t as? [String], a.count == n, a.allSatisfy({ ["full_attention", "sliding_attention"].contains($0) })
                else { throw bad("layer_types must list \(n) of full_attention / sliding_attention") }
                types = a
            } else {
                types = ropeLayers.map { useWindow && window != nil && !$0 ? "sliding_attention" : "full_attention" }
            }
            if useWindow, let window {
                slidingWindow = window
                windowedLayers = types.map { $0 == "sliding_attention" }
            }
        }
        self.init(vocabSize: try int("vocab_size"), hiddenSize: hidden, headDim: headDim, layers: layers,
                  rmsNormEps: Float((obj["rms_norm_eps"] as? NSNumber)?.doubleValue ?? 1e-6),
                  ropeTheta: rope.theta ?? (obj["rope_theta"] as? NSNumber)?.doubleValue ?? 10000,
                  maxPositionEmbeddings: (obj["max_position_embeddings"] as? NSNumber)?.intValue ?? 2048,
                  tieWordEmbeddings: (obj["tie_word_embeddings"] as? Bool) ?? false,
                  bosTokenId: firstInt("bos_token_id"), eosTokenId: firstInt("eos_token_id"), modelType: modelType,
                  slidingWindow: slidingWindow, windowedLayers: windowedLayers, ropeLayers: ropeLayers)
        ropeScaling = rope.scaling
        padTokenId = firstInt("pad_token_id")
        (qkvBias, oBias, mlpBias) = biases
        try validate(source: source)
    }

    /// The transformers class of each family this model computes.


    /// A `config.json` that `transformers` loads as `LlamaForCausalLM`. Uniform models get plain Llama keys;
    /// heterogeneous ones also carry `layer_widths` (the plain keys then hold the widest layer, which stock
    /// `transformers` cannot load; llmprune can).
    public func configJSON(extra: [String: Any] = [:]) throws -> Data {
        var obj = try configObject()
        // The Float's shortest decimal (1e-05, not 9.999999747378752e-06): the value the source config wrote.
        obj["rms_norm_eps"] = Double("\(rmsNormEps)") ?? Double(rmsNormEps)
        if let p = padTokenId { obj["pad_token_id"] = p }
        for (k, v) in extra { obj[k] = v }
        return try JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys])
    }

    /// The text a prune plan's model fingerprint hashes (PrunePlan.swift, ModelIdentity): the config as it was first
    /// serialised — the Float epsilon as its exact Double, no pad id, which no computation reads — so plans written
    /// before the export gained those keys still match their models.
    public func fingerprintJSON() throws -> Data {
        try JSONSerialization.data(withJSONObject: try configObject(), options: [.prettyPrinted, .sortedKeys])
    }

    /// config.json's keys for this model (every key that changes the math), before the presentation-only ones.
    private func configObject() throws -> [String: Any] {
        let first = layers[0]
        var obj: [String: Any] = [
            "architectures": [Self.architectures[modelType] ?? "LlamaForCausalLM"], "model_type": modelType,
            "vocab_size": vocabSize, "hidden_size": hiddenSize, "head_dim": headDim,
            "num_hidden_layers": numLayers,
            "num_attention_heads": isUniform ? first.numHeads : layers.map(\.numHeads).max()!,
            "num_key_value_heads": isUniform ? first.numKVHeads : layers.map(\.numKVHeads).max()!,
            "intermediate_size": isUniform ? first.intermediateSize : layers.map(\.intermediateSize).max()!,
            "rms_norm_eps": Double(rmsNormEps), "rope_theta": ropeTheta,
            "max_position_embeddings": maxPositionEmbeddings, "tie_word_embeddings": tieWordEmbeddings,
            "hidden_act": "silu", "attention_bias": qkvBias, "mlp_bias": mlpBias, "torch_dtype": "float32",
            "use_cache": true,
        ]
        if modelType == "mistral" { obj["sliding_window"] = slidingWindow ?? NSNull() }
        if modelType == "smollm3" {
            obj["no_rope_layers"] = (0..<numLayers).map { usesRope(layer: $0) ? 1 : 0 }
            obj["use_sliding_window"] = slidingWindow != nil
            obj["sliding_window"] = slidingWindow ?? NSNull()
            obj["layer_types"] = (0..<numLayers).map { attentionWindow(layer: $0) != nil ? "sliding_attention" : "full_attention" }
        }
        if modelType == "qwen2" {
            // Qwen2 has q/k/v biases by architecture: no bias keys. The window as layer_types, explicitly.
            obj["attention_bias"] = nil
            obj["mlp_bias"] = nil
            obj["use_sliding_window"] = slidingWindow != nil
            obj["sliding_window"] = slidingWindow ?? NSNull()
            let windowed = (0..<numLayers).map { attentionWindow(layer: $0) != nil }
            obj["max_window_layers"] = windowed.firstIndex(of: true) ?? numLayers
            if slidingWindow != nil { obj["layer_types"] = windowed.map { $0 ? "sliding_attention" : "full_attention" } }
        }
        if let b = bosTokenId { obj["bos_token_id"] = b }
        if let e = eosTokenId { obj["eos_token_id"] = e }
        if let r = try ropeScaling.configJSONValue() { obj["rope_scaling"] = r }
        if !isUniform {
            let raw = try JSONEncoder().encode(layers)
            obj[Self.layerWidthsKey] = try JSONSerialization.jsonObject(with: raw)
        }
        return obj
    }
}
