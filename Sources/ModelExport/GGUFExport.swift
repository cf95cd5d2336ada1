// `llmprune export`: a model (GGUF or Hugging Face directory, pruned or not) as one GGUF file that llama.cpp runs,
// streamed tensor by tensor (each 2-D tensor read and converted a block of rows at a time: memory stays at a few
// chunks, whatever the model's size). What is written follows llama.cpp's own converter (convert_hf_to_gguf.py with
// conversion/llama.py, deci.py, qwen.py, base.py, of the llama.cpp vendored by llama-cpp-python 0.3.36):
// - architecture: uniform Llama / Mistral → `llama`; per-layer widths → `deci` (llama.cpp's only graph that reads the
//   head counts and feed-forward length per layer, src/models/deci.cpp); Qwen2 → `qwen2` when its query width is the
//   hidden size (llama.cpp's qwen2 loader assumes it), else `llama` / `deci` with the q/k/v biases (both load them);
//   SmolLM3 → `smollm3` (uniform, NoPE on every 4th layer). GGUFArchitecture says what is refused and why.
// - q/k rows (and q/k biases) permuted as `LlamaModel.permute` for every architecture with llama.cpp's "normal" RoPE
//   (llama, deci, smollm3), per layer with that layer's head counts; qwen2 (NEOX RoPE) unpermuted.
// - keys: block/context/embedding lengths, head counts (per-layer int32 arrays for deci), key/value length and
//   rope.dimension_count = head_dim always (llama.cpp otherwise derives them from hidden / heads of layer 0), rope
//   base, RMS epsilon, vocab size, file type; RoPE scaling as the converter writes it (linear and yarn as keys, llama3
//   as the `rope_freqs` tensor of generate_extra_tensors).
// - tensor types: 1-D tensors (norms, biases, rope_freqs) F32; 2-D weights in the chosen type, Q8_0 falling back to
//   F16 for rows not a multiple of 32 values (as the converter's QuantError fallback).
// - tokenizer: a GGUF source's `tokenizer.*` keys copied as they are; a tokenizer.json converted (GGUFVocabulary).
import Foundation
import Formats
import LlamaModel
import Support
import Tokenizer

/// The file type of the export (`--type`).
public enum GGUFOutputType: String, CaseIterable, Sendable {
    case f32, f16, bf16, q8_0

    public var ggmlType: GGMLType {
        switch self {
        case .f32: .f32
        case .f16: .f16
        case .bf16: .bf16
        case .q8_0: .q8_0
        }
    }

    /// `general.file_type` (llama_ftype: ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7, MOSTLY_BF16 32).
    public var fileType: UInt32 {
        switch self {
        case .f32: 0
        case .f16: 1
        case .bf16: 32
        case .q8_0: 7
        }
    }
}

public enum GGUFExportError: Error, CustomStringConvertible, Equatable {
    /// The model has a feature no llama.cpp architecture computes.
    case notRepresentable(path: String, reason: String)
    /// The output file exists and `--force` was not given.
    case outputExists(path: String)
    /// Something about the input that stops the export (no tokenizer, a non-finite weight, …).
    case invalidInput(path: String, reason: String)

    public var description: String {
        switch self {
        case .notRepresentable(let p, let r): return oneLineMessage("\(p): llama.cpp cannot represent \(r)")
        case .outputExists(let p): return oneLineMessage("\(p): output file exists; pass --force to replace it")
        case .invalidInput(let p, let r): return oneLineMessage("\(p): \(r)")
        }
    }
}

/// One tensor of the file: its llama.cpp name and shape (ggml order), type, and where its values come from.
public struct GGUFExportTensor: Sendable {
    public enum Values: Sendable {
        /// A Hugging Face tensor; `permuteHeads`: permute its rows (elements, for a bias) for that many heads.
        case checkpoint(name: String, permuteHeads: Int?)
        /// Values computed here (rope_freqs).
        case computed([Float])
    }
    public var name: String
    public var shape: [Int]
    public var type: GGMLType
    public var values: Values
}

