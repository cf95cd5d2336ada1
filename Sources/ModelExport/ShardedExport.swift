// Sharded Hugging Face export for cluster jobs, where each rank holds only a contiguous block of layers.
// Every rank writes its own shard into a shared staging directory (`shardTensors` + `writeShard` for a block held
// in memory; Pruning's CutExport.swift cuts and writes a block layer by layer); rank 0 gathers the `ShardFile`s,
// writes the index (`writeIndex`) and the rest of the directory (`writeModelFiles`), then `commit`s. Shards follow
// HF naming, model-0000k-of-0000n.safetensors, and `model.safetensors.index.json` maps every tensor to its file.
import Foundation
import LlamaModel
import Formats
import Support

/// One written shard: what rank 0 needs for the index (small, so ranks can send it over the control plane).
public struct ShardFile: Codable, Equatable, Sendable {
    /// Name inside the model directory, e.g. model-00002-of-00003.safetensors.
    public var fileName: String
    /// Hugging Face names of the tensors in the file.
    public var tensorNames: [String]
    /// Bytes of tensor data (headers excluded), as the index's `total_size` counts them.
    public var dataBytes: Int

    public init(fileName: String, tensorNames: [String], dataBytes: Int) {
        self.fileName = fileName
        self.tensorNames = tensorNames
        self.dataBytes = dataBytes
    }
}

extension HFExport {
    public static let indexFileName = "model.safetensors.index.json"

    /// HF's shard name: 1-based index and count, each zero-padded to 5 digits.
    public static func shardFileName(index k: Int, count n: Int) -> String {
        func pad(_ i: Int) -> String { String(repeating: "0", count: max(0, 5 - String(i).count)) + String(i) }
        return "model-\(pad(k + 1))-of-\(pad(n)).safetensors"
    }

    /// The HF-named tensors one shard owns: layers `layers`, `model.embed_tokens.weight` iff `embedding`,
    /// `model.norm.weight` (and `lm_head.weight` when untied) iff `head`. Throws if one of them is not loaded
    /// (a placeholder layer, an empty embedding or norm), which would otherwise be a silent empty tensor.
    public static func shardTensors(weights w: LlamaWeights, layers: Range<Int>, embedding: Bool, head: Bool) throws
        -> [(name: String, shape: [Int], values: [Float])]
    {
        let c = w.config
        guard layers.lowerBound >= 0, layers.upperBound <= c.numLayers else {
            throw ExportError.invalidShards("layers \(layers) outside the model's \(c.numLayers) layers")
        }
        for i in layers where !w.layers[i].holdsWeights(config: c) {
            throw ExportError.invalidShards("layer \(i) is not loaded (placeholder or wrong size for its shape)")
        }
        if embedding && w.embed.count != c.vocabSize * c.hiddenSize {
            throw ExportError.invalidShards("the token embedding is not loaded")
        }
        if head && (w.finalNorm.count != c.hiddenSize || (!c.tieWordEmbeddings && w.lmHead == nil)) {
            throw ExportError.invalidShards("the final norm or LM head is not loaded")
        }
        return w.huggingFaceTensors(layers: layers, embedding: embedding, head: head)
    }

    /// Writes shard `k` of `n` (0-based `k`) into `dir` atomically (temporary name, then rename), F32 with
    /// metadata {"format": "pt"} as `transformers` expects.
    @discardableResult
    public static func writeShard(tensors: [(name: String, shape: [Int], values: [Float])], index k: Int, count n: Int,
                                  into dir: URL) throws -> ShardFile {
        guard n >= 1, n <= 99_999, k >= 0, k < n else {
            throw ExportError.invalidShards("shard index \(k) of \(n) (need 0 ≤ index < count ≤ 99999)")
        }
        let name = shardFileName(index: k, count: n)
        try SafetensorsWriter.write(tensors, metadata: ["format": "pt"], to: dir.appendingPathComponent(name))
        return ShardFile(fileName: name, tensorNames: tensors.map(\.name),
                         dataBytes: tensors.reduce(0) { $0 + 4 * $1.values.count })
    }

    /// Writes `model.safetensors.index.json` atomically: {"metadata": {"total_size": data bytes of all shards},
    /// "weight_map": {tensor: file}}, sorted keys. A tensor in two shards (or twice in one) is refused: the
    /// index can name only one file for it, and two ranks writing it means the stage blocks overlap.
    public static func writeIndex(shards: [ShardFile], into dir: URL) throws {
        var map: [String: String] = [:]
        for s in shards {
            for t in s.tensorNames {
                if let other = map[t] {
                    throw ExportError.invalidShards("tensor \(t) is in both \(other) and \(s.fileName)")
                }
                map[t] = s.fileName
            }
        }
        let index: [String: Any] = ["metadata": ["total_size": shards.reduce(0) { $0 + $1.dataBytes }], "weight_map": map]
        let data = try JSONSerialization.data(withJSONObject: index, options: [.prettyPrinted, .sortedKeys])
        try AtomicFile.write(data, to: dir.appendingPathComponent(indexFileName))
    }
}

extension LayerWeights {
    /// Every array has the size `shape` implies: not a stage's placeholder, nothing short (slicing either would
    /// trap, and writing it would give a silently empty tensor).
    public func holdsWeights(config c: LlamaConfig) -> Bool {
        let d = c.hiddenSize, hd = c.headDim, s = shape
        return inputNorm.count == d && postNorm.count == d
            && wqkv.count == (s.numHeads + 2 * s.numKVHeads) * hd * d && wo.count == d * s.numHeads * hd
            && wGateUp.count == 2 * s.intermediateSize * d && wDown.count == d * s.intermediateSize
            && bqkv.count == (c.qkvBias ? (s.numHeads + 2 * s.numKVHeads) * hd : 0) && bo.count == (c.oBias ? d : 0)
            && bGateUp.count == (c.mlpBias ? 2 * s.intermediateSize : 0) && bDown.count == (c.mlpBias ? d : 0)
    }
}
