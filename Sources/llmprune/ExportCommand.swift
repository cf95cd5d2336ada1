import Foundation
import LlamaModel
import ModelExport
import Support

/// `llmprune export`: any model llmprune reads as one GGUF file for llama.cpp, streamed tensor by tensor.
enum ExportCommand {
    static let out = Flag<String>("out", "FILE.gguf", path: true, help: "the GGUF file to write (aside, then renamed)",
                                  parse: Parse.text)
    static let type = Flag<GGUFOutputType>("type", "T", default: GGUFOutputType.f16.rawValue,
        help: "f32|f16|bf16|q8_0: the 2-D weights (norms, biases, rope_freqs stay f32;\nq8_0 rows not a multiple of 32 fall back to f16)",
        parse: Parse.choice(GGUFOutputType.self))
    static let flags = CommandFlags(
        own: [CommonFlags.model.info, out.info, type.info, CommonFlags.force.info, CommonFlags.quiet.info, CommonFlags.json.info],
        groups: [])

    static func run(_ argv: [String]) throws {
        var a = try Arguments(argv, accepting: flags.all)
        let path = try a.required("model")
        let target = URL(fileURLWithPath: try a.required("out")).standardizedFileURL
        let outputType = try a.value(type)
        let force = a.flag(CommonFlags.force), json = a.flag(CommonFlags.json)
        let quiet = a.flag(CommonFlags.quiet) || json
        try a.finish()
        try GGUFExport.checkTarget(target, force: force)    // before opening anything: a refusal costs nothing
        let checkpoint = try Checkpoint.open(path: path)
        let t0 = Date()
        let layout = try GGUFExport.layout(checkpoint, type: outputType)
        let bar = ProgressBar(total: layout.byteCount, label: "export", unit: "B", quiet: quiet)
        let summary = try GGUFExport.write(checkpoint, to: target, type: outputType, force: force, layout: layout) {
            bar.advance(by: $0)
        }
        bar.finish()
        if json {
            struct Report: Encodable { var export: GGUFExportSummary; var seconds: Double; var peakRSSMB: Double }
            try CLI.printJSON(Report(export: summary, seconds: Date().timeIntervalSince(t0), peakRSSMB: CLI.peakRSSMB()))
            return
        }
        var line = String(format: "%@: arch %@, %@, %d tensors, %.1f MB, %d parameters, %.1f s, peak RSS %.0f MB",
                          summary.path, summary.architecture, summary.type, summary.tensors, Double(summary.bytes) / 1e6,
                          summary.parameters, Date().timeIntervalSince(t0), CLI.peakRSSMB())
        if !summary.fallbacksToF16.isEmpty {
            line += "; \(summary.fallbacksToF16.count) tensor(s) in f16 (rows not whole q8_0 blocks)"
        }
        print(line)
    }
}
