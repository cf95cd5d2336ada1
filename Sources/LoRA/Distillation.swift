// Recovery by distillation: the pruned student learns the unpruned teacher's next-token distribution as well as
// the labels. Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (arXiv 1503.02531) §2, per
// scored prediction with student logits s, teacher logits t, label y, weight w and temperature T:
//     loss = (1 − w) · CE(s, y) + w · T² · KL(softmax(t/T) ‖ softmax(s/T))
// The T² keeps the soft term's gradient on the scale of the hard one as T changes (Hinton §2.1):
//     ∂loss/∂s = (1 − w) · (softmax(s) − onehot(y)) + w · T · (softmax(s/T) − softmax(t/T)).
// Minitron (Muralidharan et al., "Compact Language Models via Pruning and Knowledge Distillation", arXiv 2407.14679)
// recovers pruned LLMs with this logit term alone (forward KL, T = 1). Both terms cover exactly the predictions
// the CE covers (labels ≠ −100: the prompt is masked unless --train-on-inputs) and are divided by the same step-wide
// count of scored predictions, as transformers' loss with `num_items_in_batch`.
// The teacher runs forward per micro-batch with no gradient through `LlamaRunner` (the one `TransformerBlock`); only
// its final-normed hidden states [N × d_teacher] are kept, and its logits are formed per chunk of scored rows next
// to the student's, so no [tokens × vocab] array of either model is ever whole.
import Foundation
import LlamaModel
import TensorCore
import Tokenizer

/// The KD settings (`--kd-weight`, `--kd-temperature`).
public struct DistillationSettings: Sendable, Equatable, Codable {
    /// w: the share of the KD term; 1 − w stays on the labels' cross-entropy.
    public var weight: Double = 0.5
    /// T: both distributions are softened by it.
    public var temperature: Double = 1
    public init(weight: Double = 0.5, temperature: Double = 1) {
        self.weight = weight
        self.temperature = temperature
    }

    public func validate() throws {
        guard weight >= 0, weight <= 1 else { throw DistillationError.setting("kd-weight", "\(weight) is not in [0, 1]") }
        guard temperature > 0, temperature.isFinite else {
            throw DistillationError.setting("kd-temperature", "\(temperature) is not positive")
        }
    }

    /// The training objective of summed parts: ((1 − w)·Σ CE + w·Σ T²·KL) / predictions.
    public func objective(_ l: LossSum) -> Double {
        l.predictions > 0 ? ((1 - weight) * l.nll + weight * l.kd) / Double(l.predictions) : .nan
    }
}

/// A KD setting or teacher that cannot be used; the description names the flag.
public enum DistillationError: Error, CustomStringConvertible, Equatable {
    case setting(String, String)
    public var description: String {
        switch self {
        case .setting(let flag, let reason): return "--\(flag): \(reason)"
        }
    }
}

/// The frozen teacher of a distillation run: its weights (read-only), run forward with no gradient.
public final class Teacher {
    public let runner: LlamaRunner
    public let settings: DistillationSettings

    public init(weights: LlamaWeights, settings: DistillationSettings) throws {
        try settings.validate()
        runner = LlamaRunner(weights: weights)
        self.settings = settings
    }

    /// Why `teacher` cannot teach a student with `student`'s config and tokenizer (nil: it can): the logits must
    /// index the same tokens, so the vocabularies must agree in size and in every token's spelling.
    public static func incompatibility(student: LlamaConfig, studentTokenizer: BPETokenizer?, teacher: LlamaConfig,
                                       teacherTokenizer: BPETokenizer?) -> String? {
        if teacher.vocabSize != student.vocabSize {
            return "the teacher's vocabulary has \(teacher.vocabSize) tokens, the model's \(student.vocabSize)"
        }
        guard let st = studentTokenizer, let tt = teacherTokenizer else { return nil }
        if st.vocabularySize != tt.vocabularySize {
            return "the teacher's tokenizer has \(tt.vocabularySize) tokens, the model's \(st.vocabularySize)"
        }
        if let id = (0..<st.vocabularySize).first(where: { st.token(of: $0) != tt.token(of: $0) }) {
            return "another tokenizer: token \(id) is \(tt.token(of: id).map { "\"\($0)\"" } ?? "absent") in the "
                + "teacher, \(st.token(of: id).map { "\"\($0)\"" } ?? "absent") in the model"
        }
        return nil
    }

    /// The teacher's final-normed hidden states [batch·seqLen × d_teacher] for the micro-batch's tokens.
    func hiddenStates(_ b: TokenBatch) throws -> [Float] {
        try runner.hiddenStates(tokens: b.tokens, batch: b.batch, seqLen: b.seqLen)
    }

    /// logits[i, :] = the teacher's logits of row rows[i] (an index into `hidden`'s rows); [m × vocab].
    func logits(hidden: UnsafePointer<Float>, rows: ArraySlice<Int>, gather: UnsafeMutablePointer<Float>,
                into logits: UnsafeMutablePointer<Float>) {
        let c = runner.config, d = c.hiddenSize
        for (i, r) in rows.enumerated() { (gather + i * d).update(from: hidden + r * d, count: d) }
        (runner.weights.lmHead ?? runner.weights.embed).withUnsafeBufferPointer { w in
            BLAS.gemm(m: rows.count, n: c.vocabSize, k: d, a: gather, b: w.baseAddress!, bTransposed: true, c: logits)
        }
    }
}

