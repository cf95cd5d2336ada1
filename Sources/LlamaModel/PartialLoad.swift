// Loading one pipeline stage: the config, the tokenizer, and only the tensors a contiguous block of layers needs
// (plus the token embedding on the first stage, the final norm and LM head on the last). Formats map the file
// and dequantize per tensor on demand, so the tensors of other stages are never read or converted.
import Foundation
import Formats
import Tokenizer

/// The weights one pipeline stage holds. `weights` is a full-depth view for the runner and the gradient pass
/// (which index layers globally): layers outside `layers` are empty placeholders that keep only their shape,
/// `embed` is empty unless `holdsEmbedding`, `finalNorm` empty unless `holdsHead`.
public struct StageWeights {
    public var config: LlamaConfig
    /// The block of layers this stage owns.
    public var layers: Range<Int>
    /// The token embedding is loaded (first stage: input; last stage of a tied model: LM head).
    public var holdsEmbedding: Bool
    /// The final norm and the LM head (untied `lm_head`, or the tied embedding) are loaded (last stage).
    public var holdsHead: Bool
    public var weights: LlamaWeights
    public var tokenizer: BPETokenizer?
    /// As `LoadedModel.path` / `.format` would be for a full load of the same path.
    public var path: String
    public var format: String
    public var chatTemplate: String?
    /// Hugging Face names of the tensors that were read.
    public var tensorNames: [String]

    public init(config: LlamaConfig, layers: Range<Int>, holdsEmbedding: Bool, holdsHead: Bool, weights: LlamaWeights,
                tokenizer: BPETokenizer?, path: String, format: String, chatTemplate: String?, tensorNames: [String]) {
        self.config = config
        self.layers = layers
        self.holdsEmbedding = holdsEmbedding
        self.holdsHead = holdsHead
        self.weights = weights
        self.tokenizer = tokenizer
        self.path = path
        self.format = format
        self.chatTemplate = chatTemplate
        self.tensorNames = tensorNames
    }

    /// fp32 bytes of weights held by this stage.
    public var bytes: Int { Self.bytes(of: weights) }

    /// fp32 bytes of every array in `w` (placeholders count zero).
    public static func bytes(of w: LlamaWeights) -> Int {
        var n = w.embed.count + w.finalNorm.count + (w.lmHead?.count ?? 0)
        for l in w.layers { n += l.inputNorm.count + l.wqkv.count + l.wo.count + l.postNorm.count + l.wGateUp.count + l.wDown.count }
        return 4 * n
    }

    /// A stage view of full weights: the same arrays for `layers` (and the embedding / final norm and head when
    /// asked), shape-only placeholders for everything else.
    public static func view(of w: LlamaWeights, layers: Range<Int>, embedding: Bool, head: Bool) -> LlamaWeights {
        let kept = w.layers.enumerated().map { i, l in
            layers.contains(i) ? l : .placeholder(l.shape)
        }
        return LlamaWeights(config: w.config, embed: embedding ? w.embed : [], layers: kept,
                            finalNorm: head ? w.finalNorm : [], lmHead: head ? w.lmHead : nil)
    }

    /// The stage as a `LoadedModel` (for code that only reads the config, tokenizer, path or format).
    public var loadedModel: LoadedModel {
        LoadedModel(weights: weights, tokenizer: tokenizer, path: path, format: format, chatTemplate: chatTemplate)
    }
}

extension ModelLoader {
    /// An opened checkpoint: config and tensor source, nothing dequantized yet.
    struct OpenedModel {
        var config: LlamaConfig
        var source: TensorSource
        var path: String
        var format: String
        var chatTemplate: String?
        var tokenizer: () throws -> BPETokenizer?
    }

