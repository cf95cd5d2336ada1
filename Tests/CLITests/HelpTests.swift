// `llmprune --help` and `llmprune COMMAND --help` print their pages (exit 0), and docs/cli.md holds each of them
// verbatim (regenerate it with scripts/cli_doc.sh).
import Foundation
import Testing

struct HelpTests {
    static let commands = ["info", "eval", "tokenize", "bench", "plan", "apply", "prune", "cluster", "tune", "merge", "generate", "report", "synth", "export"]

    @Test func docsMatchTheHelpOfEveryCommand() throws {
        let doc = try String(contentsOf: packageRoot.appendingPathComponent("docs/cli.md"), encoding: .utf8)
        let overview = try llmprune(["--help"])
        #expect(overview.status == 0)
        #expect(doc.contains("```\n" + overview.stdout + "```"), "docs/cli.md lacks `llmprune --help` (run scripts/cli_doc.sh)")
        for c in Self.commands {
            #expect(overview.stdout.contains("  \(c) "), "overview does not list \(c)")
            let r = try llmprune([c, "--help"])
            #expect(r.status == 0 && r.stdout.hasPrefix("usage:"), "\(c): \(r.stderr)")
            #expect(doc.contains("## \(c)\n\n```\n" + r.stdout + "```"), "docs/cli.md lacks `llmprune \(c) --help`")
        }
    }
}
