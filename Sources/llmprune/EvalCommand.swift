import Eval
import Foundation
import LlamaModel
import LoRA
import Support

enum EvalCommand {
    struct Report: Encodable {
        var model: String, dataset: String, file: String
        var result: PerplexityResult
        var idsSHA256: String
    }

    static func run(_ argv: [String]) throws {
        var a = try Arguments(argv, booleans: ["json", "quiet"])
        let path = try a.required("model"), dataset = try a.required("dataset")
        let adapter = a.string("adapter")
        var o = PerplexityOptions()
        o.seqLen = try a.int("seq-len", default: 128)!
        o.batch = try a.int("batch", default: 8)!
        o.maxWindows = try a.int("max-windows")
        let json = a.flag("json")
        o.quiet = a.flag("quiet") || json
        try CLI.applyThreads(&a)
        try a.finish()
        try o.validate()
        let file = try EvalDataset.resolve(dataset)
        let m = try CLI.loadModel(path, tokenizer: true)
        var weights = m.weights
        if let adapter {     // a peft LoRA adapter, folded in: W + (alpha/r)·B·A
            let adapters = try PEFTFormat.load(from: URL(fileURLWithPath: adapter), model: m.config)
            weights = try LoRAMerge.merged(base: m.weights, adapters: adapters)
        }
        let ids = m.tokenizer!.encode(try EvalDataset.text(of: file))
        let r = try Perplexity.evaluate(runner: LlamaRunner(weights: weights), ids: ids, options: o, source: file.path)
        if json {
            try CLI.printJSON(Report(model: m.path, dataset: dataset, file: file.path, result: r,
                                     idsSHA256: SHA256.hex(ids: ids)))
            return
        }
        print(String(format: "%@  ppl %.4f  nll %.6f  tokens %d  windows %d×%d  scored %d  %.1f tok/s",
                     dataset, r.perplexity, r.nllMean, r.tokens, r.windows, r.seqLen, r.scored, r.tokensPerSecond))
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