/// Everything decided before a byte is written: architecture, metadata, tensors.
public struct GGUFExportLayout {
    public var architecture: String
    public var metadata: [(key: String, value: GGUFMetadataValue)]
    public var tensors: [GGUFExportTensor]
    /// 2-D weights written as F16 because their rows are not whole Q8_0 blocks.
    public var fallbacks: [String]

    public var byteCount: Int { tensors.reduce(0) { $0 + GGMLEncode.byteCount(elements: $1.shape.reduce(1, *), type: $1.type) } }
}

public struct GGUFExportSummary: Sendable, Encodable {
    public var path: String
    public var architecture: String
    public var type: String
    public var tensors: Int
    public var bytes: Int
    public var parameters: Int
    public var fallbacksToF16: [String]
}

public enum GGUFExport {
    /// Writes `checkpoint` as a GGUF at `out` (a temporary file renamed into place; nothing left on failure), with
    /// `layout` when the caller already made it (for `type`). `progress` is called with the bytes of each chunk written.
    @discardableResult
    public static func write(_ checkpoint: Checkpoint, to out: URL, type: GGUFOutputType, force: Bool,
                             layout planned: GGUFExportLayout? = nil,
                             progress: ((Int) -> Void)? = nil) throws -> GGUFExportSummary {
        let target = out.standardizedFileURL
        try checkTarget(target, force: force)
        let layout = try planned ?? self.layout(checkpoint, type: type)
        let writer = try GGUFStreamWriter(target: target, metadata: layout.metadata,
                                          tensors: layout.tensors.map { .init(name: $0.name, shape: $0.shape, type: $0.type) })
        do {
            for t in layout.tensors { try write(t, from: checkpoint, into: writer, progress: progress) }
            try writer.finish()
        } catch {
            writer.abandon()
            throw error
        }
        return GGUFExportSummary(path: target.path, architecture: layout.architecture, type: type.rawValue,
                                 tensors: layout.tensors.count, bytes: writer.bytesWritten,
                                 parameters: checkpoint.config.parameterCount, fallbacksToF16: layout.fallbacks)
    }

