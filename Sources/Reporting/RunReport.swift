// `llmprune report RUN_DIR`: one self-contained HTML page (inline SVG, no scripts) and the same numbers as JSON
// (summary.json) for a run of the pipeline. A run directory holds any of: a prune job (a directory with plan.json and report.json, as
// `cluster prune` writes), a tune job (checkpoint.json and report.json, as `tune` writes) and baseline.json
// ({"perplexity": {dataset: ppl}} of the model before pruning). A job directory itself is also a run directory.
import Cluster
import ClusterPrune
import ClusterTune
import Foundation
import LlamaModel
import Pruning
import Support

public struct RunSummary: Codable, Sendable {
    public struct Layer: Codable, Sendable {
        public var layer: Int
        public var before: LayerShape
        public var after: LayerShape
        /// p5, p25, median, p75, p95 of the layer's MLP-channel importance scores (scored layers only).
        public var mlpScoreQuantiles: [Double]?
    }
    public struct Span: Codable, Sendable {
        public var job: String, rank: Int, phase: String, name: String, start: Double, seconds: Double
    }
    public var runDir: String
    public var model: String?
    public var criterion: String?
    public var ratio: Double?
    public var parametersBefore: Int?
    public var parametersAfter: Int?
    public var layers: [Layer]
    /// dataset → perplexity of the original model, the pruned model and the tuned one.
    public var perplexity: [String: [String: Double]]
    /// (step, training loss, validation loss or nil)
    public var loss: [[Double?]]
    /// Seconds per phase per rank, by job ("prune", "tune").
    public var phaseSeconds: [String: [String: [String: Double]]]
    public var spans: [Span]
    /// Peak resident memory per rank of the prune job: the planner's prediction and the measured VmHWM.
    public struct RankMemory: Codable, Sendable {
        public var rank: Int, predictedBytes: Int?, measuredBytes: Int, peakPhase: String?
    }
    public var memory: [RankMemory]?
}

public enum RunReport {
    /// Reads what the run directory holds.
    public static func summarize(runDir: URL) throws -> RunSummary {
        let fm = FileManager.default
        var candidates = [runDir]
        for name in (try? fm.contentsOfDirectory(atPath: runDir.path))?.sorted() ?? [] {
            var isDir: ObjCBool = false
            let u = runDir.appendingPathComponent(name)
            if fm.fileExists(atPath: u.path, isDirectory: &isDir), isDir.boolValue { candidates.append(u) }
        }
        let pruneDir = candidates.first { fm.fileExists(atPath: $0.appendingPathComponent("plan.json").path) }
        let tuneDir = candidates.first { fm.fileExists(atPath: $0.appendingPathComponent("checkpoint.json").path) }
        guard pruneDir != nil || tuneDir != nil else {
            throw JobError.notAJob(path: runDir.path, reason: "no prune job (plan.json) or tune job (checkpoint.json) in it")
        }
        var s = RunSummary(runDir: runDir.path, layers: [], perplexity: [:], loss: [], phaseSeconds: [:], spans: [])
        if let d = pruneDir {
            let plan = try PrunePlan.read(from: d.appendingPathComponent("plan.json"))
            s.model = plan.model.path
            s.criterion = plan.settings.criterion.rawValue
            s.ratio = plan.resolvedRatio
            s.parametersBefore = plan.parametersBefore
            s.parametersAfter = plan.parametersAfter
            let byLayer = Dictionary(uniqueKeysWithValues: plan.layers.map { ($0.layer, $0) })
            s.layers = plan.model.layers.enumerated().map { i, shape in
                RunSummary.Layer(layer: i, before: shape, after: byLayer[i]?.pruned ?? shape,
                                 mlpScoreQuantiles: byLayer[i].map { quantiles($0.mlpScores) })
            }
            try addTrace(d.appendingPathComponent("trace.json"), job: "prune", to: &s)
            if let data = try? Data(contentsOf: d.appendingPathComponent("report.json")),
               let r = try? JSONDecoder().decode(ClusterPruneReport.self, from: data) {
                let plan = Dictionary(uniqueKeysWithValues: (r.memoryPlan?.ranks ?? []).map { ($0.rank, $0) })
                s.memory = r.perRank.map { .init(rank: $0.rank, predictedBytes: plan[$0.rank]?.peakBytes,
                                                 measuredBytes: $0.peakRSSBytes, peakPhase: plan[$0.rank]?.peakPhase) }
            }
        }
        if let d = tuneDir, let data = try? Data(contentsOf: d.appendingPathComponent("report.json")),
           let t = try? JSONDecoder().decode(TuneReport.self, from: data) {
            for (ds, v) in t.perplexityBefore { s.perplexity[ds, default: [:]]["pruned"] = v }
            for (ds, v) in t.perplexityAfter { s.perplexity[ds, default: [:]]["tuned"] = v }
            if let csv = try? String(contentsOfFile: URL(fileURLWithPath: t.out).appendingPathComponent("loss.csv").path, encoding: .utf8) {
                s.loss = lossPoints(csv)
            }
            try addTrace(d.appendingPathComponent("trace.json"), job: "tune", to: &s)
        }
        if let data = try? Data(contentsOf: runDir.appendingPathComponent("baseline.json")),
           let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
           let ppl = obj["perplexity"] as? [String: Double] {
            for (ds, v) in ppl { s.perplexity[ds, default: [:]]["original"] = v }
        }
        return s
    }