/// The per-row loss and gradient (the formulas at the top of the file).
public enum DistillationLoss {
    /// For one scored row: returns (CE, T²·KL) and, when `gradientScale` is given, overwrites `s` with
    /// gradientScale · ∂loss/∂s. `t` (the teacher's logits) is overwritten with exp((t − max t)/T). Sums run in
    /// 8-lane floats (the exp of VectorMath) and are combined in Double.
    public static func row(student s: UnsafeMutablePointer<Float>, teacher t: UnsafeMutablePointer<Float>, count v: Int,
                           target y: Int, settings: DistillationSettings, gradientScale: Float?) -> (ce: Double, kd: Double) {
        typealias V = SIMD8<Float>
        let T = Float(settings.temperature), invT = 1 / T
        let ms = VectorMath.max(s, v), mt = VectorMath.max(t, v)
        // Zs = Σ e^(s − ms), ZsT = Σ e^((s − ms)/T), Zt = Σ e^((t − mt)/T); C = Σ e^((t − mt)/T) · (t − s)/T.
        var zs = V.zero, zsT = V.zero, zt = V.zero, cv = V.zero
        let msv = V(repeating: ms), mtv = V(repeating: mt), invTv = V(repeating: invT)
        var i = 0
        while i + 8 <= v {
            let sv = UnsafeRawPointer(s + i).loadUnaligned(as: V.self), tv = UnsafeRawPointer(t + i).loadUnaligned(as: V.self)
            zs += VectorMath.exp(sv - msv)
            zsT += VectorMath.exp((sv - msv) * invTv)
            let e = VectorMath.exp((tv - mtv) * invTv)
            zt += e
            cv += e * ((tv - sv) * invTv)
            UnsafeMutableRawPointer(t + i).storeBytes(of: e, as: V.self)
            i += 8
        }
        var Zs = Double(zs.sum()), ZsT = Double(zsT.sum()), Zt = Double(zt.sum()), C = Double(cv.sum())
        while i < v {
            Zs += Double(VectorMath.exp(s[i] - ms))
            ZsT += Double(VectorMath.exp((s[i] - ms) * invT))
            let e = VectorMath.exp((t[i] - mt) * invT)
            Zt += Double(e)
            C += Double(e) * Double((t[i] - s[i]) * invT)
            t[i] = e
            i += 1
        }
        let ce = Foundation.log(Zs) + Double(ms) - Double(s[y])
        // KL = Σ p log p − Σ p log q with log p = (t − mt)/T − log Zt, log q = (s − ms)/T − log ZsT.
        let kl = C / Zt + Double(ms - mt) * Double(invT) + Foundation.log(ZsT) - Foundation.log(Zt)
        let kd = Double(T) * Double(T) * max(kl, 0)
        guard let g = gradientScale else { return (ce, kd) }
        let w = Float(settings.weight)
        let aCE = g * (1 - w) / Float(Zs), aQ = g * w * T / Float(ZsT), aP = g * w * T / Float(Zt)
        let aCEv = V(repeating: aCE), aQv = V(repeating: aQ), aPv = V(repeating: aP)
        i = 0
        while i + 8 <= v {
            let sv = UnsafeRawPointer(s + i).loadUnaligned(as: V.self), e = UnsafeRawPointer(t + i).loadUnaligned(as: V.self)
            let out = aCEv * VectorMath.exp(sv - msv) + aQv * VectorMath.exp((sv - msv) * invTv) - aPv * e
            UnsafeMutableRawPointer(s + i).storeBytes(of: out, as: V.self)
            i += 8
        }
        while i < v {
            s[i] = aCE * VectorMath.exp(s[i] - ms) + aQ * VectorMath.exp((s[i] - ms) * invT) - aP * t[i]
            i += 1
        }
        s[y] -= g * (1 - w)
        return (ce, kd)
    }
}
