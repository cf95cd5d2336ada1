// Choosing the next token from a row of logits: greedy (temperature 0: argmax, ties to the lowest id as
// torch.argmax gives them), or sampling after transformers' logits warpers in transformers' order
// (generation/utils.py _get_logits_processor: temperature, then top-k, then top-p; logits_process.py
// TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper with min_tokens_to_keep 1). The draw uses llmprune's
// seeded SplitMix64, not torch.multinomial's generator: the same seed gives the same tokens here run after run, but
// not torch's tokens.
import Foundation
import LlamaModel

/// How the next token is chosen.
public struct SamplingSettings: Equatable, Sendable {
    /// 0: greedy. Otherwise logits are divided by it before top-k / top-p and the draw.
    public var temperature: Double = 0
    /// Keep the k highest logits (and any tied with the k-th); nil: no top-k.
    public var topK: Int?
    /// Keep the smallest set of highest-probability tokens whose probability reaches p; nil: no top-p.
    public var topP: Double?
    public var seed: UInt64 = 0

    public init(temperature: Double = 0, topK: Int? = nil, topP: Double? = nil, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
    }

    public var isGreedy: Bool { temperature == 0 }

    /// Refuses values transformers refuses (the setting's name first, for the CLI to map onto its flag).
    public func validate() throws {
        guard temperature.isFinite, temperature >= 0 else {
            throw GenerationError.setting("temperature", "\(temperature) must be 0 (greedy) or positive")
        }
        if let k = topK, k <= 0 { throw GenerationError.setting("top-k", "\(k) must be a positive integer") }
        if let p = topP, !(p > 0 && p <= 1) { throw GenerationError.setting("top-p", "\(p) is not in (0, 1]") }
    }
}

/// transformers' logits warpers, each in place on a row of scores; removed tokens become −∞.
public enum LogitsWarpers {
    /// TemperatureLogitsWarper: scores / temperature (in fp32, as torch divides a float tensor by a Python float).
    public static func temperature(_ scores: inout [Float], _ t: Double) {
        let tf = Float(t)
        for i in scores.indices { scores[i] = scores[i] / tf }
    }

    /// TopKLogitsWarper: every score below the k-th highest is removed (ties with it stay).
    public static func topK(_ scores: inout [Float], _ k: Int) {
        let k = min(max(k, 1), scores.count)
        guard k < scores.count else { return }
        // The k-th highest value: a partial selection over a copy (NaN-free logits assumed, as torch.topk's order).
        var copy = scores
        let kth = quickselectDescending(&copy, k - 1)
        for i in scores.indices where scores[i] < kth { scores[i] = -.infinity }
    }

    /// TopPLogitsWarper: sort ascending, cumulative softmax in fp32; positions whose cumulative probability is
    /// ≤ 1 − p are removed, the highest one always stays. Equal logits are ordered by index; torch.sort (not stable)
    /// orders them in an order of its own, so among equal logits at the boundary the one removed may differ (the
    /// kept values are the same).
    public static func topP(_ scores: inout [Float], _ p: Double) {
        let n = scores.count
        guard n > 1 else { return }
        let order = scores.indices.sorted { scores[$0] < scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
        let mx = scores[order[n - 1]]
        var e = [Float](repeating: 0, count: n)
        var sum: Float = 0
        for (j, i) in order.enumerated() {
            e[j] = mx == -.infinity ? 0 : Foundation.exp(scores[i] - mx)
            sum += e[j]
        }
        // torch: (1 - top_p) is a Python double, compared with a float32 tensor: the tensor's dtype wins.
        let threshold = Float(1 - p)
        var cumulative: Float = 0
        for j in 0..<(n - 1) {
            cumulative += e[j] / sum
            if cumulative <= threshold { scores[order[j]] = -.infinity }
        }
    }

    /// The element that would be at index `k` of `a` sorted in descending order (a is reordered).
    static func quickselectDescending(_ a: inout [Float], _ k: Int) -> Float {
        var lo = 0, hi = a.count - 1
        var rng = SplitMix64(seed: 0x5eed)
        while lo < hi {
            let pivot = a[lo + Int(rng.next() % UInt64(hi - lo + 1))]
            var i = lo, j = hi
            while i <= j {
                while a[i] > pivot { i += 1 }
                while a[j] < pivot { j -= 1 }
                if i <= j { a.swapAt(i, j); i += 1; j -= 1 }
            }
            if k <= j { hi = j } else if k >= i { lo = i } else { return a[k] }
        }
        return a[k]
    }
}

/// Picks tokens by `SamplingSettings`; one per generation (it owns the random stream).
public struct Sampler {
    public let settings: SamplingSettings
    private var rng: SplitMix64

    public init(_ settings: SamplingSettings) {
        self.settings = settings
        rng = SplitMix64(seed: settings.seed)
    }

    /// Index of the largest logit, the lowest index among equal ones (torch.argmax); a NaN row gives 0.
    public static func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int {
        var best = 0
        var bestValue = -Float.infinity
        var seen = false
        for (i, v) in logits.enumerated() where !v.isNaN && (!seen || v > bestValue) {
            best = i
            bestValue = v
            seen = true
        }
        return best
    }

    /// The next token from one row of logits.
    public mutating func next(_ logits: [Float]) -> Int32 {
        if settings.isGreedy { return Int32(logits.withUnsafeBufferPointer { Self.argmax($0) }) }
        var scores = logits
        if settings.temperature != 1 { LogitsWarpers.temperature(&scores, settings.temperature) }
        if let k = settings.topK { LogitsWarpers.topK(&scores, k) }
        if let p = settings.topP, p < 1 { LogitsWarpers.topP(&scores, p) }
        return Int32(draw(scores))
    }

    /// A token drawn with probability softmax(scores) (in Double, from the seeded stream).
    mutating func draw(_ scores: [Float]) -> Int {
        let mx = Double(scores.max() ?? 0)
        let weights = scores.map { $0 == -.infinity ? 0 : Foundation.exp(Double($0) - mx) }
        let total = weights.reduce(0, +)
        guard total > 0, total.isFinite else { return scores.withUnsafeBufferPointer { Self.argmax($0) } }
        let u = rng.nextUniform() * total
        var acc = 0.0
        for i in weights.indices {
            acc += weights[i]
            if u < acc { return i }
        }
        return weights.indices.last { scores[$0] != -.infinity } ?? 0
    }
}
