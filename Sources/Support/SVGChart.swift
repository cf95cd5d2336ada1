// Small self-contained SVG line charts (no scripts, no external fonts): the LoRA loss curve and the report's
// charts. Values that are not finite are skipped.
import Foundation

public enum SVGChart {
    public struct Series {
        public var name: String
        public var points: [(x: Double, y: Double)]
        public var color: String
        public init(name: String, points: [(x: Double, y: Double)], color: String) {
            self.name = name
            self.points = points
            self.color = color
        }
    }

    /// A line chart of `series` with axes, 5 ticks each, a title and a legend.
    public static func lines(_ series: [Series], title: String, xLabel: String, yLabel: String,
                             width: Double = 640, height: Double = 360) -> String {
        let pts = series.flatMap(\.points).filter { $0.x.isFinite && $0.y.isFinite }
        let (x0, x1) = range(pts.map(\.x)), (y0, y1) = range(pts.map(\.y))
        let left = 64.0, right = 16.0, top = 32.0, bottom = 44.0
        func sx(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * (width - left - right) }
        func sy(_ y: Double) -> Double { height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom) }
        var out = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="11">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(Int(width / 2))" y="18" text-anchor="middle" font-size="13">\(escape(title))</text>

        """
        for i in 0...4 {
            let fx = x0 + (x1 - x0) * Double(i) / 4, fy = y0 + (y1 - y0) * Double(i) / 4
            out += "<line x1=\"\(f(sx(fx)))\" y1=\"\(f(height - bottom))\" x2=\"\(f(sx(fx)))\" y2=\"\(f(top))\" stroke=\"#eee\"/>"
            out += "<text x=\"\(f(sx(fx)))\" y=\"\(f(height - bottom + 14))\" text-anchor=\"middle\">\(tick(fx))</text>\n"
            out += "<line x1=\"\(f(left))\" y1=\"\(f(sy(fy)))\" x2=\"\(f(width - right))\" y2=\"\(f(sy(fy)))\" stroke=\"#eee\"/>"
            out += "<text x=\"\(f(left - 4))\" y=\"\(f(sy(fy) + 4))\" text-anchor=\"end\">\(tick(fy))</text>\n"
        }
        out += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(width - left - right))\" height=\"\(f(height - top - bottom))\" fill=\"none\" stroke=\"#888\"/>\n"
        out += "<text x=\"\(f((left + width - right) / 2))\" y=\"\(f(height - 8))\" text-anchor=\"middle\">\(escape(xLabel))</text>\n"
        out += "<text x=\"14\" y=\"\(f((top + height - bottom) / 2))\" text-anchor=\"middle\" transform=\"rotate(-90 14 \(f((top + height - bottom) / 2)))\">\(escape(yLabel))</text>\n"
        for (i, s) in series.enumerated() {
            let p = s.points.filter { $0.x.isFinite && $0.y.isFinite }.map { "\(f(sx($0.x))),\(f(sy($0.y)))" }
            if p.count > 1 {
                out += "<polyline fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"1.5\" points=\"\(p.joined(separator: " "))\"/>\n"
            } else if let only = p.first {
                let xy = only.split(separator: ",")
                out += "<circle cx=\"\(xy[0])\" cy=\"\(xy[1])\" r=\"3\" fill=\"\(s.color)\"/>\n"
            }
            out += "<text x=\"\(f(left + 8))\" y=\"\(f(top + 14 + 14 * Double(i)))\" fill=\"\(s.color)\">\(escape(s.name))</text>\n"
        }
        return out + "</svg>\n"
    }

    /// Grouped bars: one group per label, one bar per series (values[series][group]); `log` uses a log10 axis.
    public static func bars(labels: [String], series: [(name: String, values: [Double], color: String)], title: String,
                            yLabel: String, log: Bool = false, width: Double = 640, height: Double = 320) -> String {
        let all = series.flatMap(\.values).filter { $0.isFinite && (!log || $0 > 0) }
        let top = all.max() ?? 1
        let y0 = log ? Foundation.log10(max(all.min() ?? 1, 1e-30)) - 0.1 : 0.0
        let y1 = log ? Foundation.log10(top) + 0.1 : top * 1.1
        let left = 64.0, right = 16.0, topM = 32.0, bottom = 56.0
        let plotW = width - left - right, plotH = height - topM - bottom
        func sy(_ v: Double) -> Double {
            let t = log ? Foundation.log10(max(v, 1e-30)) : v
            return height - bottom - max(0, (t - y0) / (y1 - y0)) * plotH
        }
        var out = header(width, height, title)
        for i in 0...4 {
            let t = y0 + (y1 - y0) * Double(i) / 4, v = log ? Foundation.pow(10, t) : t
            out += "<line x1=\"\(f(left))\" y1=\"\(f(sy(v)))\" x2=\"\(f(width - right))\" y2=\"\(f(sy(v)))\" stroke=\"#eee\"/>"
            out += "<text x=\"\(f(left - 4))\" y=\"\(f(sy(v) + 4))\" text-anchor=\"end\">\(tick(v))</text>\n"
        }
        let groupW = plotW / Double(max(labels.count, 1)), barW = groupW * 0.8 / Double(max(series.count, 1))
        let every = max(1, labels.count / 16)
        for (g, label) in labels.enumerated() {
            let gx = left + Double(g) * groupW + groupW * 0.1
            for (k, s) in series.enumerated() where g < s.values.count && s.values[g].isFinite {
                let y = sy(s.values[g])
                out += "<rect x=\"\(f(gx + Double(k) * barW))\" y=\"\(f(y))\" width=\"\(f(max(barW - 1, 0.5)))\" height=\"\(f(height - bottom - y))\" fill=\"\(s.color)\"><title>\(escape(label)) \(escape(s.name)): \(tick(s.values[g]))</title></rect>"
            }
            if g % every == 0 {
                out += "<text x=\"\(f(gx + groupW * 0.4))\" y=\"\(f(height - bottom + 14))\" text-anchor=\"middle\">\(escape(label))</text>\n"
            }
        }
        out += axes(left: left, top: topM, width: width - left - right, height: plotH, xLabel: "", yLabel: yLabel,
                    totalHeight: height)
        out += legend(series.map { ($0.name, $0.color) }, x: left + 8, y: topM + 14)
        return out + "</svg>\n"
    }

    /// One box per label: whiskers at p5 and p95, box p25–p75, line at the median (log10 axis when `log`).
    public static func boxes(labels: [String], quantiles: [[Double]], title: String, yLabel: String, log: Bool = true,
                             width: Double = 640, height: Double = 320) -> String {
        let all = quantiles.flatMap { $0 }.filter { $0.isFinite && (!log || $0 > 0) }
        func t(_ v: Double) -> Double { log ? Foundation.log10(max(v, 1e-30)) : v }
        let (y0, y1) = range(all.map(t))
        let left = 64.0, right = 16.0, topM = 32.0, bottom = 56.0
        let plotW = width - left - right, plotH = height - topM - bottom
        func sy(_ v: Double) -> Double { height - bottom - (t(v) - y0) / (y1 - y0) * plotH }
        var out = header(width, height, title)
        for i in 0...4 {
            let tv = y0 + (y1 - y0) * Double(i) / 4, v = log ? Foundation.pow(10, tv) : tv
            out += "<line x1=\"\(f(left))\" y1=\"\(f(sy(v)))\" x2=\"\(f(width - right))\" y2=\"\(f(sy(v)))\" stroke=\"#eee\"/>"
            out += "<text x=\"\(f(left - 4))\" y=\"\(f(sy(v) + 4))\" text-anchor=\"end\">\(tick(v))</text>\n"
        }
        let w = plotW / Double(max(labels.count, 1)), every = max(1, labels.count / 16)
        for (i, q) in quantiles.enumerated() where q.count == 5 && q.allSatisfy({ $0.isFinite && (!log || $0 > 0) }) {
            let cx = left + (Double(i) + 0.5) * w, bw = w * 0.6
            out += "<line x1=\"\(f(cx))\" y1=\"\(f(sy(q[0])))\" x2=\"\(f(cx))\" y2=\"\(f(sy(q[4])))\" stroke=\"#555\"/>"
            out += "<rect x=\"\(f(cx - bw / 2))\" y=\"\(f(sy(q[3])))\" width=\"\(f(bw))\" height=\"\(f(max(sy(q[1]) - sy(q[3]), 0.5)))\" fill=\"#9ecae1\" stroke=\"#3182bd\"><title>\(escape(labels[i])): p5 \(tick(q[0])), p25 \(tick(q[1])), median \(tick(q[2])), p75 \(tick(q[3])), p95 \(tick(q[4]))</title></rect>"
            out += "<line x1=\"\(f(cx - bw / 2))\" y1=\"\(f(sy(q[2])))\" x2=\"\(f(cx + bw / 2))\" y2=\"\(f(sy(q[2])))\" stroke=\"#08519c\" stroke-width=\"2\"/>\n"
            if i % every == 0 {
                out += "<text x=\"\(f(cx))\" y=\"\(f(height - bottom + 14))\" text-anchor=\"middle\">\(escape(labels[i]))</text>\n"
            }
        }
        out += axes(left: left, top: topM, width: plotW, height: plotH, xLabel: "", yLabel: yLabel, totalHeight: height)
        return out + "</svg>\n"
    }

    /// A timeline: one row per lane, one rectangle per span (start and end in seconds), coloured by category.
    public static func timeline(lanes: [String], spans: [(lane: Int, start: Double, end: Double, name: String, category: String)],
                                colors: [String: String], title: String, width: Double = 800) -> String {
        let rowH = 22.0, left = 140.0, right = 16.0, topM = 32.0, bottom = 56.0
        let height = topM + bottom + rowH * Double(max(lanes.count, 1))
        let t1 = max(spans.map(\.end).max() ?? 1, 1e-6)
        func sx(_ t: Double) -> Double { left + t / t1 * (width - left - right) }
        var out = header(width, height, title)
        for i in 0...4 {
            let t = t1 * Double(i) / 4
            out += "<line x1=\"\(f(sx(t)))\" y1=\"\(f(topM))\" x2=\"\(f(sx(t)))\" y2=\"\(f(height - bottom))\" stroke=\"#eee\"/>"
            out += "<text x=\"\(f(sx(t)))\" y=\"\(f(height - bottom + 14))\" text-anchor=\"middle\">\(tick(t)) s</text>\n"
        }
        for (i, lane) in lanes.enumerated() {
            out += "<text x=\"\(f(left - 6))\" y=\"\(f(topM + rowH * Double(i) + 15))\" text-anchor=\"end\">\(escape(lane))</text>\n"
        }
        for s in spans {
            let y = topM + rowH * Double(s.lane) + 3
            out += "<rect x=\"\(f(sx(s.start)))\" y=\"\(f(y))\" width=\"\(f(max(sx(s.end) - sx(s.start), 0.5)))\" height=\"\(f(rowH - 6))\" fill=\"\(colors[s.category] ?? "#999")\"><title>\(escape(s.category)) / \(escape(s.name)): \(tick(s.end - s.start)) s</title></rect>\n"
        }
        out += legend(colors.keys.sorted().map { ($0, colors[$0]!) }, x: left, y: height - 18, horizontal: true)
        return out + "</svg>\n"
    }

    static func header(_ width: Double, _ height: Double, _ title: String) -> String {
        """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="11">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(Int(width / 2))" y="18" text-anchor="middle" font-size="13">\(escape(title))</text>

