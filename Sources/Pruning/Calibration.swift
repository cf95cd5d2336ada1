// Calibration samples: N windows of L tokens drawn from one tokenized text (defaults 10 × 64, as the
// reference's `get_examples('bookcorpus', tokenizer, 10, seq_len = 64)` in hf_prune.py: random documents of at
// least L tokens, one random window each; LLMPruner/datasets/example_samples.py). The caller reads and
// tokenizes the file under the project's text protocol (module Eval) and passes the ids with the file's path and
// SHA-256; this file only draws windows and records where they came from.
//
// Drawing: with SplitMix64(seed), each window start is uniform over the offsets in [0, ids.count − L] whose
// window overlaps none already drawn and leaves room for the windows still to draw (so a draw never paints
// itself into a corner). Offsets are kept in draw order, not sorted.
import Foundation
import LlamaModel

/// Where a calibration set came from, enough to redraw it.
public struct CalibrationProvenance: Codable, Equatable, Sendable {
    public var file: String
    public var fileSHA256: String
    public var seed: UInt64
    public var samples: Int
    public var sampleLength: Int
    /// Start of each window in the file's token ids, in draw order.
    public var offsets: [Int]
    /// Number of token ids the file gave (windows are drawn from [0, tokenCount − sampleLength]).
    public var tokenCount: Int

    public init(file: String, fileSHA256: String, seed: UInt64, samples: Int, sampleLength: Int, offsets: [Int],
                tokenCount: Int) {
        self.file = file
        self.fileSHA256 = fileSHA256
        self.seed = seed
        self.samples = samples
        self.sampleLength = sampleLength
        self.offsets = offsets
        self.tokenCount = tokenCount
    }
}

/// One window of token ids.
public struct CalibrationSample: Equatable, Sendable {
    public var offset: Int
    public var tokens: [Int32]
}

/// N samples of L tokens, ready for a batched gradient pass.
public struct CalibrationSet: Equatable, Sendable {
    public static let defaultSamples = 10
    public static let defaultSampleLength = 64
    public static let defaultSeed: UInt64 = 42

    public var samples: [CalibrationSample]
    public var provenance: CalibrationProvenance

    public var sampleLength: Int { provenance.sampleLength }
    /// All samples row-major [N × L], the `tokens` argument of the forward and gradient passes.
    public var batchTokens: [Int32] { samples.flatMap(\.tokens) }

    /// Draws `samples` non-overlapping windows of `sampleLength` tokens from `ids`.
    /// - Parameters: file: the calibration file's path (for provenance and errors); fileSHA256: hex SHA-256
    ///   of its bytes.
    public static func draw(ids: [Int32], file: String, fileSHA256: String, samples: Int = defaultSamples,
                            sampleLength: Int = defaultSampleLength, seed: UInt64 = defaultSeed) throws -> CalibrationSet {
        guard samples > 0 else {
            throw PruneError.setting(.calibrationSamples, reason: "must be positive, got \(samples)")
        }
        guard sampleLength > 0 else {
            throw PruneError.setting(.calibrationLength, reason: "must be positive, got \(sampleLength)")
        }
        let n = ids.count, l = sampleLength
        guard n >= l else { throw PruneError.calibrationTooShort(path: file, tokens: n, sampleLength: l) }
        guard n / l >= samples else {
            throw PruneError.calibrationTooFewWindows(path: file, tokens: n, samples: samples, sampleLength: l)
        }
        var rng = SplitMix64(seed: seed)
        var taken: [Int] = []                 // accepted offsets, draw order
        var gaps: [Range<Int>] = [0..<n]      // free token spans, sorted
        for drawn in 0..<samples {
            let remaining = samples - drawn - 1
            let capacity = gaps.reduce(0) { $0 + $1.count / l }
            // An offset o inside gap g = [a, b) is valid if the window fits and the split gap still holds the rest.
            func valid(_ o: Int, in g: Range<Int>) -> Bool {
                guard o >= g.lowerBound, o + l <= g.upperBound else { return false }
                let after = capacity - g.count / l + (o - g.lowerBound) / l + (g.upperBound - o - l) / l
                return after >= remaining
            }
            func gapIndex(of o: Int) -> Int? { gaps.firstIndex { $0.contains(o) } }
            var chosen: Int? = nil
            // Rejection sampling from the whole range: uniform over the valid offsets.
            for _ in 0..<1000 {
                let o = uniform(&rng, below: n - l + 1)
                if let gi = gapIndex(of: o), valid(o, in: gaps[gi]) { chosen = o; break }
            }
            if chosen == nil {
                // Crowded: enumerate the valid offsets and pick one uniformly (same distribution).
                var count = 0
                for g in gaps where g.count >= l { for o in g.lowerBound...(g.upperBound - l) where valid(o, in: g) { count += 1 } }
                var k = uniform(&rng, below: count)
                outer: for g in gaps where g.count >= l {
                    for o in g.lowerBound...(g.upperBound - l) where valid(o, in: g) {
                        if k == 0 { chosen = o; break outer }
                        k -= 1
                    }
                }
            }
            let o = chosen!    // exists: capacity ≥ remaining + 1 holds by induction from n / l ≥ samples
            let gi = gapIndex(of: o)!
            let g = gaps[gi]
            gaps.replaceSubrange(gi...gi, with: [g.lowerBound..<o, (o + l)..<g.upperBound].filter { !$0.isEmpty })
            taken.append(o)
        }
        let set = taken.map { CalibrationSample(offset: $0, tokens: Array(ids[$0..<($0 + l)])) }
        return CalibrationSet(samples: set, provenance: CalibrationProvenance(
            file: file, fileSHA256: fileSHA256, seed: seed, samples: samples, sampleLength: l, offsets: taken,
            tokenCount: n))
    }

    /// Uniform integer in [0, bound) without modulo bias (rejection of the top partial block).
    static func uniform(_ rng: inout SplitMix64, below bound: Int) -> Int {
        precondition(bound > 0)
        let b = UInt64(bound)
        let limit = UInt64.max - (UInt64.max % b + 1) % b   // largest multiple of b, minus one
        while true {
            let x = rng.next()
            if x <= limit { return Int(x % b) }
        }
    }
}
