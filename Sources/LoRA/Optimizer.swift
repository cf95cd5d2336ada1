// The update rule of the reference (HF Trainer, optim adamw_torch): global gradient-norm clipping as
// torch.nn.utils.clip_grad_norm_, torch.optim.AdamW (decoupled weight decay, bias correction), and
// transformers' get_linear_schedule_with_warmup. All act on the flat parameter/gradient layout.
import Foundation

/// torch.optim.AdamW, single-tensor path: scalars in double, element arithmetic in fp32 in torch's order.
public struct AdamW: Sendable {
    public var beta1: Double = 0.9
    public var beta2: Double = 0.999
    public var eps: Double = 1e-8
    public var weightDecay: Double
    public private(set) var step = 0
    public var m: [Float]      // exp_avg
    public var v: [Float]      // exp_avg_sq

    public init(parameterCount: Int, weightDecay: Double = 0) {
        self.weightDecay = weightDecay
        m = [Float](repeating: 0, count: parameterCount)
        v = [Float](repeating: 0, count: parameterCount)
    }

    /// The state after `step` steps with moments `m`, `v` (a checkpoint being resumed).
    public mutating func restore(step: Int, m: [Float], v: [Float]) {
        precondition(m.count == self.m.count && v.count == self.v.count)
        self.step = step
        self.m = m
        self.v = v
    }

    /// One step with learning rate `lr` (torch runs it also when lr is 0: moments and the step count advance).
    public mutating func update(_ params: inout [Float], gradients g: UnsafeBufferPointer<Float>, lr: Double) {
        precondition(params.count == m.count && g.count == m.count)
        step += 1
        let decay = Float(1 - lr * weightDecay)
        let oneMinusB1 = Float(1 - beta1), b2 = Float(beta2), oneMinusB2 = Float(1 - beta2)
        let bc1 = 1 - Foundation.pow(beta1, Double(step)), bc2 = 1 - Foundation.pow(beta2, Double(step))
        let stepSize = Float(lr / bc1), bc2Sqrt = Float(bc2.squareRoot()), epsF = Float(eps)
        let n = params.count
        params.withUnsafeMutableBufferPointer { p in
            m.withUnsafeMutableBufferPointer { m in
                v.withUnsafeMutableBufferPointer { v in
                    for i in 0..<n {
                        let gi = g[i]
                        p[i] *= decay
                        m[i] += (gi - m[i]) * oneMinusB1                   // lerp_(grad, 1 − β1)
                        v[i] = v[i] * b2 + oneMinusB2 * gi * gi            // mul_(β2).addcmul_(grad, grad, 1 − β2)
                        let denom = v[i].squareRoot() / bc2Sqrt + epsF
                        p[i] += -stepSize * (m[i] / denom)                 // addcdiv_(m, denom, −step_size)
                    }
                }
            }
        }
    }
}

public enum GradientClipping {
    /// torch.nn.utils.clip_grad_norm_(max_norm, norm_type 2): total = ‖g‖₂ over all parameters; every gradient is
    /// multiplied by min(1, maxNorm / (total + 1e-6)). Returns the norm before clipping.
    @discardableResult
    public static func clipGlobalNorm(_ g: UnsafeMutableBufferPointer<Float>, maxNorm: Double) -> Double {
        let total = squaredNorm(UnsafeBufferPointer(g)).squareRoot()
        clip(g, total: total, maxNorm: maxNorm)
        return total
    }

    /// Σ g², in double: one stage's share of the global norm (stages add theirs before `clip`).
    public static func squaredNorm(_ g: UnsafeBufferPointer<Float>) -> Double {
        var sum = 0.0
        for x in g { sum += Double(x) * Double(x) }
        return sum
    }

    /// Scales `g` by min(1, maxNorm / (total + 1e-6)), `total` being the norm over all parameters.
    public static func clip(_ g: UnsafeMutableBufferPointer<Float>, total: Double, maxNorm: Double) {
        let coef = min(1, maxNorm / (total + 1e-6))
        if coef < 1 {
            let c = Float(coef)
            for i in g.indices { g[i] *= c }
        }
    }
}

/// transformers.get_linear_schedule_with_warmup: lr·s/w during warm-up, then lr·(T − s)/(T − w), floored at 0.
/// Step s is the number of optimizer steps already taken (the first step uses s = 0).
public struct LinearWarmupSchedule: Sendable, Equatable {
    public var peak: Double
    public var warmupSteps: Int
    public var totalSteps: Int

    public init(peak: Double, warmupSteps: Int, totalSteps: Int) {
        self.peak = peak
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
    }

    public func learningRate(step s: Int) -> Double {
        if s < warmupSteps { return peak * Double(s) / Double(max(1, warmupSteps)) }
        return peak * max(0, Double(totalSteps - s) / Double(max(1, totalSteps - warmupSteps)))
    }
}
