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
    /// Low-memory stage: the block's layers left in the mapped checkpoint, widened one at a time (else nil).
    public var streamed: StreamedLayers?

    public init(config: LlamaConfig, layers: Range<Int>, holdsEmbedding: Bool, holdsHead: Bool, weights: LlamaWeights,
                tokenizer: BPETokenizer?, path: String, format: String, chatTemplate: String?, tensorNames: [String],
                streamed: StreamedLayers? = nil) {
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
        self.streamed = streamed
    }

    /// fp32 bytes of weights held by this stage.
    public var bytes: Int { Self.bytes(of: weights) }

    /// fp32 bytes of every array in `w` (placeholders count zero).
    public static func bytes(of w: LlamaWeights) -> Int {
        var n = w.embed.count + w.finalNorm.count + (w.lmHead?.count ?? 0)
        for l in w.layers {
            n += l.inputNorm.count + l.wqkv.count + l.wo.count + l.postNorm.count + l.wGateUp.count + l.wDown.count
                + l.biasCount
        }
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
        try checkNoOtherTensors(source, config: config, path: file)
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
        try checkNoOtherTensors(source, config: config, path: dir.path)
        return OpenedModel(config: config, source: source, path: dir.path, format: "safetensors", chatTemplate: nil) {
            let tokURL = dir.appendingPathComponent("tokenizer.json")
            if fm.fileExists(atPath: tokURL.path) { return try BPETokenizer(tokenizerJSON: tokURL) }
            if needTokenizer { throw ModelError.missingFile(path: tokURL.path, what: "tokenizer (tokenizer.json)") }
            return nil
        }
    }

    /// A checkpoint holds the tensors its config implies and nothing that would change the math unseen: a bias the
    /// config does not declare, or any other unknown tensor, is refused by name (for a GGUF: under its HF name; GGUF
    /// tensors with no HF counterpart, such as rope_freqs, are read elsewhere or not at all). Ignored, as transformers ignores
    /// them: the rotary `inv_freq` buffer older checkpoints saved (recomputed from the config), and an `lm_head` saved
    /// beside a tied embedding.
    static func checkNoOtherTensors(_ source: TensorSource, config: LlamaConfig, path: String) throws {
        let expected = Set(config.huggingFaceTensorShapes.map(\.name))
        for name in source.tensorNames.sorted() where !expected.contains(name) {
            if name.hasSuffix("rotary_emb.inv_freq") || (name == "lm_head.weight" && config.tieWordEmbeddings) { continue }
            let reason = name.hasSuffix(".bias")
                ? "tensor \(name) is a bias, but the config declares no such bias (model_type \(config.modelType), "
                    + "attention_bias \(config.oBias), mlp_bias \(config.mlpBias))"
                : "tensor \(name) is not part of a Llama model with this config"
            throw ModelError.invalidConfig(source: path, reason: reason)
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
    /// With `lowMemory`, the block's layers are not converted: they stay in the mapped checkpoint in their file dtype
    /// (`StageWeights.streamed`) and are widened to fp32 one layer at a time by the gradient pass; the first stage
    /// looks token embeddings up in the mapped file (only the rows it needs). Every tensor's shape is still checked
    /// here, from the headers.
    public static func loadStage(path: String, layers: Range<Int>, embedding: Bool, head: Bool,
                                 tokenizer needTokenizer: Bool = true, lowMemory: Bool = false) throws -> StageWeights {
        let m = try open(path: path, needTokenizer: needTokenizer)
        let c = m.config, src = m.source
        guard layers.lowerBound >= 0, layers.upperBound <= c.numLayers else {
            throw ModelError.invalidInput("stage layers \(layers) outside 0..<\(c.numLayers)")
        }
        let d = c.hiddenSize
        var names: [String] = []
        func load(_ name: String, _ shape: [Int]) throws -> [Float] {
            try checkShape(src, name, shape)
            names.append(name)
            return try src.floats(name)
        }
        let needEmbed = embedding || (head && c.tieWordEmbeddings)
        // Low memory: the first stage of an untied (or multi-stage) model reads embedding rows from the file.
        let embed = needEmbed && !(lowMemory && !(head && c.tieWordEmbeddings))
            ? try load("model.embed_tokens.weight", [c.vocabSize, d]) : []
        if needEmbed && embed.isEmpty { try checkShape(src, "model.embed_tokens.weight", [c.vocabSize, d]) }
        var stageLayers: [LayerWeights] = []
        for (i, s) in c.layers.enumerated() {
            guard layers.contains(i) else {
                stageLayers.append(.placeholder(s))
                continue
            }
            if lowMemory {
                for (name, shape) in c.huggingFaceLayerTensorShapes(i) { try checkShape(src, name, shape) }
                stageLayers.append(.placeholder(s))
            } else {
                stageLayers.append(try readLayer(i, config: c, source: src))
                names += c.huggingFaceLayerTensorShapes(i).map(\.name)
            }
        }
        let norm = head ? try load("model.norm.weight", [d]) : []
        let lmHead = head && !c.tieWordEmbeddings ? try load("lm_head.weight", [c.vocabSize, d]) : nil
        let weights = LlamaWeights(config: c, embed: embed, layers: stageLayers, finalNorm: norm, lmHead: lmHead)
        return StageWeights(config: c, layers: layers, holdsEmbedding: needEmbed, holdsHead: head, weights: weights,
                            tokenizer: try m.tokenizer(), path: m.path, format: m.format, chatTemplate: m.chatTemplate,
                            tensorNames: names,
                            streamed: lowMemory ? StreamedLayers(config: c, layers: layers, source: src) : nil)
    }

    static func checkShape(_ src: TensorSource, _ name: String, _ shape: [Int]) throws {
        guard let s = src.shape(of: name) else { throw ModelError.missingTensor(source: src.sourceDescription, name: name) }
        guard s == shape else {
            throw ModelError.shapeMismatch(source: src.sourceDescription, name: name, expected: shape, got: s)
        }
    }

    /// Layer `i` in fp32, q|k|v and gate|up widened straight into their fused arrays (no concatenation copies).
    static func readLayer(_ i: Int, config c: LlamaConfig, source src: TensorSource) throws -> LayerWeights {
        let t = c.huggingFaceLayerTensorShapes(i)   // norm, q, k, v, o, post norm, gate, up, down
        for (name, shape) in t { try checkShape(src, name, shape) }
        func read(_ parts: ArraySlice<(name: String, shape: [Int])>) throws -> [Float] {
            let total = parts.reduce(0) { $0 + $1.shape.reduce(1, *) }
            return try [Float](unsafeUninitializedCapacity: total) { buf, initialized in
                initialized = 0
                var at = 0
                for (name, shape) in parts {
                    let n = shape.reduce(1, *)
                    try src.readFloats(name, into: UnsafeMutableBufferPointer(rebasing: buf[at..<(at + n)]))
                    at += n
                }
                initialized = total
            }
        }
        // The biases the config declares follow the nine weights, in the order q, k, v, o, gate, up, down.
        var at = 9
        func biases(_ declared: Bool, _ count: Int) throws -> [Float] {
            guard declared else { return [] }
            defer { at += count }
            return try read(t[at..<(at + count)])
        }
        return LayerWeights(shape: c.layers[i], inputNorm: try read(t[0...0]), wqkv: try read(t[1...3]),
                            wo: try read(t[4...4]), postNorm: try read(t[5...5]), wGateUp: try read(t[6...7]),
                            wDown: try read(t[8...8]), bqkv: try biases(c.qkvBias, 3), bo: try biases(c.oBias, 1),
                            bGateUp: try biases(c.mlpBias, 2), bDown: try biases(c.mlpBias, 1))
    }
}

extension ModelLoader {
    /// Bytes per parameter of the checkpoint's layer tensors (layer 0), from the headers: 2 for bf16/f16, 4 for f32,
    /// the block size ratio of a quantised GGUF type (e.g. 0.625 for Q4_1). The memory planner's file term.
    public static func layerBytesPerParameter(path: String) throws -> Double {
        let m = try open(path: path, needTokenizer: false)
        let tensors = m.config.huggingFaceLayerTensorShapes(0)
        var bytes = 0.0, count = 0.0
        for (name, shape) in tensors {
            let n = Double(shape.reduce(1, *))
            if let b = m.source.storageBytesPerElement(of: name) {
                bytes += b * n
            } else if let g = m.source as? GGUFLlamaSource, let info = g.ggufInfo(of: name) {
                bytes += Double(info.byteCount)
            } else {
                bytes += 4 * n
            }
            count += n
        }
        return count > 0 ? bytes / count : 4
    }

    /// The model's format ("gguf" or "safetensors") and how many elements of the tensors its config implies each
    /// storage type holds ("F32", "BF16", "Q4_1", …), from the headers alone: what an export's default dtype is chosen by.
    public static func storedElements(path: String) throws -> (format: String, byType: [String: Int]) {
        let m = try open(path: path, needTokenizer: false)
        var byType: [String: Int] = [:]
        for (name, shape) in m.config.huggingFaceTensorShapes {
            byType[m.source.storageType(of: name) ?? "?", default: 0] += shape.reduce(1, *)
        }
        return (m.format, byType)
    }
}

extension ModelLoader {
    /// The tokenizer of the model at `path`, reading no weight (a 7B checkpoint need not fit in memory to tokenize).
    public static func tokenizer(path: String) throws -> BPETokenizer {
        let m = try open(path: path, needTokenizer: true)
        guard let t = try m.tokenizer() else { throw ModelError.missingFile(path: path, what: "tokenizer") }
        return t
    }
}

extension StageWeights {
    /// The whole model as one stage (one process: every layer, the embedding and the head).
    public static func whole(_ w: LlamaWeights, path: String = "", format: String = "") -> StageWeights {
        StageWeights(config: w.config, layers: 0..<w.config.numLayers, holdsEmbedding: true, holdsHead: true, weights: w,
                     tokenizer: nil, path: path, format: format, chatTemplate: nil, tensorNames: [])
    }
}