    /// Refuses an existing output without `force`, or a missing parent directory, before any work.
    public static func checkTarget(_ target: URL, force: Bool) throws {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: target.path, isDirectory: &isDir) {
            if isDir.boolValue { throw GGUFExportError.invalidInput(path: target.path, reason: "is a directory (--out names the .gguf file)") }
            if !force { throw GGUFExportError.outputExists(path: target.path) }
        }
        let parent = target.deletingLastPathComponent()
        guard fm.fileExists(atPath: parent.path, isDirectory: &isDir), isDir.boolValue else {
            throw GGUFExportError.invalidInput(path: parent.path, reason: "parent directory of the output does not exist")
        }
    }

    // MARK: - layout

    /// The architecture, keys and tensors of the export (throws for a model llama.cpp cannot represent).
    public static func layout(_ checkpoint: Checkpoint, type: GGUFOutputType) throws -> GGUFExportLayout {
        let c = checkpoint.config
        let arch = try GGUFArchitecture.choose(c, path: checkpoint.path)
        var meta: [(key: String, value: GGUFMetadataValue)] = []
        func set(_ k: String, _ v: GGUFMetadataValue) { meta.append((k, v)) }
        func u32(_ x: Int) -> GGUFMetadataValue { .uint32(UInt32(x)) }
        let a = arch.name
        set("general.architecture", .string(a))
        set("general.name", .string(URL(fileURLWithPath: checkpoint.path).deletingPathExtension().lastPathComponent))
        set("general.file_type", .uint32(type.fileType))
        set("general.quantization_version", .uint32(2))
        set("\(a).block_count", u32(c.numLayers))
        set("\(a).context_length", u32(c.maxPositionEmbeddings))
        set("\(a).embedding_length", u32(c.hiddenSize))
        if arch == .deci {
            set("\(a).feed_forward_length", .int32s(c.layers.map { Int32($0.intermediateSize) }))
            set("\(a).attention.head_count", .int32s(c.layers.map { Int32($0.numHeads) }))
            set("\(a).attention.head_count_kv", .int32s(c.layers.map { Int32($0.numKVHeads) }))
        } else {
            set("\(a).feed_forward_length", u32(c.layers[0].intermediateSize))
            set("\(a).attention.head_count", u32(c.layers[0].numHeads))
            set("\(a).attention.head_count_kv", u32(c.layers[0].numKVHeads))
        }
        set("\(a).rope.freq_base", .float32(Float(c.ropeTheta)))
        set("\(a).attention.layer_norm_rms_epsilon", .float32(c.rmsNormEps))
        set("\(a).attention.key_length", u32(c.headDim))
        set("\(a).attention.value_length", u32(c.headDim))
        set("\(a).vocab_size", u32(c.vocabSize))
        set("\(a).rope.dimension_count", u32(c.headDim))
        let rope = c.ropeScaling
        switch rope.kind {
        case .linear:
            set("\(a).rope.scaling.type", .string("linear"))
            set("\(a).rope.scaling.factor", .float32(Float(rope.factor!)))
        case .yarn:
            let factor = rope.factor ?? Double(c.maxPositionEmbeddings) / Double(rope.originalMaxPositionEmbeddings!)
            set("\(a).rope.scaling.type", .string("yarn"))
            set("\(a).rope.scaling.factor", .float32(Float(factor)))
            set("\(a).rope.scaling.original_context_length", u32(rope.originalMaxPositionEmbeddings!))
            // beta_fast / beta_slow are the defaults (others are refused): these architectures do not read the keys
        case .default, .llama3, .dynamic:
            break    // llama3: the rope_freqs tensor; dynamic: refused by GGUFArchitecture
        }
        meta += try tokenizerMetadata(checkpoint)

        var tensors: [GGUFExportTensor] = []
        var fallbacks: [String] = []
        /// A Hugging Face tensor under its llama.cpp name; 2-D in `type` (F16 when not whole Q8_0 blocks), 1-D in F32.
        func add(_ hf: String, permute heads: Int? = nil) throws {
            guard let shape = checkpoint.source.shape(of: hf), let name = GGUFLlamaSource.ggufName(forHF: hf) else {
                throw GGUFExportError.invalidInput(path: checkpoint.path, reason: "no tensor \(hf)")
            }
            var t = type.ggmlType
            if shape.count == 1 { t = .f32 }
            if t == .q8_0 && shape.last! % 32 != 0 { t = .f16; fallbacks.append(name) }
            tensors.append(GGUFExportTensor(name: name, shape: Array(shape.reversed()), type: t,
                                            values: .checkpoint(name: hf, permuteHeads: heads)))
        }
        try add("model.embed_tokens.weight")
        if let divisors = try GGUFArchitecture.ropeFrequencyFactors(c) {
            tensors.append(GGUFExportTensor(name: "rope_freqs.weight", shape: [divisors.count], type: .f32,
                                            values: .computed(divisors)))
        }
        for (i, l) in c.layers.enumerated() {
            for (hf, _) in c.huggingFaceLayerTensorShapes(i) {
                var heads: Int? = nil
                if arch.permutesQK && hf.contains(".self_attn.q_proj.") { heads = l.numHeads }
                if arch.permutesQK && hf.contains(".self_attn.k_proj.") { heads = l.numKVHeads }
                try add(hf, permute: heads)
            }
        }
        try add("model.norm.weight")
        if !c.tieWordEmbeddings { try add("lm_head.weight") }
        return GGUFExportLayout(architecture: a, metadata: meta, tensors: tensors, fallbacks: fallbacks)
    }

    // MARK: - tokenizer keys

    static func tokenizerMetadata(_ checkpoint: Checkpoint) throws -> [(key: String, value: GGUFMetadataValue)] {
        if let g = checkpoint.gguf {
            // The source's own keys, types and all: llama.cpp tokenizes the export exactly as it tokenizes the source.
            var out: [(key: String, value: GGUFMetadataValue)] = []
            for k in g.metadataKeys where k.hasPrefix("tokenizer.") {
                guard let v = g.metadataValue(forKey: k) else {
                    throw GGUFExportError.invalidInput(path: g.path, reason: "metadata \(k) cannot be copied (an array of arrays)")
                }
                out.append((k, v))
            }
            guard out.contains(where: { $0.key == "tokenizer.ggml.tokens" }) else {
                throw GGUFExportError.invalidInput(path: g.path, reason: "no tokenizer.ggml.tokens: llama.cpp needs the vocabulary in the GGUF")
            }
            return out
        }
        let dir = URL(fileURLWithPath: checkpoint.path)
        let tokURL = dir.appendingPathComponent("tokenizer.json")
        guard FileManager.default.fileExists(atPath: tokURL.path), let tok = try checkpoint.tokenizer() else {
            throw GGUFExportError.invalidInput(path: tokURL.path, reason: "no tokenizer.json: llama.cpp needs the vocabulary in the GGUF")
        }
        let c = checkpoint.config
        let v: GGUFVocabulary
        do { v = try tok.ggufVocabulary(vocabSize: c.vocabSize) } catch let e as TokenizerError {
            throw GGUFExportError.notRepresentable(path: tokURL.path, reason: "the tokenizer: \(e.description)")
        }
        var out: [(key: String, value: GGUFMetadataValue)] = []
        out.append(("tokenizer.ggml.model", .string(v.model)))
        if let p = v.pre { out.append(("tokenizer.ggml.pre", .string(p))) }
        out.append(("tokenizer.ggml.tokens", .strings(v.tokens)))
        if let s = v.scores { out.append(("tokenizer.ggml.scores", .float32s(s))) }
        out.append(("tokenizer.ggml.token_type", .int32s(v.tokenTypes.map(\.rawValue))))
        if let m = v.merges { out.append(("tokenizer.ggml.merges", .strings(m))) }
        let config = tokenizerConfig(dir)
        func named(_ key: String) -> Int? {
            guard let x = config[key] else { return nil }
            let s = (x as? String) ?? ((x as? [String: Any])?["content"] as? String)
            return s.flatMap { tok.id(of: $0) }
        }
        let ids: [(String, Int?)] = [("bos_token_id", v.bosId ?? c.bosTokenId), ("eos_token_id", v.eosId ?? c.eosTokenId),
                                     ("unknown_token_id", v.unkId ?? named("unk_token")),
                                     ("padding_token_id", v.padId ?? named("pad_token") ?? c.padTokenId)]
        for (k, id) in ids {
            if let id, id >= 0, id < c.vocabSize { out.append(("tokenizer.ggml." + k, .uint32(UInt32(id)))) }
        }
        out.append(("tokenizer.ggml.add_bos_token", .bool(v.addBOS)))
        out.append(("tokenizer.ggml.add_eos_token", .bool(v.addEOS)))
        if let p = v.addSpacePrefix { out.append(("tokenizer.ggml.add_space_prefix", .bool(p))) }
        for (name, template) in chatTemplates(dir, config: config) {
            out.append((name.map { "tokenizer.chat_template.\($0)" } ?? "tokenizer.chat_template", .string(template)))
        }
        return out
    }

    static func tokenizerConfig(_ dir: URL) -> [String: Any] {
        guard let d = FileManager.default.contents(atPath: dir.appendingPathComponent("tokenizer_config.json").path),
              let o = try? JSONSerialization.jsonObject(with: d) as? [String: Any] else { return [:] }
        return o
    }

    /// The chat template(s) as gguf-py's SpecialVocab reads them: tokenizer_config.json `chat_template` (a string, or
    /// a list of {name, template}: "default" unnamed, the others by name), else chat_template.jinja.
    static func chatTemplates(_ dir: URL, config: [String: Any]) -> [(String?, String)] {
        if let s = config["chat_template"] as? String { return [(nil, s)] }
        if let list = config["chat_template"] as? [[String: Any]] {
            return list.compactMap { e in
                guard let n = e["name"] as? String, let t = e["template"] as? String else { return nil }
                return (n == "default" ? nil : n, t)
            }
        }
        if let d = FileManager.default.contents(atPath: dir.appendingPathComponent("chat_template.jinja").path) {
            return [(nil, String(decoding: d, as: UTF8.self))]
        }
        return []
    }

    // MARK: - tensor data

    /// Bytes of output converted at a time.
    static let chunkElements = 1 << 22

    static func write(_ t: GGUFExportTensor, from checkpoint: Checkpoint, into writer: GGUFStreamWriter,
                      progress: ((Int) -> Void)?) throws {
        let total = GGMLEncode.byteCount(elements: t.shape.reduce(1, *), type: t.type)
        let path = checkpoint.path
        func encode(_ v: UnsafeBufferPointer<Float>, name: String) throws {
            for x in v where !x.isFinite {
                throw GGUFExportError.invalidInput(path: path, reason: "tensor \(name) holds \(x); refusing to write it")
            }
            var out = Data()
            out.reserveCapacity(GGMLEncode.byteCount(elements: v.count, type: t.type))
            try GGMLEncode.encode(v, as: t.type, into: &out)
            try writer.write(part: out, of: total)
            progress?(out.count)
        }
        switch t.values {
        case .computed(let values):
            try values.withUnsafeBufferPointer { try encode($0, name: t.name) }
        case .checkpoint(let name, let heads):
            let src = checkpoint.source
            defer { src.releasePages(of: name) }       // done with it: its file pages leave the resident set
            if t.shape.count == 1 {
                var v = try src.floats(name)
                if let heads { v = try permuted(v, heads: heads, rows: v.count, cols: 1, name: name, path: path) }
                try v.withUnsafeBufferPointer { try encode($0, name: name) }
                return
            }
            let cols = t.shape[0], rows = t.shape[1]
            var order: ((Int) -> Int)? = nil
            if let heads {
                guard heads > 0, rows % (2 * heads) == 0 else {
                    throw GGUFExportError.invalidInput(path: path, reason: "tensor \(name): \(rows) rows are not \(heads) heads of even size")
                }
                order = GGUFLlamaSource.permuteSourceIndex(heads: heads, rows: rows)
            }
            let step = max(1, chunkElements / max(cols, 1))
            var buffer = [Float](repeating: 0, count: min(rows, step) * cols)
            var r0 = 0
            while r0 < rows {
                let r1 = min(rows, r0 + step)
                let wanted = (r0..<r1).map { order?($0) ?? $0 }
                try buffer.withUnsafeMutableBufferPointer { b in
                    try src.readRows(name, rows: wanted, into: b.baseAddress!)
                    try encode(UnsafeBufferPointer(rebasing: b[0..<((r1 - r0) * cols)]), name: name)
                }
                r0 = r1
            }
        }
    }

    /// `v` ([rows × cols]) with its rows in llama.cpp's order for `heads` heads.
    static func permuted(_ v: [Float], heads: Int, rows: Int, cols: Int, name: String, path: String) throws -> [Float] {
        guard heads > 0, rows % (2 * heads) == 0 else {
            throw GGUFExportError.invalidInput(path: path, reason: "tensor \(name): \(rows) rows are not \(heads) heads of even size")
        }
        let order = GGUFLlamaSource.permuteSourceIndex(heads: heads, rows: rows)
        var out = [Float](repeating: 0, count: v.count)
        for r in 0..<rows {
            let s = order(r)
            for j in 0..<cols { out[r * cols + j] = v[s * cols + j] }
        }
        return out
    }
}
