import Eval
import Foundation
import LlamaModel
import LoRA
import Support
import TensorCore
import Tokenizer

enum EvalCommand {
    struct Report: Encodable {
        var model: String, dataset: String, file: String
        var result: PerplexityResult
        var idsSHA256: String
        var peakRSSMB: Double       // the process's peak resident memory: attention scores are blocked, so it stays
                                    // bounded at any window length within the context
        var compute: ComputeType    // the products' arithmetic (--compute)
    }

    static let dataset = Flag<String>("dataset", "wikitext2|ptb|ptb-valid|FILE", path: true, help: "the text",
                                      parse: Parse.text)
    static let seqLen = Flag<Int>("seq-len", "N", default: "128",
                                  help: "window length (non-overlapping windows of the tokenized text; at most the\nmodel's context)",
                                  parse: Parse.int())
    static let batch = Flag<Int>("batch", "N", default: "8", help: "windows per forward", parse: Parse.int())
    static let maxWindows = Flag<Int>("max-windows", "N", help: "only the first N windows", parse: Parse.int())
    static let alsoFirst = Flag<Int>("also-first", "N",
                                     help: "also report the first N windows' perplexity, from the same pass (the\nnumber --max-windows N gives)",
                                     parse: Parse.int())
    static let adapter = Flag<String>("adapter", "DIR", path: true, help: "a peft LoRA adapter, folded into the weights first",
                                      parse: Parse.text)
    static let flags = CommandFlags(
        own: [CommonFlags.model.info, dataset.info, seqLen.info, maxWindows.info, alsoFirst.info, batch.info, adapter.info,
              CommonFlags.threads.info, CommonFlags.json.info, CommonFlags.quiet.info],
        groups: [ComputeFlags.group])

    static func run(_ argv: [String]) throws {
        var a = try Arguments(argv, accepting: flags.all)
        let path = try a.required("model"), dataset = try a.required("dataset")
        let compute = try ComputeFlags.value(&a)
        let adapter = try a.optional(adapter)
        var o = PerplexityOptions()
        o.seqLen = try a.value(seqLen)
        o.batch = try a.value(batch)
        o.maxWindows = try a.optional(maxWindows)
        o.alsoFirst = try a.optional(alsoFirst)
        let json = a.flag("json")
        o.quiet = a.flag("quiet") || json
        try CLI.applyThreads(&a)
        try a.finish()
        try o.validate()
        try CLI.checkContext(seqLen.info.name, o.seqLen, try ModelLoader.config(path: path))
        let file = try EvalDataset.resolve(dataset)
        let m = try CLI.loadModel(path, tokenizer: true)
        var weights = m.weights
        if let adapter {     // a peft LoRA adapter, folded in: W + (alpha/r)·B·A
            let adapters = try PEFTFormat.load(from: URL(fileURLWithPath: adapter), model: m.config)
            weights = try LoRAMerge.merged(base: m.weights, adapters: adapters)
        }
        let ids = m.tokenizer!.encode(try EvalDataset.text(of: file))
        let r = try Perplexity.evaluate(runner: try LlamaRunner(weights: weights, compute: compute), ids: ids, options: o, source: file.path)
        if json {
            try CLI.printJSON(Report(model: m.path, dataset: dataset, file: file.path, result: r,
                                     idsSHA256: SHA256.hex(ids: ids), peakRSSMB: CLI.peakRSSMB(), compute: compute))
            return
        }
        print(String(format: "%@  ppl %.4f  nll %.6f  tokens %d  windows %d×%d  scored %d  %.1f tok/s  peak RSS %.0f MB%@%@",
                     dataset, r.perplexity, r.nllMean, r.tokens, r.windows, r.seqLen, r.scored, r.tokensPerSecond,
                     CLI.peakRSSMB(), compute == .fp32 ? "" : "  compute \(compute.rawValue)",
                     r.first.map { String(format: "  first %d windows: ppl %.4f", $0.windows, $0.perplexity) } ?? ""))
    }
}

enum TokenizeCommand {
    struct Report: Encodable { var dataset: String, file: String, tokens: Int, sha256: String, seconds: Double }

    static func run(_ argv: [String]) throws {
        var a = try Arguments(argv, booleans: ["json"])
        let path = try a.required("model"), dataset = try a.required("dataset")
        let out = a.string("out"), json = a.flag("json")
        try a.finish()
        let file = try EvalDataset.resolve(dataset)
        let tokenizer = try ModelLoader.tokenizer(path: path)      // no weights: any size of model
        let text = try EvalDataset.text(of: file)
        let t0 = Date()
        let ids = tokenizer.encode(text)
        let secs = Date().timeIntervalSince(t0)
        if let out { try AtomicFile.write(ids.withUnsafeBytes { Data($0) }, to: URL(fileURLWithPath: out)) }
        let r = Report(dataset: dataset, file: file.path, tokens: ids.count, sha256: SHA256.hex(ids: ids), seconds: secs)
        if json { try CLI.printJSON(r) } else {
            print(String(format: "%@  %d tokens  sha256 %@  %.2f s", dataset, r.tokens, r.sha256, secs))
        }
    }
}
