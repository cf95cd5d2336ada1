// Token choice: argmax ties to the lowest id (torch.argmax), and the logits warpers against transformers'
// TemperatureLogitsWarper → TopKLogitsWarper → TopPLogitsWarper on random rows (warpers_golden.json, with ties at the
// top and around the k-th value): the same tokens removed, the same values kept (in rows with ties, the same
// multiset kept: torch.sort orders equal values in no documented order). And the draw follows the softmax.
import Foundation
import Testing
@testable import Generation

struct SamplerTests {
    @Test func argmaxTiesGoToTheLowestId() {
        let row: [Float] = [0.5, 2, -1, 2, 2]
        #expect(row.withUnsafeBufferPointer { Sampler.argmax($0) } == 1)
        let nan: [Float] = [.nan, 1, 3, .nan, 3]
        #expect(nan.withUnsafeBufferPointer { Sampler.argmax($0) } == 2)
        var greedy = Sampler(SamplingSettings())
        #expect(greedy.next(row) == 1)
    }

    @Test func warpersMatchTransformers() throws {
        let g = try json("warpers_golden.json")
        let rows = (g["rows"] as! [[Double]]).map { $0.map(Float.init) }
        var cases = 0
        for c in g["cases"] as! [[String: Any]] {
            let t = (c["temperature"] as! NSNumber).doubleValue
            let k = (c["top_k"] as? NSNumber)?.intValue, p = (c["top_p"] as? NSNumber)?.doubleValue
            for (row, expected) in zip(rows, c["processed"] as! [[Any]]) {
                var s = row
                if t != 1 { LogitsWarpers.temperature(&s, t) }
                if let k { LogitsWarpers.topK(&s, k) }
                if let p, p < 1 { LogitsWarpers.topP(&s, p) }
                let ref = expected.map { ($0 as? NSNumber)?.floatValue }
                if Set(row).count < row.count {
                    // Ties: which of several equal logits top-p removes at its boundary follows torch.sort's
                    // unstable order (introsort's, not by index); the kept values must be the same multiset.
                    #expect(s.filter(\.isFinite).sorted() == ref.compactMap { $0 }.sorted(), "T \(t) k \(k ?? 0) p \(p ?? 1), tied row")
                    cases += 1
                    continue
                }
                for (i, e) in expected.enumerated() {
                    if let v = (e as? NSNumber)?.floatValue {
                        #expect(s[i].isFinite && abs(s[i] - v) <= 1e-6 * max(1, abs(v)), "T \(t) k \(k ?? 0) p \(p ?? 1) [\(i)]")
                    } else {
                        #expect(s[i] == -.infinity, "T \(t) k \(k ?? 0) p \(p ?? 1) [\(i)] kept \(s[i]), transformers removes it")
                    }
                }
                cases += 1
            }
        }
        #expect(cases == 48)
    }

    @Test func drawsFollowTheSoftmax() {
        var s = Sampler(SamplingSettings(temperature: 1, seed: 11))
        let logits: [Float] = [0, Foundation.log(3), -.infinity, Foundation.log(6)]   // probabilities 0.1, 0.3, 0, 0.6
        var counts = [0, 0, 0, 0]
        for _ in 0..<20_000 { counts[Int(s.next(logits))] += 1 }
        #expect(counts[2] == 0)
        for (i, p) in [(0, 0.1), (1, 0.3), (3, 0.6)] {
            #expect(abs(Double(counts[i]) / 20_000 - p) < 0.015, "token \(i): \(counts[i])")
        }
    }
}
