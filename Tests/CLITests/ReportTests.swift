// `llmprune report RUN_DIR` on a run of the tiny model (cluster prune, then tune, plus a baseline): one
// self-contained HTML page with every chart as inline SVG, and summary.json with the same numbers. The job
// commands also write their own report into the job directory without touching the job's report.json.
import Foundation
import Testing

struct ReportTests {
    @Test func runReportHasEveryChartAndTheNumbers() throws {
        let s = Scratch()
        let run = s.url.appendingPathComponent("run").path
        try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
        let p = try llmprune(["cluster", "prune"] + (try clusterJobArgs(s)) + ["--out", run + "/pruned",
                             "--job-dir", run + "/prune.job", "--quiet"])
        #expect(p.status == 0, "\(p.stderr)")
        let evalFile = try s.file("eval.txt", Data(String(repeating: "a b c d e f g h ", count: 200).utf8))
        let t = try llmprune(["tune", "--model", run + "/pruned", "--data", TuneCommandTests.alpaca, "--out", run + "/adapter",
                              "--job-dir", run + "/tune.job", "--steps", "3", "--batch", "4", "--micro-batch", "2",
                              "--val-size", "4", "--cutoff", "256", "--lr", "1e-2", "--warmup", "0", "--rank", "4",
                              "--threads", "1", "--eval", evalFile,
                              "--eval-windows", "2", "--quiet"])
        #expect(t.status == 0, "\(t.stderr)")
        // The job directories got their own report, and kept their job report.
        for job in ["prune.job", "tune.job"] {
            #expect(FileManager.default.fileExists(atPath: "\(run)/\(job)/report.html"))
            #expect(try readJSON("\(run)/\(job)/report.json")["jobDir"] as? String != nil, "\(job)/report.json was replaced")
        }
        try JSONSerialization.data(withJSONObject: ["perplexity": [evalFile: 1234.5]])
            .write(to: URL(fileURLWithPath: run + "/baseline.json"))
        let r = try llmprune(["report", run])
        #expect(r.status == 0, "\(r.stderr)")
        let html = try String(contentsOfFile: run + "/report.html", encoding: .utf8)
        for section in ["Kept widths per layer", "Importance score distribution per layer", "Perplexity", "LoRA loss",
                        "Time per phase per rank (prune)", "Time per phase per rank (tune)",
                        "Peak memory per rank (prune job)"] {
            #expect(html.contains("<h2>\(section)</h2>"), "missing \(section)")
        }
        #expect(html.components(separatedBy: "<svg").count - 1 == 8)     // 2 width charts + 6 others
        let memory = try #require(try readJSON(run + "/summary.json")["memory"] as? [[String: Any]])
        #expect(!memory.isEmpty && memory.allSatisfy { ($0["predictedBytes"] as? Int ?? 0) > 0 && ($0["measuredBytes"] as? Int ?? 0) > 0 },
                "\(memory)")
        #expect(!html.contains("<script"))     // self-contained: no scripts, nothing fetched
        let summary = try readJSON(run + "/summary.json")
        #expect((summary["layers"] as! [[String: Any]]).count == 3)
        let ppl = summary["perplexity"] as! [String: [String: Double]]
        #expect(ppl.values.first.map { Set($0.keys) } == ["original", "pruned", "tuned"], "\(ppl)")
        #expect((summary["loss"] as! [[Any]]).count == 3)
        expectCleanFailure(try llmprune(["report", s.url.path]), mentions: ["not a job directory"])
    }
}
