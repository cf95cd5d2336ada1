// An opened checkpoint for code that streams a model tensor by tensor (the GGUF export): its config, its tensors under
// Hugging Face names (values read on demand), and where its tokenizer lives. Nothing is loaded or dequantized here.
import Foundation
import Formats
import Tokenizer

public struct Checkpoint {
    public let config: LlamaConfig
    /// Every tensor under its Hugging Face name; for a GGUF, q/k rows un-permuted (Formats' GGUFLlamaSource).
    public let source: TensorSource
    /// The resolved path: the .gguf file, or the Hugging Face directory.
    public let path: String
    /// "gguf" or "safetensors".
    public let format: String
    /// The GGUF file when the checkpoint is one (its tokenizer keys can be copied as they are).
    public var gguf: GGUFFile? { (source as? GGUFLlamaSource)?.file }
    private let makeTokenizer: () throws -> BPETokenizer?

    /// The tokenizer (GGUF metadata or tokenizer.json), or nil when the checkpoint has none.
    public func tokenizer() throws -> BPETokenizer? { try makeTokenizer() }

    /// Opens `path` as `ModelLoader.load` would (a .gguf, or a directory with config.json or a single .gguf), and
    /// checks that every tensor the config implies is there with its shape (headers only).
    public static func open(path: String) throws -> Checkpoint {
        let m = try ModelLoader.open(path: path, needTokenizer: false)
        for (name, shape) in m.config.huggingFaceTensorShapes { try ModelLoader.checkShape(m.source, name, shape) }
        return Checkpoint(config: m.config, source: m.source, path: m.path, format: m.format, makeTokenizer: m.tokenizer)
    }
}
