// A format-neutral view of a checkpoint: Hugging Face tensor names, HF shapes ([out, in] for weights) and Float
// values. The model loader reads GGUF, single safetensors and sharded safetensors through this one protocol.
import Foundation

public protocol TensorSource: AnyObject {
    /// Every tensor the source offers, under its Hugging Face name, in a stable order (file order).
    var tensorNames: [String] { get }
    /// Shape in Hugging Face / PyTorch order (outermost first), or nil if there is no such tensor.
    func shape(of name: String) -> [Int]?
    /// The values, row-major in the order of `shape(of:)`.
    func floats(_ name: String) throws -> [Float]
    /// A one-line description for logs ("GGUF v3 model.gguf (272 tensors, Q4_1)").
    var sourceDescription: String { get }
    /// Widens the tensor into `out` (exactly its element count), without an intermediate array where the format
    /// allows (safetensors F32/F16/BF16).
    func readFloats(_ name: String, into out: UnsafeMutableBufferPointer<Float>) throws
    /// Widens rows `rows` of a 2-D tensor into `out` ([rows.count × columns]), touching only those rows' bytes
    /// where the format allows (safetensors); the token-embedding lookup of a low-memory stage.
    func readRows(_ name: String, rows: [Int], into out: UnsafeMutablePointer<Float>) throws
    /// The storage dtype of a tensor as safetensors names it ("BF16", "F16", "F32"; "Q4_1" etc. for GGUF).
    func storageType(of name: String) -> String?
    /// Drops the tensor's mapped file pages from the resident set (formats that map the file); a streaming reader
    /// calls it when done with the tensor. Values read later are unchanged.
    func releasePages(of name: String)
}

extension TensorSource {
    public func contains(_ name: String) -> Bool { shape(of: name) != nil }

    public func readFloats(_ name: String, into out: UnsafeMutableBufferPointer<Float>) throws {
        let v = try floats(name)
        guard v.count == out.count else {
            throw FormatError.shapeMismatch(path: sourceDescription, tensor: name,
                                            reason: "\(v.count) values, \(out.count) expected")
        }
        _ = out.update(fromContentsOf: v)
    }

    public func readRows(_ name: String, rows: [Int], into out: UnsafeMutablePointer<Float>) throws {
        try gatherRows(name, rows: rows, into: out)
    }

    /// `readRows` through the whole tensor in fp32 (formats that cannot decode single rows).
    func gatherRows(_ name: String, rows: [Int], into out: UnsafeMutablePointer<Float>) throws {
        let v = try floats(name)
        guard let shape = shape(of: name), shape.count == 2 else {
            throw FormatError.shapeMismatch(path: sourceDescription, tensor: name, reason: "not a matrix")
        }
        let cols = shape[1]
        for (i, r) in rows.enumerated() {
            guard r >= 0, r < shape[0] else {
                throw FormatError.shapeMismatch(path: sourceDescription, tensor: name, reason: "row \(r) of \(shape[0])")
            }
            v.withUnsafeBufferPointer { (out + i * cols).update(from: $0.baseAddress! + r * cols, count: cols) }
        }
    }

    public func storageType(of name: String) -> String? { nil }

    public func releasePages(of name: String) {}

    /// Bytes one element of `name` takes in the file (fractional for block-quantised GGUF types), or nil if unknown.
    public func storageBytesPerElement(of name: String) -> Double? {
        switch storageType(of: name) {
        case "F32": return 4
        case "F16", "BF16": return 2
        default: return nil
        }
    }
}

/// Llama hyperparameters read from GGUF metadata (`<arch>.*` keys).
public struct GGUFLlamaHyperparameters: Sendable, Equatable {
    public var architecture: String
    public var blockCount: Int
    public var embeddingLength: Int
    public var feedForwardLength: Int?
    /// Per layer (GGUF may store one number or one per layer).
    public var headCounts: [Int]
    public var kvHeadCounts: [Int]
    public var contextLength: Int?
    public var ropeFreqBase: Double?
    public var ropeDimensionCount: Int?
    public var rmsNormEpsilon: Double?
    public var vocabSize: Int?
    /// True when the file has no `output.weight` (lm_head shares token_embd).
    public var tiedEmbeddings: Bool
}

/// A GGUF Llama model seen under Hugging Face names, with llama.cpp's q/k row permutation undone so values equal
/// what `transformers` produces when it loads the same GGUF (`LlamaTensorProcessor._reverse_permute_weights`).
public final class GGUFLlamaSource: TensorSource, @unchecked Sendable {
    public let file: GGUFFile
    public let hyperparameters: GGUFLlamaHyperparameters
    public let tensorNames: [String]
    /// GGUF tensors with no Hugging Face Llama counterpart (e.g. `rope_freqs.weight`); not in `tensorNames`.
    public let unmappedTensorNames: [String]
    private let byHF: [String: GGUFTensorInfo]

