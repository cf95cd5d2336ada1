// Writes a (pruned) model as a Hugging Face directory: config.json (per-layer widths when heterogeneous),
// model.safetensors (HF names, in the dtype asked for: OutputDType.swift; tied models omit lm_head),
// generation_config.json and the tokenizer files (ShardedExport.swift writes the weights as per-stage shards instead).
// Everything goes into a hidden staging directory beside the target, which is renamed into place
// only when complete; an existing target is replaced only with `force` (old one renamed aside, new one
// renamed in, old one deleted). On any failure `write` removes the staging directory.
import Foundation
import LlamaModel
import Formats
import Tokenizer
import Support

/// Where the exported model's tokenizer comes from.
public enum TokenizerSource {
    /// A Hugging Face model directory: its tokenizer.json, tokenizer_config.json and special_tokens_map.json are
    /// copied verbatim.
    case huggingFaceDirectory(URL)
    /// A GGUF file: the tokenizer lives in its metadata (loaded as `BPETokenizer`).
    case gguf(path: String, tokenizer: BPETokenizer?, chatTemplate: String?)
    /// No tokenizer files.
    case none

    /// The source matching a loaded model.
    public static func of(_ m: LoadedModel) -> TokenizerSource {
        m.format == "gguf" ? .gguf(path: m.path, tokenizer: m.tokenizer, chatTemplate: m.chatTemplate) : .huggingFaceDirectory(URL(fileURLWithPath: m.path))
    }
}

