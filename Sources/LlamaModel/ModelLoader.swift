// Loads a model from a Hugging Face directory (config.json + model.safetensors or sharded safetensors +
// tokenizer.json) or a GGUF file (metadata + llama.cpp tensors, q/k un-permuted by Formats), into the
// fused fp32 layout of `LlamaWeights`, with its tokenizer.
import Foundation
import Formats
import Tokenizer

public struct LoadedModel {
    public var weights: LlamaWeights
    public var tokenizer: BPETokenizer?
    public var path: String
    public var format: String            // "gguf" or "safetensors"
    public var chatTemplate: String? = nil   // GGUF `tokenizer.chat_template`, carried into exported tokenizer files
    public var config: LlamaConfig { weights.config }
}

public enum ModelLoader {
    /// Loads `path` (a .gguf file, or a directory with config.json or a single .gguf): every tensor, fused.
    public static func load(path: String, tokenizer needTokenizer: Bool = true) throws -> LoadedModel {
        let opened = try open(path: path, needTokenizer: needTokenizer)
        let weights = try assemble(config: opened.config, from: opened.source)
        return LoadedModel(weights: weights, tokenizer: try opened.tokenizer(), path: opened.path, format: opened.format,
                           chatTemplate: opened.chatTemplate)
    }

    /// LlamaConfig from `llama.*` (or `qwen2.*`, `deci.*`, `smollm3.*`) GGUF metadata (head counts and feed-forward
    /// length may be per-layer arrays). Biases: a qwen2 GGUF has q/k/v biases; a llama GGUF has the ones its layer-0 tensors show
    /// (q/k/v and o together, as attention_bias; gate/up/down together, as mlp_bias), and any other is refused.
    static func ggufConfig(_ f: GGUFFile) throws -> LlamaConfig {
        let m = f.metadata
        func fail(_ r: String) -> ModelError { .invalidConfig(source: f.path, reason: r) }
        let arch = m["general.architecture"]?.string ?? "?"
        guard ["llama", "qwen2", "deci", "smollm3"].contains(arch) else {
            throw fail("general.architecture \"\(arch)\" is not llama, qwen2, deci or smollm3")
        }
        func int(_ k: String) throws -> Int {
            guard let v = m["\(arch)." + k]?.int else { throw fail("missing \(arch).\(k)") }
            return v
        }
        func perLayer(_ k: String, _ n: Int) throws -> [Int] {
            if let a = m["\(arch)." + k]?.intArray {
                guard a.count == n else { throw fail("\(arch).\(k) has \(a.count) entries for \(n) layers") }
                return a
            }
            return Array(repeating: try int(k), count: n)
        }
        let n = try int("block_count"), d = try int("embedding_length")
        // Before any per-layer array is built: a corrupt count must not trap (negative) or allocate gigabytes.
        guard n > 0, n <= LlamaConfig.maxLayers else {
            throw fail("\(arch).block_count \(n) is not in 1...\(LlamaConfig.maxLayers)")
        }
        let heads = try perLayer("attention.head_count", n)
        let kv = m["\(arch).attention.head_count_kv"] == nil ? heads : try perLayer("attention.head_count_kv", n)
        let ff = try perLayer("feed_forward_length", n)
        guard let h0 = heads.first(where: { $0 > 0 }) else { throw fail("no attention heads") }
        let headDim = m["\(arch).attention.key_length"]?.int ?? (d / h0)
        let vocab = m["\(arch).vocab_size"]?.int ?? m["tokenizer.ggml.tokens"]?.stringArray?.count
            ?? f.tensor(named: "token_embd.weight")?.shape.last ?? 0
        let layers = (0..<n).map { LayerShape(numHeads: heads[$0], numKVHeads: kv[$0], intermediateSize: ff[$0]) }
        var cfg = LlamaConfig(
            vocabSize: vocab, hiddenSize: d, headDim: headDim, layers: layers,
            rmsNormEps: Float(m["\(arch).attention.layer_norm_rms_epsilon"]?.double ?? 1e-5),
            ropeTheta: m["\(arch).rope.freq_base"]?.double ?? 10000,
            maxPositionEmbeddings: m["\(arch).context_length"]?.int ?? 2048,
            tieWordEmbeddings: f.tensor(named: "output.weight") == nil,
            bosTokenId: m["tokenizer.ggml.bos_token_id"]?.int, eosTokenId: m["tokenizer.ggml.eos_token_id"]?.int,
            modelType: arch == "deci" ? "llama" : arch)
        cfg.padTokenId = m["tokenizer.ggml.padding_token_id"]?.int
        func has(_ t: String) -> Bool { f.tensor(named: "blk.0.\(t).bias") != nil }
        if arch == "qwen2" {
            cfg.qkvBias = true
        } else if arch == "deci" || arch == "llama", ["attn_q", "attn_k", "attn_v"].allSatisfy(has), !has("attn_output"),
                  !["ffn_gate", "ffn_up", "ffn_down"].contains(where: has) {
            // q/k/v biases alone: Qwen2's layout (llmprune writes a pruned Qwen2 as llama, or as deci, llama.cpp's only
            // architecture with per-layer head counts, when its query width is no longer the hidden size).
            cfg.modelType = "qwen2"
            cfg.qkvBias = true
        } else {
            let attention = ["attn_q", "attn_k", "attn_v", "attn_output"].map(has)
            let mlp = ["ffn_gate", "ffn_up", "ffn_down"].map(has)
            guard Set(attention).count == 1, Set(mlp).count == 1 else {
                throw fail("layer 0 has biases on only some of attn_q/k/v/output (\(attention)) or ffn_gate/up/down (\(mlp)); "
                           + "a llama model has all or none of each")
            }
            (cfg.qkvBias, cfg.oBias, cfg.mlpBias) = (attention[0], attention[0], mlp[0])
        }
        if arch == "smollm3" {
            // llama.cpp's smollm3 graph: every 4th layer without RoPE (n_no_rope_layer_step = 4, src/models/smollm3.cpp).
            cfg.ropeLayers = (0..<n).map { ($0 + 1) % 4 != 0 }
        }
        cfg.ropeScaling = try RopeScaling.parse(gguf: f, arch: arch, headDim: headDim, contextLength: cfg.maxPositionEmbeddings)
        try cfg.validate(source: f.path)
        return cfg
    }

