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
