// `mpiexec -n 2 llmprune plan`: calibration samples split across two ranks, gradient sums reduced with
// MPI_Allreduce before any absolute value, must give the single-process plan (same kept units, same scores up
// to float summation order).
import Foundation
import Testing

func mpiexecPath() -> String? {
    ["/usr/bin/mpiexec", "/usr/local/bin/mpiexec"].first { FileManager.default.isExecutableFile(atPath: $0) }
}

@Suite(.enabled(if: mpiexecPath() != nil, "mpiexec not installed")) struct MPIPlan {
    func plan(_ s: Scratch, ranks: Int, criterion: String) throws -> [String: Any] {
        let out = s.url.appendingPathComponent("plan-\(ranks)-\(criterion).json").path
        let calib = try s.file("calib.txt", Data(String(repeating: "the quick brown fox jumps over the lazy dog\n", count: 40).utf8))
        let args = ["plan", "--model", fixtures.appendingPathComponent("tiny.gguf").path, "--plan", out, "--layers", "0:3",
                    "--calib", calib, "--calib-samples", "5", "--calib-len", "8", "--criterion", criterion, "--quiet"]
        let r = ranks == 1 ? try llmprune(args)
            : try run(mpiexecPath()!, ["-n", "\(ranks)", llmpruneBinary().path] + args)
        #expect(r.status == 0, "\(r.stderr)")
        return try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out))) as! [String: Any]
    }

    @Test(arguments: ["element1", "element2"])
    func twoRanksGiveTheSingleProcessPlan(criterion: String) throws {
        let s = Scratch()
        let one = try plan(s, ranks: 1, criterion: criterion), two = try plan(s, ranks: 2, criterion: criterion)
        let l1 = one["layers"] as! [[String: Any]], l2 = two["layers"] as! [[String: Any]]
        #expect(l1.count == l2.count)
        var worst = 0.0
        for (a, b) in zip(l1, l2) {
            for key in ["keptKVHeads", "keptQueryHeads", "keptMLPChannels"] {
                #expect(a[key] as! [Int] == b[key] as! [Int], "\(key) differs")
            }
            for key in ["attentionScores", "mlpScores"] {
                for (x, y) in zip(a[key] as! [Double], b[key] as! [Double]) {
                    worst = max(worst, abs(x - y) / max(abs(x), 1e-30))
                }
            }
        }
        #expect(worst < 1e-5, "worst relative score difference \(worst)")
        #expect((one["calibration"] as! [String: Any])["offsets"] as! [Int] == (two["calibration"] as! [String: Any])["offsets"] as! [Int])
    }
}
