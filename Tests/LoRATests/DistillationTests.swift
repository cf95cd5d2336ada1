// Recovery by distillation against torch (scripts/reference/make_kd_fixtures.py): the KD loss and its gradient
// with respect to the student's logits for several (weight, temperature), and three LoRA optimizer steps of the
// golden student with a different (wider, untied) teacher of the same vocabulary.
import Foundation
import Formats
import LlamaModel
import Testing
@testable import LoRA

struct KDGolden: Decodable {
    struct Case: Decodable { var weight: Double; var temperature: Double; var ce: Double; var kd: Double; var loss: Double }
    struct Rows: Decodable { var targets: [Int]; var divisor: Double; var cases: [Case] }
    struct Step: Decodable {
        var examples: [Int]
        var loss: Double
        var ce_sum: Double
        var kd_sum: Double
        var num_items_in_batch: Int
        var grad_norm: Double
        var lr: Double
    }
    var rows: Rows
    var weight: Double
    var temperature: Double
    var steps: [Step]
}

@Suite(.serialized) struct DistillationTests {
    static let dir = LoRAFixtures.resources.appendingPathComponent("kd")

    @Test func rowLossAndGradientAgainstTorch() throws {
        let g = try LoRAFixtures.load(KDGolden.self, "kd_golden.json", in: Self.dir)
        let f = try SafetensorsFile(path: Self.dir.appendingPathComponent("kd_rows.safetensors").path)
        let s0 = try f.floats("student"), t0 = try f.floats("teacher")
        let rows = g.rows.targets.count, v = s0.count / rows
        var worst = (loss: 0.0, grad: 0.0)
        for (k, c) in g.rows.cases.enumerated() {
            var s = s0, t = t0
            let settings = DistillationSettings(weight: c.weight, temperature: c.temperature)
            var ce = 0.0, kd = 0.0
            s.withUnsafeMutableBufferPointer { sp in
                t.withUnsafeMutableBufferPointer { tp in
                    for r in 0..<rows {
                        let (a, b) = DistillationLoss.row(student: sp.baseAddress! + r * v, teacher: tp.baseAddress! + r * v,
                                                          count: v, target: g.rows.targets[r], settings: settings,
                                                          gradientScale: Float(1 / g.rows.divisor))
                        ce += a
                        kd += b
                    }
                }
            }
            let want = try f.floats("grad_\(k)")
            let scale = want.map { abs(Double($0)) }.max()!
            let gradRel = zip(s, want).map { abs(Double($0) - Double($1)) }.max()! / scale
            let lossRel = abs(settings.objective(LossSum(nll: ce, predictions: 1, kd: kd)) / g.rows.divisor - c.loss) / c.loss
            #expect(abs(ce - c.ce) / c.ce < 1e-5, "case \(k): CE \(ce) vs \(c.ce)")
            #expect(abs(kd - c.kd) / c.kd < 1e-4, "case \(k): KD \(kd) vs \(c.kd)")
            worst = (max(worst.loss, lossRel), max(worst.grad, gradRel))
        }
        print("KD rows vs torch (float64): loss max rel \(worst.loss), gradient max |Δ|/max|g| \(worst.grad)")
        #expect(worst.loss < 1e-5)
        #expect(worst.grad < 1e-5)
    }

    static func setUp(weight: Double, temperature: Double) throws -> (KDGolden, LoRATrainer, [TokenizedExample]) {
        let (lg, trainer, ex) = try GoldenTests.setUp()
        _ = lg
        let g = try LoRAFixtures.load(KDGolden.self, "kd_golden.json", in: Self.dir)
        let teacher = try ModelLoader.load(path: Self.dir.appendingPathComponent("teacher").path, tokenizer: false)
        trainer.teacher = try Teacher(weights: teacher.weights,
                                      settings: DistillationSettings(weight: weight, temperature: temperature))
        return (g, trainer, ex)
    }

    @Test func threeStepsWithTeacherAgainstTorch() throws {
        let g0 = try LoRAFixtures.load(KDGolden.self, "kd_golden.json", in: Self.dir)
        let (g, t, ex) = try Self.setUp(weight: g0.weight, temperature: g0.temperature)
        let a = t.pass.adapters, r = a.config.rank
        let settings = t.teacher!.settings
        var lossRels: [Double] = [], partRels: [Double] = [], normRels: [Double] = [], stepRels: [Double] = []
        var gradRel = 0.0
        for (k, step) in g.steps.enumerated() {
            let (loss, _) = try t.accumulate(step.examples.map { ex[$0] })
            #expect(loss.predictions == step.num_items_in_batch)
            if k == 0 {
                gradRel = maxRelativeDiff(t.pass.flatGradients,
                                          try LoRAFixtures.flat("grads_step1.safetensors", like: a, in: Self.dir),
                                          slots: a.slots, rank: r)
            }
            let (norm, lr) = t.applyUpdate()
            #expect(abs(lr - step.lr) <= 1e-12)
            lossRels.append(abs(settings.objective(loss) - step.loss) / step.loss)
            partRels.append(max(abs(loss.nll - step.ce_sum) / step.ce_sum, abs(loss.kd - step.kd_sum) / step.kd_sum))
            normRels.append(abs(norm - step.grad_norm) / step.grad_norm)
            stepRels.append(maxRelativeDiff(a.parameters,
                                            try LoRAFixtures.flat("adapter_step\(k + 1).safetensors", like: a, in: Self.dir),
                                            slots: a.slots, rank: r))
        }
        print("KD LoRA steps vs torch+peft: loss rel \(lossRels), CE/KD sums rel \(partRels), grad-norm rel \(normRels), "
              + "step-1 gradient max rel \(gradRel), adapters after steps 1/2/3 max rel \(stepRels)")
        #expect(lossRels.max()! < 1e-4)
        #expect(partRels.max()! < 1e-4)
        #expect(normRels.max()! < 1e-4)
        #expect(gradRel < 1e-4)
        #expect(stepRels.max()! < 1e-4)
    }

    /// Weight 0 keeps the teacher out of the gradient: the step equals plain cross-entropy training (the KD sum is
    /// still measured).
    @Test func weightZeroIsCrossEntropy() throws {
        let (g, kdTrainer, ex) = try Self.setUp(weight: 0, temperature: 2)
        let (_, ceTrainer, _) = try GoldenTests.setUp()
        let batch = g.steps[0].examples.map { ex[$0] }
        let (kdLoss, _) = try kdTrainer.accumulate(batch)
        let (ceLoss, _) = try ceTrainer.accumulate(batch)
        let a = kdTrainer.pass.flatGradients, b = ceTrainer.pass.flatGradients
        let diff = zip(a, b).map { abs($0 - $1) }.max()!, scale = b.map { abs($0) }.max()!
        #expect(abs(kdLoss.nll - ceLoss.nll) <= 1e-6 * ceLoss.nll)    // Double vs float sums of the same terms
        #expect(kdLoss.kd > 0 && ceLoss.kd == 0)
        #expect(diff <= 1e-5 * scale, "max |Δ| \(diff) of \(scale)")
    }

    @Test func settingsOutOfRangeNameTheFlag() {
        for (w, t, flag) in [(1.5, 1.0, "kd-weight"), (-0.1, 1.0, "kd-weight"), (0.5, 0.0, "kd-temperature"),
                             (0.5, -2.0, "kd-temperature")] {
            #expect(throws: DistillationError.self) { try DistillationSettings(weight: w, temperature: t).validate() }
            do { try DistillationSettings(weight: w, temperature: t).validate() } catch {
                #expect("\(error)".hasPrefix("--\(flag):"))
            }
        }
    }
}
