// Calibration sampler: N non-overlapping windows of L tokens, reproducible from the seed, in draw order,
// with provenance; one-line errors for files too short.
import Foundation
import Testing
@testable import Pruning
import LlamaModel
import Support

@Suite struct CalibrationTests {
    static let ids: [Int32] = (0..<1000).map { Int32($0) }
    static let sha = SHA256.hex(Data("text".utf8))

    @Test func drawsDistinctNonOverlappingWindowsWithProvenance() throws {
        let set = try CalibrationSet.draw(ids: Self.ids, file: "/d/cal.txt", fileSHA256: Self.sha)
        #expect(set.samples.count == 10)
        #expect(set.sampleLength == 64)
        let p = set.provenance
        #expect(p.file == "/d/cal.txt" && p.fileSHA256 == Self.sha && p.seed == 42 && p.samples == 10 && p.sampleLength == 64)
        #expect(p.tokenCount == 1000)
        #expect(p.offsets == set.samples.map(\.offset))
        for s in set.samples {
            #expect(s.offset >= 0 && s.offset <= 1000 - 64)
            #expect(s.tokens == Array(Self.ids[s.offset..<(s.offset + 64)]))
        }
        let sorted = p.offsets.sorted()
        #expect(zip(sorted, sorted.dropFirst()).allSatisfy { $1 - $0 >= 64 })
        #expect(p.offsets != sorted, "offsets keep draw order (sorted by chance would be a 1 in 10! event)")
        #expect(set.batchTokens.count == 640)
        #expect(Array(set.batchTokens[64..<128]) == set.samples[1].tokens)
    }

    @Test func sameSeedSameWindowsOtherSeedOtherWindows() throws {
        let a = try CalibrationSet.draw(ids: Self.ids, file: "f", fileSHA256: Self.sha, seed: 1)
        let b = try CalibrationSet.draw(ids: Self.ids, file: "f", fileSHA256: Self.sha, seed: 1)
        let c = try CalibrationSet.draw(ids: Self.ids, file: "f", fileSHA256: Self.sha, seed: 2)
        #expect(a == b)
        #expect(a.provenance.offsets != c.provenance.offsets)
    }

    @Test func tightFilesStillSucceed() throws {
        // exactly N·L tokens: the only solution tiles the file
        let ids = Array(Self.ids[0..<640])
        for seed in 0..<20 as Range<UInt64> {
            let set = try CalibrationSet.draw(ids: ids, file: "f", fileSHA256: Self.sha, seed: seed)
            #expect(set.provenance.offsets.sorted() == stride(from: 0, to: 640, by: 64).map { $0 })
        }
        // a little slack: never stuck
        for seed in 0..<50 as Range<UInt64> {
            let set = try CalibrationSet.draw(ids: Array(Self.ids[0..<700]), file: "f", fileSHA256: Self.sha, seed: seed)
            let s = set.provenance.offsets.sorted()
            #expect(s.count == 10 && zip(s, s.dropFirst()).allSatisfy { $1 - $0 >= 64 } && s.last! <= 636)
        }
        // one window of the whole file
        let one = try CalibrationSet.draw(ids: Array(Self.ids[0..<64]), file: "f", fileSHA256: Self.sha, samples: 1)
        #expect(one.provenance.offsets == [0])
    }

    @Test func offsetsCoverTheRangeUniformly() throws {
        // one window of 10 in 100 tokens, many seeds: every offset 0...90 shows up, the ends included
        var seen = Set<Int>()
        for seed in 0..<2000 as Range<UInt64> {
            let s = try CalibrationSet.draw(ids: Array(Self.ids[0..<100]), file: "f", fileSHA256: Self.sha,
                                            samples: 1, sampleLength: 10, seed: seed)
            seen.insert(s.provenance.offsets[0])
        }
        #expect(seen == Set(0...90))
    }

    @Test func fileShorterThanOneSampleIsOneLine() {
        let m = pruneMessage { _ = try CalibrationSet.draw(ids: Array(Self.ids[0..<50]), file: "/d/short.txt", fileSHA256: Self.sha) }
        #expect(m == "/d/short.txt: calibration file shorter than one sample (50 tokens, a sample needs 64)")
    }

    @Test func fileTooShortForAllWindowsIsOneLine() {
        let m = pruneMessage { _ = try CalibrationSet.draw(ids: Array(Self.ids[0..<639]), file: "/d/cal.txt", fileSHA256: Self.sha) }
        #expect(m == "/d/cal.txt: calibration file too short for 10 non-overlapping samples of 64 tokens (639 tokens hold at most 9)")
    }
}