    /// Opens `path` as `load(path:)` would (a .gguf file, or a directory with config.json or a single .gguf).
    static func open(path: String, needTokenizer: Bool) throws -> OpenedModel {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDir) else {
            throw ModelError.missingFile(path: path, what: "model (no such file or directory)")
        }
        var file = path
        if isDir.boolValue {
            let dir = URL(fileURLWithPath: path)
            if fm.fileExists(atPath: dir.appendingPathComponent("config.json").path) {
                return try openHuggingFace(dir: dir, needTokenizer: needTokenizer)
            }
            let ggufs = ((try? fm.contentsOfDirectory(atPath: path)) ?? []).filter { $0.hasSuffix(".gguf") }.sorted()
            guard ggufs.count == 1 else {
                throw ModelError.missingFile(path: path, what: ggufs.isEmpty
                    ? "config.json (not a Hugging Face model directory, and no .gguf file in it)"
                    : "config.json (and \(ggufs.count) .gguf files: name one)")
            }
            file = dir.appendingPathComponent(ggufs[0]).path
        }
        let gguf = try GGUFFile(path: file)
        let config = try ggufConfig(gguf)
        let source = try GGUFLlamaSource(gguf)
        return OpenedModel(config: config, source: source, path: file, format: "gguf",
                           chatTemplate: gguf.metadata["tokenizer.chat_template"]?.string) {
            if gguf.metadata["tokenizer.ggml.tokens"] != nil { return try ggufTokenizer(gguf) }
            if needTokenizer {
                throw ModelError.missingFile(path: file, what: "tokenizer (no tokenizer.ggml.tokens in the GGUF metadata)")
            }
            return nil
        }
    }

    static func openHuggingFace(dir: URL, needTokenizer: Bool) throws -> OpenedModel {
        let fm = FileManager.default
        let configURL = dir.appendingPathComponent("config.json")
        guard let data = fm.contents(atPath: configURL.path) else {
            throw ModelError.missingFile(path: configURL.path, what: "readable config.json")
        }
        let config = try LlamaConfig(configJSON: data, source: configURL.path)
        let single = dir.appendingPathComponent("model.safetensors")
        let index = dir.appendingPathComponent("model.safetensors.index.json")
        let source: TensorSource
        if fm.fileExists(atPath: single.path) {
            source = try SafetensorsFile(path: single.path)
        } else if fm.fileExists(atPath: index.path) {
            source = try ShardedSafetensors(indexPath: index.path)
        } else {
            throw ModelError.missingFile(path: dir.path, what: "model.safetensors or model.safetensors.index.json")
        }
        return OpenedModel(config: config, source: source, path: dir.path, format: "safetensors", chatTemplate: nil) {
            let tokURL = dir.appendingPathComponent("tokenizer.json")
            if fm.fileExists(atPath: tokURL.path) { return try BPETokenizer(tokenizerJSON: tokURL) }
            if needTokenizer { throw ModelError.missingFile(path: tokURL.path, what: "tokenizer (tokenizer.json)") }
            return nil
        }
    }

    /// The config of the model at `path`, reading metadata only (no tensor is dequantized).
    /// What a checkpoint is, without reading any weight: its config, resolved path and format (every tensor the config
    /// implies is checked for presence and shape in the file's header).
    public static func describe(path: String) throws -> (config: LlamaConfig, path: String, format: String) {
        let m = try open(path: path, needTokenizer: false)
        for (name, shape) in m.config.huggingFaceTensorShapes {     // headers only: every tensor there, right shape
            guard let s = m.source.shape(of: name) else { throw ModelError.missingTensor(source: m.source.sourceDescription, name: name) }
            guard s == shape else {
                throw ModelError.shapeMismatch(source: m.source.sourceDescription, name: name, expected: shape, got: s)
            }
        }
        return (m.config, m.path, m.format)
    }

    public static func config(path: String) throws -> LlamaConfig {
        try open(path: path, needTokenizer: false).config
    }

    /// Loads one pipeline stage: layers `layers`, the token embedding if `embedding`, the final norm and the LM
    /// head if `head` (for a tied model the head is the embedding, which is then loaded too).
    public static func loadStage(path: String, layers: Range<Int>, embedding: Bool, head: Bool,
                                 tokenizer needTokenizer: Bool = true) throws -> StageWeights {
        let m = try open(path: path, needTokenizer: needTokenizer)
        let c = m.config, src = m.source
        guard layers.lowerBound >= 0, layers.upperBound <= c.numLayers else {
            throw ModelError.invalidInput("stage layers \(layers) outside 0..<\(c.numLayers)")
        }
        let d = c.hiddenSize, hd = c.headDim
        var names: [String] = []
        func load(_ name: String, _ shape: [Int]) throws -> [Float] {
            guard let s = src.shape(of: name) else { throw ModelError.missingTensor(source: src.sourceDescription, name: name) }
            guard s == shape else {
                throw ModelError.shapeMismatch(source: src.sourceDescription, name: name, expected: shape, got: s)
            }
            names.append(name)
            return try src.floats(name)
        }
        let needEmbed = embedding || (head && c.tieWordEmbeddings)
        let embed = needEmbed ? try load("model.embed_tokens.weight", [c.vocabSize, d]) : []
        var stageLayers: [LayerWeights] = []
        for (i, s) in c.layers.enumerated() {
            guard layers.contains(i) else {
                stageLayers.append(.placeholder(s))
                continue
            }
            let p = "model.layers.\(i)."
            let nq = s.numHeads * hd, nkv = s.numKVHeads * hd, inter = s.intermediateSize
            let qkv = try load(p + "self_attn.q_proj.weight", [nq, d]) + load(p + "self_attn.k_proj.weight", [nkv, d])
                + load(p + "self_attn.v_proj.weight", [nkv, d])
            stageLayers.append(LayerWeights(
                shape: s, inputNorm: try load(p + "input_layernorm.weight", [d]), wqkv: qkv,
                wo: try load(p + "self_attn.o_proj.weight", [d, nq]),
                postNorm: try load(p + "post_attention_layernorm.weight", [d]),
                wGateUp: try load(p + "mlp.gate_proj.weight", [inter, d]) + load(p + "mlp.up_proj.weight", [inter, d]),
                wDown: try load(p + "mlp.down_proj.weight", [d, inter])))
        }
        let norm = head ? try load("model.norm.weight", [d]) : []
        let lmHead = head && !c.tieWordEmbeddings ? try load("lm_head.weight", [c.vocabSize, d]) : nil
        let weights = LlamaWeights(config: c, embed: embed, layers: stageLayers, finalNorm: norm, lmHead: lmHead)
        return StageWeights(config: c, layers: layers, holdsEmbedding: needEmbed, holdsHead: head, weights: weights,
                            tokenizer: try m.tokenizer(), path: m.path, format: m.format, chatTemplate: m.chatTemplate,
                            tensorNames: names)
    }
}