public enum HFExport {
    /// Files copied from a Hugging Face source directory when present.
    public static let tokenizerFiles = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]

    /// Writes the model directory atomically, its weights in `dtype`; `extraFiles` (name → contents, e.g. the prune
    /// plan) go in too.
    public static func write(weights: LlamaWeights, dtype: TensorDType = .f32, tokenizerSource: TokenizerSource,
                             to dir: URL, force: Bool, extraFiles: [String: Data] = [:]) throws {
        let staging = try createStaging(for: dir, tag: "\(getpid())", force: force)
        do {
            try writeModelFiles(config: weights.config, dtype: dtype, tokenizerSource: tokenizerSource, into: staging,
                                extraFiles: extraFiles)
            try writeWeights(weights, dtype: dtype, to: staging.appendingPathComponent("model.safetensors"))
            try commit(staging: staging, to: dir, force: force)
        } catch {
            try? FileManager.default.removeItem(at: staging)
            throw error
        }
    }

    /// model.safetensors of `w` in `dtype`: each tensor is encoded from its slice of the fused arrays as it is
    /// written, so the write holds one encoded tensor beside the model, never a second copy of it. Every tensor's
    /// size is checked against its shape before the file is begun.
    static func writeWeights(_ w: LlamaWeights, dtype: TensorDType, to url: URL) throws {
        let c = w.config
        var parts: [(array: [Float], range: Range<Int>)] = [(w.embed, 0..<w.embed.count)]
        for l in w.layers { parts += l.huggingFaceParts(hiddenSize: c.hiddenSize, headDim: c.headDim) }
        parts.append((w.finalNorm, 0..<w.finalNorm.count))
        if let h = w.lmHead { parts.append((h, 0..<h.count)) }
        let shapes = c.huggingFaceTensorShapes
        guard parts.count == shapes.count else {
            throw FormatError.malformed(path: url.path, reason: "\(parts.count) tensors for the config's \(shapes.count)"
                                        + " (an lm_head is there iff the embeddings are untied, biases iff declared)")
        }
        for (t, p) in zip(shapes, parts)
            where p.range.upperBound > p.array.count || p.range.count != t.shape.reduce(1, *) {
            throw FormatError.shapeMismatch(path: url.path, tensor: t.name, reason:
                "shape \(t.shape) does not hold \(max(0, min(p.range.upperBound, p.array.count) - p.range.lowerBound)) values")
        }
        let specs = shapes.map { SafetensorsWriter.Spec(name: $0.name, shape: $0.shape, dtype: dtype.safetensorsName) }
        try SafetensorsWriter.stream(specs, metadata: ["format": "pt"], to: url) { i in
            parts[i].array.withUnsafeBufferPointer {
                FloatEncoding.encode(UnsafeBufferPointer(rebasing: $0[parts[i].range]), as: dtype)
            }
        }
    }

    /// Everything of a model directory but the weights: config.json (its `torch_dtype` and `dtype` naming the weights'
    /// `dtype`: transformers 5 reads `dtype`, older versions `torch_dtype`), generation_config.json, the tokenizer
    /// files and `extraFiles` (name → contents). Shared by the single-file and the sharded export.
    public static func writeModelFiles(config c: LlamaConfig, dtype: TensorDType = .f32, tokenizerSource: TokenizerSource,
                                       into dir: URL, extraFiles: [String: Data] = [:]) throws {
        // A model its family's transformers class cannot load gets the trust_remote_code files (RemoteCode.swift).
        let remote = RemoteCode.isNeeded(for: c)
        var keys: [String: Any] = ["torch_dtype": dtype.torchName, "dtype": dtype.torchName]
        if remote { for (k, v) in RemoteCode.configKeys(for: c) { keys[k] = v } }
        try AtomicFile.write(try c.configJSON(extra: keys), to: dir.appendingPathComponent("config.json"))
        if remote {
            for (file, data) in RemoteCode.files { try AtomicFile.write(data, to: dir.appendingPathComponent(file)) }
        }
        var gen: [String: Any] = ["_from_model_config": true]
        if let b = c.bosTokenId { gen["bos_token_id"] = b }
        if let e = c.eosTokenId { gen["eos_token_id"] = e }
        if let p = c.padTokenId { gen["pad_token_id"] = p }
        try AtomicFile.write(try JSONSerialization.data(withJSONObject: gen, options: [.prettyPrinted, .sortedKeys]),
                             to: dir.appendingPathComponent("generation_config.json"))
        try writeTokenizerFiles(tokenizerSource, into: dir, modelMaxLength: c.maxPositionEmbeddings)
        for (file, data) in extraFiles { try data.write(to: dir.appendingPathComponent(file)) }
    }

    // MARK: - staging and commit

    /// The hidden sibling `.NAME.partial-TAG` an export of `target` is assembled in: same parent, hence the
    /// same file system, so `commit` is a rename. `tag` must be unique to the writer (pid, or the job id when
    /// several processes write into one staging directory).
    public static func stagingDirectory(for target: URL, tag: String) -> URL {
        let t = target.standardizedFileURL
        return t.deletingLastPathComponent().appendingPathComponent(".\(t.lastPathComponent).partial-\(tag)")
    }

    /// Creates `stagingDirectory(for:tag:)` empty (a leftover of the same tag is removed), refusing up front an
    /// existing `target` without `force` or a missing parent directory, before any expensive work.
    public static func createStaging(for target: URL, tag: String, force: Bool) throws -> URL {
        let fm = FileManager.default
        let t = target.standardizedFileURL
        let parent = t.deletingLastPathComponent()
        if !force && fm.fileExists(atPath: t.path) { throw ExportError.outputExists(path: t.path) }
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: parent.path, isDirectory: &isDir), isDir.boolValue else {
            throw ExportError.io(path: parent.path, reason: "parent directory of the output does not exist")
        }
        let staging = stagingDirectory(for: t, tag: tag)
        try? fm.removeItem(at: staging)
        try fm.createDirectory(at: staging, withIntermediateDirectories: false)
        return staging
    }

    /// Renames the complete `staging` directory to `target`. An existing target is refused without `force`;
    /// with it, the old one is renamed aside, the new one renamed in (the old one is put back if that fails),
    /// and the old one deleted. On failure `staging` is left for the caller to remove.
    public static func commit(staging: URL, to target: URL, force: Bool) throws {
        let fm = FileManager.default
        let t = target.standardizedFileURL
        guard fm.fileExists(atPath: t.path) else { return try rename(staging, t) }
        guard force else { throw ExportError.outputExists(path: t.path) }
        let old = t.deletingLastPathComponent().appendingPathComponent(".\(t.lastPathComponent).old-\(getpid())")
        try? fm.removeItem(at: old)
        try rename(t, old)
        do { try rename(staging, t) } catch {
            try? rename(old, t)     // put the old one back
            throw error
        }
        try? fm.removeItem(at: old)
    }

    static func rename(_ from: URL, _ to: URL) throws {
        guard Foundation.rename(from.path, to.path) == 0 else {
            throw ExportError.io(path: to.path, reason: "cannot rename \(from.lastPathComponent) into place: \(String(cString: strerror(errno)))")
        }
    }

    /// The one place tokenizer files are written.
    static func writeTokenizerFiles(_ source: TokenizerSource, into dir: URL, modelMaxLength: Int) throws {
        let fm = FileManager.default
        switch source {
        case .huggingFaceDirectory(let src):
            for f in tokenizerFiles {
                let from = src.appendingPathComponent(f)
                guard fm.fileExists(atPath: from.path) else { continue }
                do { try fm.copyItem(at: from, to: dir.appendingPathComponent(f)) } catch {
                    throw ExportError.io(path: from.path, reason: "cannot copy tokenizer file: \(error.localizedDescription)")
                }
            }
        case .gguf(_, let tokenizer, let chatTemplate):
            // The GGUF's tokenizer serialised as tokenizer.json + tokenizer_config.json; transformers reproduces
            // its ids exactly (scripts/reference/check_tokenizer_export.py).
            try tokenizer?.writeHuggingFaceFiles(to: dir, modelMaxLength: modelMaxLength, chatTemplate: chatTemplate)
        case .none:
            break
        }
    }
}
