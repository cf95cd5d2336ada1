import Formats
import Foundation
import LlamaModel
import ModelExport
import Support
import Tokenizer

/// `llmprune synth`: a random-weight Llama of a real shape as a sharded Hugging Face directory, streamed to disk.
enum SynthCommand {
    static func run(_ argv: [String]) throws {
        var a = try Arguments(argv, booleans: ["force", "quiet", "json"])
        let shapeText = try a.required("shape")
        guard let shape = SyntheticShape(rawValue: shapeText) else {
            throw UsageError("--shape: \"\(shapeText)\" is not one of " + SyntheticShape.allCases.map(\.rawValue).joined(separator: ", "))
        }
        let out = URL(fileURLWithPath: try a.required("out")).standardizedFileURL
        let dtypeText = a.string("dtype") ?? "bf16"
        guard let fileType = TensorDType(rawValue: dtypeText.lowercased()) else {
            throw UsageError("--dtype: \"\(dtypeText)\" is not bf16, f16 or f32")
        }
        let dtype = fileType.safetensorsName
        let seed = UInt64(try a.int("seed", default: 42, min: 0)!)
        let vocab = try a.int("vocab-size", min: 1)
        let shardText = a.string("shard-size") ?? "2048"
        guard let shardMB = Double(shardText), shardMB > 0 else {
            throw UsageError("--shard-size: \"\(shardText)\" is not a positive number of MB")
        }
        let tokenizerPath = a.string("tokenizer")
        let force = a.flag("force"), quiet = a.flag("quiet") || a.flag("json")
        try a.finish()
        let config = shape.config(vocabSize: vocab)
        try config.validate(source: "--shape \(shapeText)")
        // The tokenizer: a model's (default: the default model, if it was fetched), or none.
        var source = TokenizerSource.none
        let fallback = packageModel()
        if let p = tokenizerPath ?? fallback, p != "none" {
            source = try fittedTokenizer(try CLI.loadModel(p, tokenizer: true), vocabSize: config.vocabSize, quiet: quiet)
        }
        let staging = try HFExport.createStaging(for: out, tag: "synth-\(getpid())", force: force)
        do {
            let total = Synthesize.tensorSpecs(config, dtype: dtype).reduce(0) { $0 + $1.byteCount }
            let bar = ProgressBar(total: total, label: "synth", unit: "B", quiet: quiet)
            let shards = try Synthesize.writeWeights(config: config, dtype: dtype, seed: seed, into: staging,
                                                     maxShardBytes: Int(shardMB * 1_048_576)) { bar.advance(by: $0) }
            bar.finish()
            try HFExport.writeModelFiles(config: config, dtype: fileType, tokenizerSource: source, into: staging)
            try HFExport.commit(staging: staging, to: out, force: force)
            print("\(shapeText): \(config.parameterCount) parameters, \(dtype.lowercased()), \(shards.count) shard(s), "
                  + String(format: "%.2f GB of weights → ", Double(total) / 1e9) + out.path)
        } catch {
            try? FileManager.default.removeItem(at: staging)
            throw error
        }
    }

    /// The tokenizer files to write for `m`'s tokenizer on a model of `vocabSize` rows: as `TokenizerSource.of(m)`
    /// when every id fits, else the tokenizer restricted to the first `vocabSize` ids (written as tokenizer.json +
    /// tokenizer_config.json, also for a Hugging Face source, whose files would otherwise be copied verbatim), so
    /// that the directory never tokenizes text to an id outside its embedding.
    static func fittedTokenizer(_ m: LoadedModel, vocabSize: Int, quiet: Bool) throws -> TokenizerSource {
        guard let tok = m.tokenizer, tok.vocabularySize > vocabSize else { return .of(m) }
        let small: BPETokenizer
        do { small = try tok.restricted(toVocabularySize: vocabSize) } catch {
            throw UsageError("the tokenizer of \(m.path) does not fit vocab_size \(vocabSize) (pass --tokenizer PATH|none "
                             + "or --vocab-size): \(error)")
        }
        var chatTemplate = m.chatTemplate
        if m.format != "gguf" {   // a Hugging Face directory: its tokenizer_config.json's template, if any
            let url = URL(fileURLWithPath: m.path).appendingPathComponent("tokenizer_config.json")
            if let data = FileManager.default.contents(atPath: url.path),
               let c = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
                chatTemplate = c["chat_template"] as? String
            }
        }
        if !quiet {
            FileHandle.standardError.write(Data(("llmprune: note: tokenizer of \(m.path) cut from \(tok.vocabularySize) to "
                + "\(small.vocabularySize) tokens to fit vocab_size \(vocabSize) (ids < \(vocabSize) only)\n").utf8))
        }
        return .gguf(path: m.path, tokenizer: small, chatTemplate: chatTemplate)
    }

    /// The default model beside the checkout, when the set-up script fetched it.
    static func packageModel() -> String? {
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var dir = exe.deletingLastPathComponent()
        for _ in 0..<5 {
            let m = dir.appendingPathComponent("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
            if FileManager.default.fileExists(atPath: m.path) { return m.path }
            dir = dir.deletingLastPathComponent()
        }
        return nil
    }
}
