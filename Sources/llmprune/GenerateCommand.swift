// `llmprune generate`: text from a prompt (or a chat message through the model's chat template), optionally with a
// peft LoRA adapter folded into the weights, greedy or sampled, streamed as it is produced. Prompt (prefill) and
// decode speed on stderr at the end, or everything as JSON.
import ChatTemplate
import Foundation
import Generation
import Tokenizer
import LlamaModel
import LoRA
import TensorCore

enum GenerateCommand {
    static let adapter = Flag<String>("adapter", "DIR", path: true,
                                      help: "a peft LoRA adapter (e.g. from `llmprune tune`), folded into the weights",
                                      parse: Parse.text)
    static let prompt = Flag<String>("prompt", "TEXT", help: "the text to continue (tokenized with the model's special\n"
                                     + "tokens, as transformers' tokenizer(TEXT))", parse: Parse.text)
    static let chat = Flag<String>("chat", "TEXT",
                                   help: "a user message, rendered through the model's chat template\n"
                                       + "with the assistant's turn opened (add_generation_prompt)", parse: Parse.text)
    static let maxNewTokens = Flag<Int>("max-new-tokens", "N", default: "128", help: "stop after N new tokens",
                                        parse: Parse.int(min: 1))
    static let minNewTokens = Flag<Int>("min-new-tokens", "N", default: "0",
                                        help: "no EOS before N new tokens (transformers' min_new_tokens)",
                                        parse: Parse.int(min: 0))
    static let temperature = Flag<Double>("temperature", "T", default: "0",
                                          help: "0: greedy (argmax); else sample from softmax(logits / T)",
                                          parse: Parse.double(.nonNegative))
    static let topP = Flag<Double>("top-p", "P", help: "sample from the smallest set of tokens whose probability\n"
                                   + "reaches P (transformers' TopPLogitsWarper)", parse: Parse.double(.closed(0, 1)))
    static let topK = Flag<Int>("top-k", "K", help: "sample from the K most likely tokens (TopKLogitsWarper)",
                                parse: Parse.int(min: 1))
    static let seed = Flag<Int>("seed", "S", default: "0", help: "seeds the sampling (llmprune's generator, not torch's)",
                                parse: Parse.int(min: 0))
    static let stream = Switch("stream", runtime: true, help: "print the text as it is generated (not with --json)")

    static let flags = CommandFlags(
        own: [CommonFlags.model.info, adapter.info, prompt.info, chat.info, maxNewTokens.info, minNewTokens.info,
              temperature.info,
              topP.info, topK.info, seed.info, stream.info, CommonFlags.threads.info, CommonFlags.quiet.info,
              CommonFlags.json.info],
        groups: [ComputeFlags.group])

    struct Report: Encodable {
        var model: String, adapter: String?, prompt: String, promptIds: [Int32], tokens: [Int32], text: String
        var stopReason: String, promptTokens: Int, newTokens: Int
        var prefillSeconds: Double, decodeSeconds: Double, prefillTokensPerSecond: Double, decodeTokensPerSecond: Double
        /// Processor time (user + system, all threads) from the first new token to the end: on a shared machine a
        /// steadier measure of the decode work than wall time.
        var decodeCPUSeconds: Double
        var compute: ComputeType    // the products' arithmetic (--compute)
    }

    /// User + system time of this process so far.
    static func cpuSeconds() -> Double {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6
    }