    /// Architectures of the Llama family: llama and mistral, whose q/k rows llama.cpp's converter permuted in the
    /// Llama way, and qwen2, whose rows it keeps in Hugging Face order (Qwen2Model has no permute: NEOX rope).
    /// deci (per-layer head counts) and smollm3 are permuted as llama (conversion/deci.py, conversion/llama.py).
    public static let supportedArchitectures: Set<String> = ["llama", "mistral", "qwen2", "deci", "smollm3"]
    /// Whether q/k rows (and biases) are stored permuted (every supported architecture but qwen2).
    public let permutesQK: Bool

    public init(_ file: GGUFFile) throws {
        self.file = file
        let arch = file.metadata["general.architecture"]?.string ?? "llama"
        guard GGUFLlamaSource.supportedArchitectures.contains(arch) else {
            throw FormatError.malformed(path: file.path, reason: "architecture \(arch) is not a Llama-family model")
        }
        permutesQK = arch != "qwen2"
        func int(_ key: String) -> Int? { file.metadata["\(arch).\(key)"]?.int }
        func required(_ key: String) throws -> Int {
            guard let v = int(key) else {
                throw FormatError.malformed(path: file.path, reason: "missing or non-integer metadata \(arch).\(key)")
            }
            return v
        }
        let blocks = try required("block_count")
        guard blocks > 0, blocks < 100_000 else {
            throw FormatError.malformed(path: file.path, reason: "\(arch).block_count is \(blocks)")
        }
        func perLayer(_ key: String, fallback: [Int]?) throws -> [Int] {
            let full = "\(arch).\(key)"
            switch file.metadata[full] {
            case .some(.array):
                guard let a = file.metadata[full]?.intArray, a.count == blocks else {
                    throw FormatError.malformed(path: file.path, reason: "\(full) is not an integer array of \(blocks) entries")
                }
                return a
            case .some(let v):
                guard let n = v.int else { throw FormatError.malformed(path: file.path, reason: "\(full) is not an integer") }
                return Array(repeating: n, count: blocks)
            case .none:
                if let fallback { return fallback }
                throw FormatError.malformed(path: file.path, reason: "missing metadata \(full)")
            }
        }
        let heads = try perLayer("attention.head_count", fallback: nil)
        let kvHeads = try perLayer("attention.head_count_kv", fallback: heads)
        var names = [String]()
        var unmapped = [String]()
        var byHF = [String: GGUFTensorInfo]()
        for t in file.tensors {
            if let hf = GGUFLlamaSource.hfName(forGGUF: t.name) {
                names.append(hf)
                byHF[hf] = t
            } else {
                unmapped.append(t.name)
            }
        }
        let vocab = int("vocab_size") ?? file.metadata["tokenizer.ggml.tokens"]?.array?.count
            ?? file.tensor(named: "token_embd.weight")?.shape.last
        hyperparameters = GGUFLlamaHyperparameters(
            architecture: arch, blockCount: blocks, embeddingLength: try required("embedding_length"),
            feedForwardLength: int("feed_forward_length"), headCounts: heads, kvHeadCounts: kvHeads,
            contextLength: int("context_length"), ropeFreqBase: file.metadata["\(arch).rope.freq_base"]?.double,
            ropeDimensionCount: int("rope.dimension_count"),
            rmsNormEpsilon: file.metadata["\(arch).attention.layer_norm_rms_epsilon"]?.double,
            vocabSize: vocab, tiedEmbeddings: file.tensor(named: "output.weight") == nil)
        self.tensorNames = names
        self.unmappedTensorNames = unmapped
        self.byHF = byHF
    }

    public convenience init(path: String) throws {
        try self.init(try GGUFFile(path: path))
    }

    public var sourceDescription: String {
        var counts = [String: Int]()
        for t in file.tensors { counts[t.type.name, default: 0] += 1 }
        let types = counts.sorted { $0.value > $1.value }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        return "GGUF v\(file.version) \(file.path) (\(file.tensors.count) tensors: \(types))"
    }

    public func shape(of name: String) -> [Int]? { byHF[name]?.hfShape }
    public func storageType(of name: String) -> String? { byHF[name]?.type.name }

    /// Rows of a tensor, decoding only their blocks; q/k (whose rows llama.cpp permuted) go through `floats`.
    public func readRows(_ name: String, rows: [Int], into out: UnsafeMutablePointer<Float>) throws {
        guard let info = byHF[name] else { throw FormatError.tensorNotFound(path: file.path, tensor: name) }
        if permutesQK, GGUFLlamaSource.permutedRole(info.name) != nil { return try gatherRows(name, rows: rows, into: out) }
        try file.rows(info, rows, into: out)
    }

    public func releasePages(of name: String) {
        if let info = byHF[name] { file.release(info) }
    }

    /// The GGUF tensor behind a Hugging Face name.
    public func ggufInfo(of name: String) -> GGUFTensorInfo? { byHF[name] }

