// Writes a (pruned) model as a Hugging Face directory: config.json (per-layer widths when heterogeneous),
// model.safetensors (F32, HF names; tied models omit lm_head), generation_config.json and the tokenizer
// files. Everything goes into a hidden temporary directory beside the target, which is renamed into place
// only when complete; an existing target is replaced only with `force` (old one renamed aside, new one
// renamed in, old one deleted). On any failure the temporary directory is removed.
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

    /// Writes the model directory atomically; `extraFiles` (name → contents, e.g. the prune plan) go in too.
    public static func write(weights: LlamaWeights, tokenizerSource: TokenizerSource, to dir: URL, force: Bool,
                             extraFiles: [String: Data] = [:]) throws {
        let fm = FileManager.default
        let target = dir.standardizedFileURL
        let parent = target.deletingLastPathComponent()
        let name = target.lastPathComponent
        let exists = fm.fileExists(atPath: target.path)
        if exists && !force { throw PruneError.outputExists(path: target.path) }
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: parent.path, isDirectory: &isDir), isDir.boolValue else {
            throw PruneError.io(path: parent.path, reason: "parent directory of the output does not exist")
        }
        let pid = getpid()
        let tmp = parent.appendingPathComponent(".\(name).tmp-\(pid)")
        try? fm.removeItem(at: tmp)    // a leftover of this pid
        do {
            try fm.createDirectory(at: tmp, withIntermediateDirectories: false)
            try writeContents(weights: weights, tokenizerSource: tokenizerSource, into: tmp)
            for (file, data) in extraFiles { try data.write(to: tmp.appendingPathComponent(file)) }
            if exists {
                let old = parent.appendingPathComponent(".\(name).old-\(pid)")
                try? fm.removeItem(at: old)
                try rename(target, old)
                do { try rename(tmp, target) } catch {
                    try? rename(old, target)     // put the old one back
                    throw error
                }
                try? fm.removeItem(at: old)
            } else {
                try rename(tmp, target)
            }
        } catch {
            try? fm.removeItem(at: tmp)
            throw error
        }
    }

    static func rename(_ from: URL, _ to: URL) throws {
        guard Foundation.rename(from.path, to.path) == 0 else {
            throw PruneError.io(path: to.path, reason: "cannot rename \(from.lastPathComponent) into place: \(String(cString: strerror(errno)))")
        }
    }

    static func writeContents(weights: LlamaWeights, tokenizerSource: TokenizerSource, into dir: URL) throws {
        let c = weights.config
        try AtomicFile.write(try c.configJSON(), to: dir.appendingPathComponent("config.json"))
        try SafetensorsWriter.write(weights.huggingFaceTensors(), metadata: ["format": "pt"],
                                    to: dir.appendingPathComponent("model.safetensors"))
        var gen: [String: Any] = ["_from_model_config": true]
        if let b = c.bosTokenId { gen["bos_token_id"] = b }
        if let e = c.eosTokenId { gen["eos_token_id"] = e }
        try AtomicFile.write(try JSONSerialization.data(withJSONObject: gen, options: [.prettyPrinted, .sortedKeys]),
                             to: dir.appendingPathComponent("generation_config.json"))
        try writeTokenizerFiles(tokenizerSource, into: dir, modelMaxLength: c.maxPositionEmbeddings)
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
                    throw PruneError.io(path: from.path, reason: "cannot copy tokenizer file: \(error.localizedDescription)")
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
