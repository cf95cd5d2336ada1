// The keys and values a generation has computed, per layer at that layer's own width (a pruned model's layers
// differ in KV heads), so each new token attends to every earlier position without recomputing it. One sequence;
// keys are stored after RoPE, as transformers' DynamicCache stores them. Not a second model: the layer that fills
// and reads it is TransformerBlock's (forward with `cache:`), and LlamaRunner.forward(appending:cache:) drives it.
import Foundation
import TensorCore

public final class KVCache {
    /// Positions the buffers hold at most.
    public let capacity: Int
    /// Positions stored so far: the next token's position.
    public private(set) var length = 0
    let keys: [FloatBuffer]       // per layer [capacity × nkv·hd]
    let values: [FloatBuffer]     // per layer [capacity × nkv·hd]
    let kvWidths: [Int]           // per layer nkv·hd

    /// Empty buffers for `capacity` positions of a model of config `c`.
    public init(config c: LlamaConfig, capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
        kvWidths = c.layers.map { $0.numKVHeads * c.headDim }
        keys = kvWidths.map { FloatBuffer(capacity * $0) }
        values = kvWidths.map { FloatBuffer(capacity * $0) }
    }

    /// Bytes the cache holds.
    public var bytes: Int { 4 * 2 * capacity * kvWidths.reduce(0, +) }

    /// Forgets every position (the buffers are kept).
    public func reset() { length = 0 }

    /// Copies layer `l`'s k and v rows of `rows` new tokens into positions length..<length + rows: k at column
    /// `kColumn` of rows `stride` apart in `qkv`, v right after it.
    func store(layer l: Int, qkv: UnsafePointer<Float>, stride: Int, kColumn: Int, rows: Int) {
        let w = kvWidths[l]
        precondition(length + rows <= capacity, "KV cache: \(length + rows) positions exceed its capacity \(capacity)")
        let k = keys[l].p + length * w, v = values[l].p + length * w
        for r in 0..<rows {
            (k + r * w).update(from: qkv + r * stride + kColumn, count: w)
            (v + r * w).update(from: qkv + r * stride + kColumn + w, count: w)
        }
    }

    /// Marks `rows` positions stored by every layer (after the last layer has run).
    func advance(_ rows: Int) {
        precondition(length + rows <= capacity)
        length += rows
    }
}
