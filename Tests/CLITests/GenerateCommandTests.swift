// `llmprune generate` through the real binary: greedy output equal to transformers' generate (the tiny GGUF here;
// SmolLM2 original, pruned and pruned + LoRA below, when models/ is present), streaming prints the same text, the
// JSON report; and bad input: a prompt longer than the context, an adapter for another model, flag values out of
// range, --prompt and --chat both or neither, --chat without a template.
import Foundation
import Testing

struct GenerateCommandTests {
    static let tinyGGUF = fixtures.appendingPathComponent("tiny.gguf").path
    static let generationResources = packageRoot.appendingPathComponent("Tests/GenerationTests/Resources")

    func report(_ args: [String]) throws -> [String: Any] {
        let r = try llmprune(["generate"] + args + ["--json"])
        #expect(r.status == 0, "\(args): \(r.stderr)")
        return (try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]) ?? [:]
    }

    @Test func greedyOnTheTinyGGUFIsTransformersGenerate() throws {
        let golden = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.generationResources
            .appendingPathComponent("tiny_generate.json"))) as! [String: Any]
        let e = (golden["models"] as! [[String: Any]]).first { $0["name"] as! String == "tiny_gguf" }!
        let j = try report(["--model", Self.tinyGGUF, "--prompt", "hello world", "--max-new-tokens", "8"])
        #expect(j["promptIds"] as? [Int] == e["prompt_ids"] as? [Int])
        #expect(j["tokens"] as? [Int] == e["generated"] as? [Int])
        #expect(j["stopReason"] as? String == "max_new_tokens")
        #expect(j["newTokens"] as? Int == 8)
        #expect((j["decodeTokensPerSecond"] as? Double ?? 0) > 0)
    }

    @Test func streamingPrintsTheSameTextAndSpeedGoesToStderr() throws {
        let args = ["generate", "--model", Self.tinyGGUF, "--prompt", "héllo", "--max-new-tokens", "12"]
        let plain = try llmprune(args), streamed = try llmprune(args + ["--stream"]), quiet = try llmprune(args + ["--quiet"])
        #expect(plain.status == 0 && streamed.status == 0 && quiet.status == 0, "\(plain.stderr) \(streamed.stderr)")
        #expect(plain.stdout == streamed.stdout && plain.stdout == quiet.stdout)
        #expect(plain.stderr.contains("tok/s prefill") && plain.stderr.contains("tok/s decode"))
        #expect(quiet.stderr.isEmpty)
        let j = try report(Array(args.dropFirst()))
        #expect((j["text"] as? String).map { $0 + "\n" } == plain.stdout)
    }

    // MARK: - bad input

    @Test func aPromptLongerThanTheContextIsRefused() throws {
        let long = String(repeating: "a", count: 300)     // one token per byte: 300 tokens, context 256
        let r = try llmprune(["generate", "--model", Self.tinyGGUF, "--prompt", long])
        expectCleanFailure(r, mentions: ["--prompt", "300 tokens", "256"])
        #expect(r.stdout.isEmpty)
    }

    @Test func anAdapterForAnotherModelIsRefused() throws {
        let adapter = packageRoot.appendingPathComponent("Tests/LoRATests/Resources/adapter_init").path
        let r = try llmprune(["generate", "--model", Self.tinyGGUF, "--adapter", adapter, "--prompt", "hi"])
        expectCleanFailure(r, mentions: ["adapter_model.safetensors"])
        #expect(r.stdout.isEmpty)
        expectCleanFailure(try llmprune(["generate", "--model", Self.tinyGGUF, "--adapter", "/nonexistent/adapter",
                                         "--prompt", "hi"]), mentions: ["/nonexistent/adapter"])
    }

    @Test(arguments: [
        (["--temperature", "abc"], "--temperature"), (["--temperature", "-1"], "--temperature"),
        (["--top-p", "1.5"], "--top-p"), (["--top-p", "0"], "--top-p"), (["--top-k", "0"], "--top-k"),
        (["--max-new-tokens", "0"], "--max-new-tokens"), (["--max-new-tokens", "x"], "--max-new-tokens"),
        (["--seed", "-3"], "--seed"), (["--max-new-tokens", "99999999999999999999"], "--max-new-tokens"), (["--threads", "0"], "--threads"), (["--frobnicate", "1"], "--frobnicate"),
    ])
    func badFlagValuesAreRefused(_ extra: [String], _ flag: String) throws {
        let r = try llmprune(["generate", "--model", Self.tinyGGUF, "--prompt", "hi"] + extra)
        expectCleanFailure(r, mentions: [flag])
        #expect(r.stdout.isEmpty)
    }

    @Test func promptAndChatBothOrNeitherAreRefused() throws {
        expectCleanFailure(try llmprune(["generate", "--model", Self.tinyGGUF]), mentions: ["--prompt", "--chat"])
        expectCleanFailure(try llmprune(["generate", "--model", Self.tinyGGUF, "--prompt", "a", "--chat", "b"]),
                           mentions: ["--prompt", "--chat"])
        expectCleanFailure(try llmprune(["generate", "--prompt", "a"]), mentions: ["--model"])
    }

    @Test func chatWithoutATemplateIsRefused() throws {
        expectCleanFailure(try llmprune(["generate", "--model", Self.tinyGGUF, "--chat", "hi"]),
                           mentions: ["--chat", "tiny.gguf", "chat template"])
    }

    // MARK: - SmolLM2: original, pruned (heterogeneous), pruned + LoRA against transformers / peft

    /// The 3 models × 3 prompts of generate_golden.py --smollm2, remade with the commands it recorded (prune and
    /// tune are deterministic), each generated greedily for 64 tokens and compared with transformers' tokens. Where
    /// they part, the transformers top-2 logit gap at that step is reported.
    @Test(.enabled(if: FlagTableTests.haveSmol, "needs models/smollm2 (scripts/setup.sh)"))
    func smolLM2GreedyIsTransformersGenerate() throws {
        let golden = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.generationResources
            .appendingPathComponent("smollm2_greedy.json"))) as! [String: Any]
        let s = Scratch()
        let subst = ["MODEL": FlagTableTests.smol, "PRUNED": s.url.appendingPathComponent("pruned").path,
                     "ALPACA": packageRoot.deletingLastPathComponent().appendingPathComponent("shared/data/alpaca/alpaca_data_1k.json").path,
                     "ADAPTER": s.url.appendingPathComponent("adapter").path]
        for step in ["prune", "tune"] {
            let args = (golden[step] as! [String]).map { subst[$0] ?? $0 }
            let r = try llmprune(args)
            #expect(r.status == 0, "\(step): \(r.stderr)")
        }
        let prompts = golden["prompts"] as! [[String: Any]]
        let results = golden["results"] as! [String: [[String: Any]]]
        let models: [(String, [String])] = [("original", ["--model", subst["MODEL"]!]),
                                            ("pruned", ["--model", subst["PRUNED"]!]),
                                            ("pruned_adapter", ["--model", subst["PRUNED"]!, "--adapter", subst["ADAPTER"]!])]
        var table: [String] = []
        for (name, modelArgs) in models {
            for (i, p) in prompts.enumerated() {
                let kind = p["kind"] as! String, text = p["text"] as! String
                let j = try report(modelArgs + ["--\(kind)", text, "--max-new-tokens", "64"])
                #expect(j["promptIds"] as? [Int] == p["prompt_ids"] as? [Int], "\(name) prompt \(i): prompt ids")
                let ours = j["tokens"] as? [Int] ?? [], ref = results[name]![i]["generated"] as! [Int]
                let gaps = results[name]![i]["top2_gaps"] as! [Double]
                let same = zip(ours, ref).prefix { $0 == $1 }.count
                if ours == ref {
                    table.append("\(name) / prompt \(i): identical (\(ours.count) tokens, min top-2 gap \(gaps.min()!))")
                } else {
                    table.append("\(name) / prompt \(i): first difference at new token \(same) (transformers' top-2 gap there "
                                 + "\(same < gaps.count ? gaps[same] : .nan))")
                }
                #expect(ours == ref, "\(name) prompt \(i): diverges at new token \(same)")
            }
        }
        print(table.joined(separator: "\n"))
    }
}
