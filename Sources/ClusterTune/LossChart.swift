// The LoRA loss curve of loss.csv as an SVG: training loss per step, validation loss where measured.
import Foundation
import Support

enum LossChart {
    static func svg(csv: String) -> String {
        var train: [(x: Double, y: Double)] = [], val: [(x: Double, y: Double)] = []
        for line in csv.split(separator: "\n").dropFirst() {
            let f = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard f.count >= 9, let step = Double(f[0]) else { continue }
            if let l = Double(f[2]) { train.append((step, l)) }
            if let v = Double(f[8]) { val.append((step, v)) }
        }
        var series = [SVGChart.Series(name: "training loss", points: train, color: "#1f77b4")]
        if !val.isEmpty { series.append(.init(name: "validation loss", points: val, color: "#d62728")) }
        return SVGChart.lines(series, title: "LoRA recovery", xLabel: "optimizer step", yLabel: "loss (nats / token)")
    }
}
