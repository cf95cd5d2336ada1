// A progress bar for long work, drawn on stderr with rate and ETA. Silent when stderr is not a TTY or when
// the caller asks for quiet, so logs and pipes stay clean.
import Foundation

public final class ProgressBar {
    public let total: Int
    public let label: String
    public let unit: String
    private let enabled: Bool
    private let start = Date()
    private var lastDraw = Date.distantPast
    public private(set) var done = 0
    /// Extra text drawn after the ETA (e.g. the current loss); empty by default.
    public var detail = ""

    /// - Parameters: total: units of work; unit: what one unit is called ("tok", "win").
    public init(total: Int, label: String, unit: String = "it", quiet: Bool = false) {
        self.total = max(total, 0)
        self.label = label
        self.unit = unit
        self.enabled = !quiet && isatty(STDERR_FILENO) != 0
    }

    public func advance(by n: Int = 1) {
        done += n
        guard enabled else { return }
        let now = Date()
        if done < total && now.timeIntervalSince(lastDraw) < 0.1 { return }
        lastDraw = now
        draw(now: now)
    }

    public func finish() {
        guard enabled else { return }
        draw(now: Date())
        FileHandle.standardError.write("\n".data(using: .utf8)!)
    }

    private func draw(now: Date) {
        let elapsed = max(now.timeIntervalSince(start), 1e-9)
        let rate = Double(done) / elapsed
        let frac = total > 0 ? min(Double(done) / Double(total), 1) : 0
        let width = 28
        let filled = Int(frac * Double(width))
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let line = String(format: "\r%@ %@ %3.0f%% %d/%d %@ %.1f %@/s ETA %@ ", label, bar, frac * 100, done,
                          total, unit, rate, unit, ProgressBar.clock(eta)) + (detail.isEmpty ? "" : detail + "  ")
        FileHandle.standardError.write(line.data(using: .utf8)!)
    }

    static func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60)
                         : String(format: "%d:%02d", s / 60, s % 60)
    }
}