    static func run(_ argv: [String]) throws {
        var a = try Arguments(argv, accepting: flags.all)
        let path = try a.required("model")
        let adapterPath = try a.optional(adapter)
        let promptText = try a.optional(prompt), chatText = try a.optional(chat)
        var options = GenerationOptions()
        options.maxNewTokens = try a.value(maxNewTokens)
        options.minNewTokens = try a.value(minNewTokens)
        options.sampling = SamplingSettings(temperature: try a.value(temperature), topK: try a.optional(topK),
                                            topP: try a.optional(topP), seed: UInt64(try a.value(seed)))
        if let p = options.sampling.topP, p == 0 { throw UsageError("--top-p: 0 is not in (0, 1]") }
        let json = a.flag("json"), quiet = a.flag("quiet") || json, streaming = a.flag(stream) && !json
        let compute = try ComputeFlags.value(&a)
        try CLI.applyThreads(&a)
        try a.finish()
        switch (promptText, chatText) {
        case (nil, nil): throw UsageError("--prompt or --chat is required")
        case (.some, .some): throw UsageError("--prompt and --chat: give one of them, not both")
        default: break
        }
        try options.sampling.validate()

        let m = try CLI.loadModel(path, tokenizer: true)
        guard let tokenizer = m.tokenizer else { throw UsageError("--model: \(m.path) has no tokenizer") }
        var weights = m.weights
        if let adapterPath {
            let adapters = try PEFTFormat.load(from: URL(fileURLWithPath: adapterPath), model: m.config)
            weights = try LoRAMerge.merged(base: m.weights, adapters: adapters)
        }
        let ids: [Int32]
        let flag: String
        if let promptText {
            flag = prompt.info.name
            ids = tokenizer.encode(promptText)
        } else {
            flag = chat.info.name
            guard let source = try ModelDefaults.chatTemplate(m) else {
                throw UsageError("--chat: \(m.path) has no chat template (tokenizer.chat_template, chat_template.jinja or "
                                 + "tokenizer_config.json chat_template)")
            }
            var special: [String: String] = [:]
            for (name, id) in [("bos_token", tokenizer.bosId), ("eos_token", tokenizer.eosId), ("unk_token", tokenizer.unkId),
                               ("pad_token", tokenizer.padId)] {
                if let id, let t = tokenizer.token(of: id) { special[name] = t }
            }
            let rendered = try ChatTemplate(source).render(messages: [ChatMessage(role: "user", content: chatText!)],
                                                           addGenerationPrompt: true, specialTokens: special)
            // apply_chat_template tokenizes without adding special tokens: the template writes them.
            ids = tokenizer.encode(rendered, addSpecialTokens: false)
        }
        do { try Generator.checkPrompt(ids.count, config: m.config) } catch let e as GenerationError {
            throw UsageError("--\(flag): \(e)")
        }
        options.stopIds = try ModelDefaults.eosIds(m)

        var text = TextStream(tokenizer: tokenizer)
        var output = ""
        func emit(_ piece: String) {
            output += piece
            if streaming && !piece.isEmpty { FileHandle.standardOutput.write(Data(piece.utf8)) }
        }
        var cpuAtFirstToken: Double? = nil
        let r = try Generator(runner: try LlamaRunner(weights: weights, compute: compute)).generate(prompt: ids, options: options) { token in
            if cpuAtFirstToken == nil { cpuAtFirstToken = cpuSeconds() }
            emit(text.push(token))
        }
        let decodeCPU = cpuSeconds() - (cpuAtFirstToken ?? cpuSeconds())
        emit(text.finish())
        if json {
            try CLI.printJSON(Report(model: m.path, adapter: adapterPath, prompt: promptText ?? chatText!, promptIds: ids,
                                     tokens: r.tokens, text: output, stopReason: r.stopReason.rawValue,
                                     promptTokens: r.promptTokens, newTokens: r.tokens.count,
                                     prefillSeconds: r.prefillSeconds, decodeSeconds: r.decodeSeconds,
                                     prefillTokensPerSecond: r.prefillTokensPerSecond,
                                     decodeTokensPerSecond: r.decodeTokensPerSecond, decodeCPUSeconds: decodeCPU,
                                     compute: compute))
            return
        }
        if streaming { print("") } else { print(output) }
        if !quiet {
            let line = String(format: "prompt %d tokens, %.1f tok/s prefill; %d new tokens, %.1f tok/s decode; stop: %@\n",
                              r.promptTokens, r.prefillTokensPerSecond, r.tokens.count, r.decodeTokensPerSecond,
                              r.stopReason.rawValue)
            FileHandle.standardError.write(Data(line.utf8))
        }
    }
}