    static func ggufTokenizer(_ f: GGUFFile) throws -> BPETokenizer {
        let m = f.metadata
        guard let tokens = m["tokenizer.ggml.tokens"]?.stringArray else {
            throw ModelError.invalidConfig(source: f.path, reason: "tokenizer.ggml.tokens is not a string array")
        }
        let model = m["tokenizer.ggml.model"]?.string ?? "?"
        if model == "llama" {
            guard let scores = m["tokenizer.ggml.scores"]?.floatArray else {
                throw ModelError.invalidConfig(source: f.path, reason: "tokenizer.ggml.scores is not a float array")
            }
            do {
                return try BPETokenizer(
                    sentencePieceVocabulary: tokens, scores: scores, tokenTypes: m["tokenizer.ggml.token_type"]?.intArray,
                    bosId: m["tokenizer.ggml.bos_token_id"]?.int, eosId: m["tokenizer.ggml.eos_token_id"]?.int,
                    unkId: m["tokenizer.ggml.unknown_token_id"]?.int, padId: m["tokenizer.ggml.padding_token_id"]?.int,
                    addBOS: m["tokenizer.ggml.add_bos_token"]?.bool ?? true,
                    addEOS: m["tokenizer.ggml.add_eos_token"]?.bool ?? false,
                    addSpacePrefix: m["tokenizer.ggml.add_space_prefix"]?.bool ?? true)
            } catch let e as TokenizerError { throw e.in(f.path) }
        }
        guard model == "gpt2" else {
            throw ModelError.invalidConfig(source: f.path, reason: "tokenizer.ggml.model \"\(model)\" is not supported (byte-level BPE \"gpt2\" or SentencePiece \"llama\")")
        }
        return try BPETokenizer(
            vocabulary: tokens, merges: m["tokenizer.ggml.merges"]?.stringArray ?? [],
            tokenTypes: m["tokenizer.ggml.token_type"]?.intArray,
            preTokenizer: m["tokenizer.ggml.pre"]?.string ?? "default",
            bosId: m["tokenizer.ggml.bos_token_id"]?.int, eosId: m["tokenizer.ggml.eos_token_id"]?.int,
            addBOS: m["tokenizer.ggml.add_bos_token"]?.bool ?? false,
            unkId: m["tokenizer.ggml.unknown_token_id"]?.int, padId: m["tokenizer.ggml.padding_token_id"]?.int)
    }

    // MARK: - from Hugging Face tensor names to the fused layout

    static func assemble(config c: LlamaConfig, from src: TensorSource) throws -> LlamaWeights {
        let d = c.hiddenSize
        func load(_ name: String, _ shape: [Int]) throws -> [Float] {
            try checkShape(src, name, shape)
            return try src.floats(name)
        }
        let embed = try load("model.embed_tokens.weight", [c.vocabSize, d])
        let layers = try c.layers.indices.map { try readLayer($0, config: c, source: src) }
        let norm = try load("model.norm.weight", [d])
        // A tied model uses the embedding as its head, as transformers does even if lm_head.weight is stored.
        let head = c.tieWordEmbeddings ? nil : try load("lm_head.weight", [c.vocabSize, d])
        return LlamaWeights(config: c, embed: embed, layers: layers, finalNorm: norm, lmHead: head)
    }
}