    /// Writes report.html and summary.json (the same numbers) into the run directory; returns the HTML's URL.
    @discardableResult
    public static func write(runDir: URL) throws -> URL {
        let s = try summarize(runDir: runDir)
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try enc.encode(s), to: runDir.appendingPathComponent("summary.json"))
        let html = runDir.appendingPathComponent("report.html")
        try AtomicFile.write(Data(render(s).utf8), to: html)
        return html
    }

    // MARK: - reading

    static func quantiles(_ v: [Double]) -> [Double] {
        let x = v.filter(\.isFinite).sorted()
        guard !x.isEmpty else { return [] }
        return [0.05, 0.25, 0.5, 0.75, 0.95].map { q in x[min(x.count - 1, Int((Double(x.count - 1) * q).rounded()))] }
    }

    static func lossPoints(_ csv: String) -> [[Double?]] {
        csv.split(separator: "\n").dropFirst().compactMap { line in
            let f = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard f.count >= 9, let step = Double(f[0]) else { return nil }
            return [step, Double(f[2]), Double(f[8])]
        }
    }

    static func addTrace(_ url: URL, job: String, to s: inout RunSummary) throws {
        guard let data = try? Data(contentsOf: url),
              let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let events = obj["traceEvents"] as? [[String: Any]] else { return }
        var secs: [String: [String: Double]] = [:]
        for e in events where e["ph"] as? String == "X" {
            let rank = e["pid"] as? Int ?? 0, phase = e["cat"] as? String ?? "?", name = e["name"] as? String ?? "?"
            let ts = (e["ts"] as? Double ?? 0) / 1e6, dur = (e["dur"] as? Double ?? 0) / 1e6
            s.spans.append(.init(job: job, rank: rank, phase: phase, name: name, start: ts, seconds: dur))
            secs["rank \(rank)", default: [:]][phase, default: 0] += dur
        }
        s.phaseSeconds[job] = secs
    }

    // MARK: - rendering

    static let phaseColors = ["load": "#8c564b", "start": "#7f7f7f", "importance": "#1f77b4",
                              "importance.reduce": "#17becf", "plan": "#9467bd", "write": "#2ca02c",
                              "train": "#ff7f0e", "export": "#bcbd22"]

    static func render(_ s: RunSummary) -> String {
        var body = "<h1>llmprune run</h1>\n<p>\(SVGChart.escape(s.runDir))</p>\n"
        var facts: [(String, String)] = []
        if let m = s.model { facts.append(("model", m)) }
        if let b = s.parametersBefore, let a = s.parametersAfter {
            facts.append(("parameters", String(format: "%ld → %ld (%.2f%% kept)", b, a, 100 * Double(a) / Double(b))))
        }
        if let c = s.criterion, let r = s.ratio { facts.append(("settings", "criterion \(c), ratio \(r)")) }
        body += "<table>" + facts.map { "<tr><th>\($0.0)</th><td>\(SVGChart.escape($0.1))</td></tr>" }.joined() + "</table>\n"
        if !s.layers.isEmpty {
            let labels = s.layers.map { "\($0.layer)" }
            body += section("Kept widths per layer", SVGChart.bars(
                labels: labels,
                series: [("MLP channels before", s.layers.map { Double($0.before.intermediateSize) }, "#c6dbef"),
                         ("after", s.layers.map { Double($0.after.intermediateSize) }, "#3182bd")],
                title: "MLP channels per layer", yLabel: "channels")
                + SVGChart.bars(
                    labels: labels,
                    series: [("query heads before", s.layers.map { Double($0.before.numHeads) }, "#fdd0a2"),
                             ("after", s.layers.map { Double($0.after.numHeads) }, "#e6550d"),
                             ("KV heads after", s.layers.map { Double($0.after.numKVHeads) }, "#31a354")],
                    title: "attention heads per layer", yLabel: "heads"))
            let scored = s.layers.filter { ($0.mlpScoreQuantiles?.count ?? 0) == 5 }
            if !scored.isEmpty {
                body += section("Importance score distribution per layer", SVGChart.boxes(
                    labels: scored.map { "\($0.layer)" }, quantiles: scored.map { $0.mlpScoreQuantiles! },
                    title: "MLP-channel importance (\(s.criterion ?? "")), p5 / p25 / median / p75 / p95",
                    yLabel: "score (log scale)"))
            }
        }
        if !s.perplexity.isEmpty {
            let ds = s.perplexity.keys.sorted(), stages = ["original", "pruned", "tuned"]
            let colors = ["original": "#7f7f7f", "pruned": "#d62728", "tuned": "#2ca02c"]
            let present = stages.filter { st in ds.contains { s.perplexity[$0]?[st] != nil } }
            body += section("Perplexity", SVGChart.bars(
                labels: ds, series: present.map { st in (st, ds.map { s.perplexity[$0]?[st] ?? .nan }, colors[st]!) },
                title: "perplexity (128-token windows)", yLabel: "perplexity")
                + "<table><tr><th>dataset</th>" + present.map { "<th>\($0)</th>" }.joined() + "</tr>"
                + ds.map { d in "<tr><td>\(d)</td>" + present.map { st in
                    s.perplexity[d]?[st].map { String(format: "<td>%.3f</td>", $0) } ?? "<td>–</td>" }.joined() + "</tr>" }.joined()
                + "</table>")
        }
        if !s.loss.isEmpty {
            let train = s.loss.compactMap { p in p[1].map { (x: p[0]!, y: $0) } }
            let val = s.loss.compactMap { p in p[2].map { (x: p[0]!, y: $0) } }
            var series = [SVGChart.Series(name: "training loss", points: train, color: "#1f77b4")]
            if !val.isEmpty { series.append(.init(name: "validation loss", points: val, color: "#d62728")) }
            body += section("LoRA loss", SVGChart.lines(series, title: "LoRA recovery", xLabel: "optimizer step",
                                                         yLabel: "loss (nats / token)"))
        }
        if let memory = s.memory, !memory.isEmpty {
            let mb = { (b: Int?) in b.map { Double($0) / 1_048_576 } ?? .nan }
            body += section("Peak memory per rank (prune job)", SVGChart.bars(
                labels: memory.map { "rank \($0.rank)" },
                series: [("predicted before loading", memory.map { mb($0.predictedBytes) }, "#9ecae1"),
                         ("measured (VmHWM)", memory.map { mb($0.measuredBytes) }, "#08519c")],
                title: "peak resident memory per rank", yLabel: "MiB")
                + "<table><tr><th>rank</th><th>predicted MiB</th><th>measured MiB</th><th>predicted / measured</th><th>peak phase</th></tr>"
                + memory.map { m in
                    String(format: "<tr><td>%d</td><td>%.1f</td><td>%.1f</td><td>%.3f</td><td>%@</td></tr>", m.rank,
                           mb(m.predictedBytes), mb(m.measuredBytes), mb(m.predictedBytes) / mb(m.measuredBytes),
                           SVGChart.escape(m.peakPhase ?? "–"))
                }.joined() + "</table>")
        }
        for job in ["prune", "tune"] {
            let spans = s.spans.filter { $0.job == job }
            guard !spans.isEmpty else { continue }
            let ranks = Array(Set(spans.map(\.rank))).sorted()
            let t0 = spans.map(\.start).min() ?? 0
            let chart = SVGChart.timeline(
                lanes: ranks.map { "rank \($0)" },
                spans: spans.map { (ranks.firstIndex(of: $0.rank)!, $0.start - t0, $0.start - t0 + $0.seconds, $0.name, $0.phase) },
                colors: phaseColors.filter { c in spans.contains { $0.phase == c.key } }, title: "\(job) job: spans per rank")
            let phases = Array(Set(spans.map(\.phase))).sorted()
            let table = "<table><tr><th>rank</th>" + phases.map { "<th>\($0) s</th>" }.joined() + "</tr>"
                + ranks.map { r in "<tr><td>\(r)</td>" + phases.map { p in
                    String(format: "<td>%.2f</td>", s.phaseSeconds[job]?["rank \(r)"]?[p] ?? 0) }.joined() + "</tr>" }.joined()
                + "</table>"
            body += section("Time per phase per rank (\(job))", chart + table)
        }
        return """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>llmprune report</title>
        <style>body{font-family:sans-serif;max-width:900px;margin:2em auto;color:#222}table{border-collapse:collapse;margin:.5em 0}
        td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}th{background:#f4f4f4}h2{margin-top:1.6em}
        svg{display:block;margin:.5em 0}</style></head>
        <body>
        \(body)
        </body></html>

        """
    }

    static func section(_ title: String, _ content: String) -> String {
        "<section><h2>\(SVGChart.escape(title))</h2>\n\(content)</section>\n"
    }
}