        """
    }

    static func axes(left: Double, top: Double, width: Double, height: Double, xLabel: String, yLabel: String,
                     totalHeight: Double) -> String {
        var out = "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(width))\" height=\"\(f(height))\" fill=\"none\" stroke=\"#888\"/>\n"
        if !xLabel.isEmpty {
            out += "<text x=\"\(f(left + width / 2))\" y=\"\(f(totalHeight - 8))\" text-anchor=\"middle\">\(escape(xLabel))</text>\n"
        }
        let my = top + height / 2
        out += "<text x=\"14\" y=\"\(f(my))\" text-anchor=\"middle\" transform=\"rotate(-90 14 \(f(my)))\">\(escape(yLabel))</text>\n"
        return out
    }

    static func legend(_ items: [(String, String)], x: Double, y: Double, horizontal: Bool = false) -> String {
        var out = "", cx = x, cy = y
        for (name, color) in items {
            out += "<rect x=\"\(f(cx))\" y=\"\(f(cy - 9))\" width=\"10\" height=\"10\" fill=\"\(color)\"/>"
            out += "<text x=\"\(f(cx + 14))\" y=\"\(f(cy))\">\(escape(name))</text>\n"
            if horizontal { cx += 24 + 7 * Double(name.count) } else { cy += 14 }
        }
        return out
    }

    static func range(_ v: [Double]) -> (Double, Double) {
        guard let lo = v.min(), let hi = v.max() else { return (0, 1) }
        if hi > lo { return (lo, hi) }
        return (lo - 0.5, hi + 0.5)
    }

    static func f(_ v: Double) -> String { String(format: "%.1f", v) }

    static func tick(_ v: Double) -> String {
        abs(v) >= 1000 || (abs(v) < 0.01 && v != 0) ? String(format: "%.2g", v) : String(format: "%.3g", v)
    }

    public static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
