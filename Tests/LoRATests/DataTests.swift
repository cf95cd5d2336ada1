// Alpaca data: the prompt template, tokenization and masking against post_training.py with the SmolLM2
// tokenizer, the validation split against numpy, JSON / JSONL loading and one-line errors for malformed files.
import Foundation
import LlamaModel
import Testing
import Tokenizer
@testable import LoRA

struct AlpacaTokens: Decodable {
    struct Record: Decodable { var index: Int; var cutoff: Int; var ids: [Int32]; var labels: [Int32] }
    struct Permutation: Decodable { var seed: UInt64; var n: Int; var permutation: [Int] }
    var eos_token_id: Int
    var records: [Record]
    var permutations: [Permutation]
}

struct DataTests {
    static func write(_ text: String, _ name: String = "data.json") throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lora-data-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let u = dir.appendingPathComponent(name)
        try Data(text.utf8).write(to: u)
        return u.path
    }

    static func error(_ text: String, _ name: String = "data.json") throws -> String {
        let path = try write(text, name)
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        do { _ = try AlpacaData.load(path: path); return "loaded" } catch {
            #expect("\(error)".hasPrefix(path + ": "), "error names the file: \(error)")
            #expect(!"\(error)".contains("\n"))
            print("malformed data error: \(error)")
            return "\(error)"
        }
    }

    @Test func promptTemplate() {
        #expect(AlpacaData.prompt(instruction: "Add.", input: "1, 2", output: "3") ==
            "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\nAdd.\n\n### Input:\n1, 2\n\n### Response:\n3")
        #expect(AlpacaData.prompt(instruction: "Say hi.", input: "") ==
            "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nSay hi.\n\n### Response:\n")
    }

    @Test func loadsArrayAndJSONLines() throws {
        let arr = try AlpacaData.load(path: try Self.write(#"[{"instruction":"a","input":"b","output":"c"},{"instruction":"d","output":"e","input":null}]"#))
        #expect(arr == [AlpacaRecord(instruction: "a", input: "b", output: "c"), AlpacaRecord(instruction: "d", output: "e")])
        let lines = try AlpacaData.load(path: try Self.write("{\"instruction\":\"a\",\"input\":\"\",\"output\":\"c\"}\n\n{\"instruction\":\"x\",\"output\":\"y\"}\n", "d.jsonl"))
        #expect(lines == [AlpacaRecord(instruction: "a", output: "c"), AlpacaRecord(instruction: "x", output: "y")])
        let all = try AlpacaData.load(path: LoRAFixtures.alpaca.path)
        #expect(all.count == 1000)
    }

    @Test func malformedFiles() throws {
        #expect(try Self.error("").contains("empty file"))
        #expect(try Self.error("[1, 2").contains("not valid JSON"))
        #expect(try Self.error("[]").contains("no records"))
        #expect(try Self.error("\"text\"").contains("expected a JSON array"))
        #expect(try Self.error(#"[{"instruction":"a","output":"b"}, 3]"#).contains("record 1: not a JSON object"))
        #expect(try Self.error(#"[{"input":"a","output":"b"}]"#).contains("record 0: missing \"instruction\""))
        #expect(try Self.error(#"[{"instruction":"a"}]"#).contains("record 0: missing \"output\""))
        #expect(try Self.error(#"[{"instruction":"a","input":5,"output":"b"}]"#).contains("record 0: \"input\" is not a string"))
        #expect(try Self.error("{\"instruction\":\"a\",\"output\":\"b\"}\n{\"instruction\": oops}\n", "x.jsonl").contains("line 2: not valid JSON"))
        #expect(try Self.error("{\"instruction\":\"a\",\"output\":\"b\"}\n[1]\n", "x.jsonl").contains("line 2: not a JSON object"))
        #expect { try AlpacaData.load(path: "/nonexistent/alpaca.json") } throws: { "\($0)" == "/nonexistent/alpaca.json: cannot read the file" }
    }

    @Test func validationSplitIsNumpys() throws {
        let golden = try LoRAFixtures.load(AlpacaTokens.self, "alpaca_tokens.json")
        for p in golden.permutations {
            var rng = NumpyRandom(seed: p.seed)
            #expect(rng.permutation(p.n) == p.permutation, "default_rng(\(p.seed)).permutation(\(p.n))")
        }
        let p1000 = golden.permutations.first { $0.seed == 42 && $0.n == 1000 }!
        let (train, val) = try AlpacaData.split(count: 1000, validationSize: 200)
        #expect(val == Array(p1000.permutation[..<200]) && train == Array(p1000.permutation[200...]))
        #expect(try AlpacaData.split(count: 5, validationSize: 0) == (Array(0..<5), []))
        #expect(throws: LoRAError.self) { try AlpacaData.split(count: 5, validationSize: 5) }
    }

    @Test(.enabled(if: LoRAFixtures.smolExists, "SmolLM2 GGUF not present"))
    func tokenizationMatchesReference() throws {
        let golden = try LoRAFixtures.load(AlpacaTokens.self, "alpaca_tokens.json")
        let tok = try ModelLoader.loadStage(path: LoRAFixtures.smolGGUF.path, layers: 0..<0, embedding: false, head: false).tokenizer!
        #expect(tok.eosId == golden.eos_token_id)
        let data = try AlpacaData.load(path: LoRAFixtures.alpaca.path)
        var checked = Set<Int>()
        for r in golden.records {
            let ex = AlpacaTokenization(tokenizer: tok, cutoff: r.cutoff).example(data[r.index])
            #expect(ex.ids == r.ids, "record \(r.index) cutoff \(r.cutoff): ids")
            #expect(ex.labels == r.labels, "record \(r.index) cutoff \(r.cutoff): labels")
            checked.insert(r.cutoff)
        }
        #expect(checked == [256, 66, 40])
        // train_on_inputs: labels are the ids
        let all = AlpacaTokenization(tokenizer: tok, cutoff: 256, trainOnInputs: true).example(data[0])
        #expect(all.labels == all.ids && all.ids.last == Int32(golden.eos_token_id))
    }
}

struct OptimizerTests {
    @Test func linearScheduleWithWarmup() {
        let s = LinearWarmupSchedule(peak: 1e-3, warmupSteps: 4, totalSteps: 12)
        let lrs = (0...13).map { s.learningRate(step: $0) }
        #expect(lrs[0] == 0 && lrs[2] == 5e-4 && lrs[4] == 1e-3)
        #expect(abs(lrs[8] - 5e-4) < 1e-15 && lrs[12] == 0 && lrs[13] == 0)
        #expect(LinearWarmupSchedule(peak: 1, warmupSteps: 0, totalSteps: 4).learningRate(step: 0) == 1)
    }

    @Test func clipGradNormAsTorch() {
        var g: [Float] = [3, 4, 0]
        let n = g.withUnsafeMutableBufferPointer { GradientClipping.clipGlobalNorm($0, maxNorm: 1) }
        #expect(n == 5)
        #expect(abs(g[0] - Float(3 / (5 + 1e-6))) < 1e-7 && abs(g[1] - Float(4 / (5 + 1e-6))) < 1e-7)
        var h: [Float] = [0.3, 0.4]
        _ = h.withUnsafeMutableBufferPointer { GradientClipping.clipGlobalNorm($0, maxNorm: 1) }
        #expect(h == [0.3, 0.4])
    }

    @Test func adamWFirstStepAndZeroLearningRate() {
        var opt = AdamW(parameterCount: 2, weightDecay: 0.5)
        var p: [Float] = [1, -2]
        let g: [Float] = [0.1, -0.3]
        g.withUnsafeBufferPointer { opt.update(&p, gradients: $0, lr: 0) }
        #expect(p == [1, -2] && opt.step == 1 && opt.m != [0, 0])     // moments advance at lr 0
        var fresh = AdamW(parameterCount: 2, weightDecay: 0.5)
        var q: [Float] = [1, -2]
        g.withUnsafeBufferPointer { fresh.update(&q, gradients: $0, lr: 0.1) }
        // step 1: m̂ = g, v̂ = g², update = lr·g/(|g| + eps) ≈ lr·sign(g), after decay p·(1 − lr·wd)
        #expect(abs(q[0] - (1 * 0.95 - 0.1)) < 1e-6 && abs(q[1] - (-2 * 0.95 + 0.1)) < 1e-6)
    }

    @Test func trainingPlanGroupsMicroBatches() {
        var o = TrainingOptions()
        o.batchSize = 8; o.microBatchSize = 3     // 2 micro-batches (6 examples) per step
        #expect(o.accumulationSteps == 2)
        #expect(TrainingPlan.stepsPerEpoch(examples: 20, options: o) == 4)   // 7 micro-batches → 4 steps
        let steps = TrainingPlan.steps(examples: 20, epoch: 0, options: o)
        #expect(steps.map(\.count) == [6, 6, 6, 2])
        #expect(Set(steps.flatMap { $0 }) == Set(0..<20))
        #expect(TrainingPlan.steps(examples: 20, epoch: 1, options: o) != steps)
        #expect(TrainingPlan.steps(examples: 20, epoch: 0, options: o) == steps)
    }
}
