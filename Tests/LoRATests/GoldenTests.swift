// LoRA training against torch + peft (scripts/reference/make_lora_fixtures.py): a tiny tied GQA Llama with
// heterogeneous layers, peft's own saved initial adapter, three optimizer steps of two micro-batches with
// masked prompts, warm-up schedule, clipping (step 2 clips) and AdamW with weight decay; and the same model with
// attention_bias and mlp_bias (Resources/bias: base biases in the forward, frozen).
import Foundation
import LlamaModel
import Testing
@testable import LoRA

@Suite(.serialized) struct GoldenTests {
    static let dirs = [LoRAFixtures.resources, LoRAFixtures.biasResources]

    static func setUp(_ dir: URL = LoRAFixtures.resources) throws -> (LoRAGolden, LoRATrainer, [TokenizedExample]) {
        let g = try LoRAFixtures.load(LoRAGolden.self, "lora_golden.json", in: dir)
        let model = try ModelLoader.load(path: dir.appendingPathComponent("model").path, tokenizer: false)
        let adapters = try PEFTFormat.load(from: dir.appendingPathComponent("adapter_init"), model: model.config)
        var o = TrainingOptions()
        o.learningRate = g.lr
        o.weightDecay = g.weight_decay
        o.maxGradNorm = g.max_grad_norm
        o.warmupSteps = g.warmup_steps
        o.microBatchSize = g.micro_batch_size
        o.batchSize = 4
        let trainer = try LoRATrainer(pass: try LoRAPass(base: model.weights, adapters: adapters), options: o,
                                      totalSteps: g.total_steps)
        return (g, trainer, g.examples.map { TokenizedExample(ids: $0.ids, labels: $0.labels) })
    }

    @Test func configFromPeftFile() throws {
        let (g, t, _) = try Self.setUp()
        let c = t.pass.adapters.config
        #expect(c.rank == g.rank && c.alpha == g.alpha && c.dropout == 0)
        #expect(c.targets == Set(LoRATarget.allCases))
        #expect(t.pass.adapters.slots.count == 2 * 7)
    }

    @Test(arguments: dirs) func lossGradientsAndThreeSteps(_ dir: URL) throws {
        let (g, t, ex) = try Self.setUp(dir)
        let biased = t.pass.base.layers.allSatisfy { $0.biasCount > 0 }
        #expect(biased == (dir == LoRAFixtures.biasResources))
        let a = t.pass.adapters, r = a.config.rank

        // step 1: loss and gradients before clipping
        let step1 = g.steps[0].examples.map { ex[$0] }
        let (loss, _) = try t.accumulate(step1)
        #expect(loss.predictions == g.steps[0].num_items_in_batch)
        let lossRel = abs(loss.mean - g.steps[0].loss) / g.steps[0].loss
        let gradRel = maxRelativeDiff(t.pass.flatGradients, try LoRAFixtures.flat("grads_step1.safetensors", like: a, in: dir),
                                      slots: a.slots, rank: r)
        let (norm1, lr1) = t.applyUpdate()
        let normRel = abs(norm1 - g.steps[0].grad_norm) / g.steps[0].grad_norm
        #expect(lr1 == g.steps[0].lr)
        var stepRel = [maxRelativeDiff(a.parameters, try LoRAFixtures.flat("adapter_step1.safetensors", like: a, in: dir),
                                       slots: a.slots, rank: r)]
        var lossRels = [lossRel], normRels = [normRel]
        for k in 1..<3 {
            let report = try t.trainStep(g.steps[k].examples.map { ex[$0] })
            #expect(report.step == k + 1)
            #expect(abs(report.learningRate - g.steps[k].lr) <= 1e-12)
            #expect((report.gradNorm > g.max_grad_norm) == g.steps[k].clipped)
            lossRels.append(abs(report.loss.mean - g.steps[k].loss) / g.steps[k].loss)
            normRels.append(abs(report.gradNorm - g.steps[k].grad_norm) / g.steps[k].grad_norm)
            stepRel.append(maxRelativeDiff(a.parameters, try LoRAFixtures.flat("adapter_step\(k + 1).safetensors", like: a, in: dir),
                                           slots: a.slots, rank: r))
        }
        print("golden vs torch+peft\(biased ? " (biases)" : ""): loss rel \(lossRels), grad-norm rel \(normRels), step-1 gradient max rel \(gradRel), "
              + "adapters after steps 1/2/3 max rel \(stepRel)")
        #expect(lossRels.max()! < 1e-4)
        #expect(normRels.max()! < 1e-4)
        #expect(gradRel < 1e-4)
        #expect(stepRel.max()! < 1e-4)
    }
}
