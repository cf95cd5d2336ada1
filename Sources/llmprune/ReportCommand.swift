import Foundation
import Reporting

/// `llmprune report RUN_DIR`: report.html (inline SVG charts) and summary.json for a run (Sources/Reporting).
enum ReportCommand {
    static func run(_ argv: [String]) throws {
        guard argv.count == 1, !argv[0].hasPrefix("--") else { throw UsageError("usage: llmprune report RUN_DIR") }
        let html = try RunReport.write(runDir: URL(fileURLWithPath: argv[0]).standardizedFileURL)
        print("report       \(html.path) (and summary.json beside it)")
    }

    /// The report of a job directory just finished (prune or tune); a failure here only warns.
    static func afterJob(_ dir: String) -> String? {
        do { return try RunReport.write(runDir: URL(fileURLWithPath: dir)).path } catch {
            FileHandle.standardError.write(Data("llmprune: warning: no report for \(dir): \(error)\n".utf8))
            return nil
        }
    }
}
