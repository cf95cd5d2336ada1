// A micro-batch for causal-LM training: token ids and labels, both [batch × seqLen]. Position t predicts
// labels[t + 1] (transformers shifts inside the loss); label −100 is not scored.
import Foundation

/// One tokenized training example: ids and labels of equal length (−100 where not trained on).
public struct TokenizedExample: Equatable, Sendable {
    public var ids: [Int32]
    public var labels: [Int32]
    public init(ids: [Int32], labels: [Int32]) {
        self.ids = ids
        self.labels = labels
    }

    /// Scored next-token predictions (labels after the first that are not −100).
    public var predictionCount: Int { labels.dropFirst().filter { $0 != TokenBatch.ignoreIndex }.count }
}

public struct TokenBatch: Sendable {
    public static let ignoreIndex: Int32 = -100
    public let tokens: [Int32]   // [batch × seqLen]
    public let labels: [Int32]   // [batch × seqLen]
    public let batch: Int
    public let seqLen: Int

    public init(tokens: [Int32], labels: [Int32], batch: Int, seqLen: Int) throws {
        guard batch > 0, seqLen > 0, tokens.count == batch * seqLen, labels.count == tokens.count else {
            throw LoRAError.invalidInput("batch: \(tokens.count) tokens and \(labels.count) labels do not fill \(batch) × \(seqLen)")
        }
        self.tokens = tokens
        self.labels = labels
        self.batch = batch
        self.seqLen = seqLen
    }

    /// Right-pads every example to the longest with `padId` and label −100. Under causal attention, padding
    /// after a sequence cannot reach its tokens, so this equals the reference collator's left padding with an
    /// attention mask (RoPE scores depend on relative positions only).
    public init(examples: [TokenizedExample], padId: Int32 = 0) throws {
        guard !examples.isEmpty else { throw LoRAError.invalidInput("batch: no examples") }
        for e in examples where e.ids.count != e.labels.count || e.ids.isEmpty {
            throw LoRAError.invalidInput("batch: an example has \(e.ids.count) ids and \(e.labels.count) labels")
        }
        let T = examples.map(\.ids.count).max()!
        var tokens = [Int32](repeating: padId, count: examples.count * T)
        var labels = [Int32](repeating: Self.ignoreIndex, count: examples.count * T)
        for (b, e) in examples.enumerated() {
            tokens.replaceSubrange(b * T..<b * T + e.ids.count, with: e.ids)
            labels.replaceSubrange(b * T..<b * T + e.labels.count, with: e.labels)
        }
        try self.init(tokens: tokens, labels: labels, batch: examples.count, seqLen: T)
    }

    /// Rows r = b·T + t (t < T − 1) whose next label is scored, with that label.
    public var scoredRows: [(row: Int, target: Int32)] {
        var out: [(row: Int, target: Int32)] = []
        for b in 0..<batch {
            for t in 0..<(seqLen - 1) {
                let y = labels[b * seqLen + t + 1]
                if y != Self.ignoreIndex { out.append((b * seqLen + t, y)) }
            }
        }
        return out
    }

    public var predictionCount: Int { scoredRows.count }
}

extension TokenBatch {
    /// `examples` cut into micro-batches of `size` examples, in order, each right-padded with `padId`.
    public static func microBatches(_ examples: [TokenizedExample], size: Int, padId: Int32) throws -> [TokenBatch] {
        try stride(from: 0, to: examples.count, by: size).map {
            try TokenBatch(examples: Array(examples[$0..<min($0 + size, examples.count)]), padId: padId)
        }
    }
}