    public func floats(_ name: String) throws -> [Float] {
        guard let info = byHF[name] else { throw FormatError.tensorNotFound(path: file.path, tensor: name) }
        guard permutesQK, let (layer, isQ) = GGUFLlamaSource.permutedRole(info.name) else { return try file.floats(info) }
        guard layer < hyperparameters.blockCount else {
            throw FormatError.malformed(path: file.path,
                reason: "tensor \(info.name) belongs to layer \(layer) but \(hyperparameters.architecture).block_count is \(hyperparameters.blockCount)")
        }
        let nHead = isQ ? hyperparameters.headCounts[layer] : hyperparameters.kvHeadCounts[layer]
        guard let outDim = info.shape.last, nHead > 0, outDim % (2 * nHead) == 0 else {
            throw FormatError.shapeMismatch(path: file.path, tensor: info.name,
                reason: "output size \(info.shape.last ?? 0) is not divisible by 2 × \(nHead) heads; cannot undo the q/k permutation")
        }
        let perm = GGUFLlamaSource.unpermuteSourceIndex(heads: nHead, rows: outDim)
        if info.shape.count >= 2 {
            // Rows (ne[1..]) are the output dimension for a 2-D weight.
            guard info.shape.count == 2 else {
                throw FormatError.shapeMismatch(path: file.path, tensor: info.name, reason: "expected 2 dimensions, got shape \(info.shape)")
            }
            return try file.floats(info, sourceRow: perm)
        }
        // A 1-D q/k bias: permute elements.
        let v = try file.floats(info)
        return (0..<v.count).map { v[perm($0)] }
    }

    /// For output row `r` of the Hugging Face weight, the row of the llama.cpp (permuted) weight it comes from.
    /// llama.cpp stores each head's rows as interleaved (even, odd) pairs; transformers undoes this with
    /// `w.reshape(n_head, dim, 2, in).swapaxes(2, 1).reshape(w.shape)`, dim = rows / n_head / 2.
    public static func unpermuteSourceIndex(heads: Int, rows: Int) -> @Sendable (Int) -> Int {
        let dim = rows / heads / 2
        return { r in
            let h = r / (2 * dim), rem = r % (2 * dim)
            let j = rem / dim, d = rem % dim
            return h * 2 * dim + d * 2 + j
        }
    }

    /// The inverse of `unpermuteSourceIndex`: for row `r` of the llama.cpp weight, the Hugging Face row it comes from.
    /// llama.cpp's converter (`LlamaModel.permute`, conversion/llama.py) does
    /// `w.reshape(n_head, 2, dim, in).swapaxes(1, 2).reshape(w.shape)`, dim = rows / n_head / 2, so that its
    /// adjacent-pair rotation equals transformers' rotate_half.
    public static func permuteSourceIndex(heads: Int, rows: Int) -> @Sendable (Int) -> Int {
        let dim = rows / heads / 2
        return { r in
            let h = r / (2 * dim), rem = r % (2 * dim)
            let d = rem / 2, j = rem % 2
            return h * 2 * dim + j * dim + d
        }
    }

    /// (layer, isQuery) for `blk.N.attn_q.*` / `blk.N.attn_k.*`, else nil.
    static func permutedRole(_ gguf: String) -> (Int, Bool)? {
        let parts = gguf.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "blk", let layer = Int(parts[1]) else { return nil }
        if parts[2] == "attn_q" { return (layer, true) }
        if parts[2] == "attn_k" { return (layer, false) }
        return nil
    }

    private static let layerParts: [String: String] = [
        "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
        "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
    ]
    private static let reverseLayerParts: [String: String] =
        Dictionary(uniqueKeysWithValues: layerParts.map { ($0.value, $0.key) })

    /// llama.cpp tensor name → Hugging Face Llama name, or nil for tensors with no counterpart.
    public static func hfName(forGGUF name: String) -> String? {
        switch name {
        case "token_embd.weight": return "model.embed_tokens.weight"
        case "output_norm.weight": return "model.norm.weight"
        case "output.weight": return "lm_head.weight"
        default: break
        }
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "blk", let layer = Int(parts[1]), layer >= 0,
              parts[3] == "weight" || parts[3] == "bias", let hf = layerParts[String(parts[2])] else { return nil }
        return "model.layers.\(layer).\(hf).\(parts[3])"
    }

    /// Hugging Face Llama name → llama.cpp tensor name (inverse of `hfName(forGGUF:)`).
    public static func ggufName(forHF name: String) -> String? {
        switch name {
        case "model.embed_tokens.weight": return "token_embd.weight"
        case "model.norm.weight": return "output_norm.weight"
        case "lm_head.weight": return "output.weight"
        default: break
        }
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 5, parts[0] == "model", parts[1] == "layers", let layer = Int(parts[2]), layer >= 0,
              let suffix = parts.last, suffix == "weight" || suffix == "bias" else { return nil }
        let middle = parts[3..<(parts.count - 1)].joined(separator: ".")
        guard let g = reverseLayerParts[middle] else { return nil }
        return "blk.\(layer).\(g).\(suffix)"
    }
}
