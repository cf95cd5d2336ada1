// Which llama.cpp architecture computes a model exactly as llmprune does, or why none does. Read from the llama.cpp
// that llama-cpp-python 0.3.36 vendors (src/models/{llama,deci,qwen2,smollm3}.cpp, src/llama-model.cpp,
// src/llama-context.cpp, ggml's rope):
// - per-layer widths: only `deci` reads n_head(il), n_head_kv(il), n_ff(il) per layer; `llama`, `qwen2` and
//   `smollm3` size every layer from layer 0. deci loads q/k/v, o and MLP biases (all optional) and rope_freqs.
// - `qwen2` creates attn_q and attn_output as n_embd × n_embd: a Qwen2 with fewer query heads (pruned) is written as
//   `llama` (uniform) or `deci`, with its q/k/v biases, permuted like the weights (both use llama.cpp's normal RoPE).
// - sliding-window attention: none of these four graphs masks a window (llama.cpp keeps SWA for architectures
//   built for it, Gemma, Mistral 3 …): refused.
// - RoPE: default, linear and llama3 (the rope_freqs tensor) as transformers computes them; yarn with
//   llama.cpp's parameters (its ramp, correction dims floor/ceil and attention factor 0.1·ln(factor) + 1 are
//   transformers' defaults); no dynamic NTK scaling anywhere in llama.cpp; yarn's truncate: false, mscale /
//   mscale_all_dim and an explicit attention_factor are refused (llama.cpp's yarn_log_multiplier assumes mscale 1),
//   and so are beta_fast / beta_slow other than 32 / 1: these four architectures never read the yarn_beta keys
//   (only grok, mistral3 and deepseek do), a file's value would be ignored. Measured: a yarn model with beta_fast 16
//   gave llama.cpp a perplexity 0.2 % off llmprune's (transformers'); with the defaults they agree.
// - SmolLM3's NoPE layers: `smollm3` skips RoPE on every 4th layer (n_no_rope_layer_step = 4) and loads no o / MLP
//   biases; deci rotates every layer. Other patterns, per-layer widths or biases: refused.
import Foundation
import Formats
import LlamaModel

public enum GGUFArchitecture: String, Sendable {
    case llama, deci, qwen2, smollm3

    public var name: String { rawValue }

    /// llama.cpp's "normal" RoPE rotates adjacent pairs: q/k rows are permuted (qwen2's NEOX RoPE takes HF order).
    public var permutesQK: Bool { self != .qwen2 }

    /// The architecture for `c`, or `GGUFExportError.notRepresentable` naming the feature.
    public static func choose(_ c: LlamaConfig, path: String) throws -> GGUFArchitecture {
        func refuse(_ r: String) -> GGUFExportError { .notRepresentable(path: path, reason: r) }
        if let w = c.slidingWindow, (0..<c.numLayers).contains(where: { c.attentionWindow(layer: $0) != nil }) {
            throw refuse("sliding-window attention (sliding_window \(w), model_type \(c.modelType)): llama.cpp's llama, deci, "
                         + "qwen2 and smollm3 graphs attend to the whole context")
        }
        let rope = c.ropeScaling
        switch rope.kind {
        case .dynamic:
            throw refuse("rope_scaling dynamic (NTK-aware): llama.cpp has no dynamic RoPE scaling")
        case .yarn:
            if rope.truncate == false { throw refuse("rope_scaling yarn with truncate: false (llama.cpp floors/ceils the correction range)") }
            if rope.mscale != nil || rope.mscaleAllDim != nil {
                throw refuse("rope_scaling yarn with mscale / mscale_all_dim (llama.cpp's yarn_log_multiplier assumes mscale 1)")
            }
            if rope.attentionFactor != nil { throw refuse("rope_scaling yarn with an explicit attention_factor") }
            if (rope.betaFast ?? 32) != 32 || (rope.betaSlow ?? 1) != 1 {
                throw refuse("rope_scaling yarn with beta_fast \(rope.betaFast ?? 32) / beta_slow \(rope.betaSlow ?? 1): llama.cpp's "
                             + "llama, deci, qwen2 and smollm3 loaders do not read yarn_beta_fast / yarn_beta_slow (they use 32 and 1)")
            }
            if rope.frequencyDivisors != nil { throw refuse("rope_freqs divisors together with yarn scaling") }
        case .default, .linear, .llama3:
            break
        }
        if c.modelType == "smollm3" {
            if !c.isUniform {
                throw refuse("SmolLM3's NoPE layers with per-layer widths (deci rotates every layer; smollm3 sizes every "
                             + "layer from layer 0)")
            }
            let step4 = (0..<c.numLayers).map { ($0 + 1) % 4 != 0 }
            if (0..<c.numLayers).map({ c.usesRope(layer: $0) }) != step4 {
                throw refuse("no_rope_layers other than every 4th layer (llama.cpp's smollm3 fixes n_no_rope_layer_step = 4)")
            }
            if c.qkvBias || c.oBias || c.mlpBias { throw refuse("biases in a SmolLM3 model (llama.cpp's smollm3 loads no o or MLP bias)") }
            return .smollm3
        }
        if !c.ropeLayers.isEmpty && c.ropeLayers.contains(false) {
            throw refuse("layers without RoPE in a \(c.modelType) model")
        }
        if !c.isUniform { return .deci }
        if c.modelType == "qwen2" && c.layers[0].numHeads * c.headDim == c.hiddenSize && !c.oBias && !c.mlpBias {
            return .qwen2
        }
        return .llama
    }

    /// The `rope_freqs` tensor to write, if any: a GGUF source's divisors as they are, or for llama3 scaling the factors
    /// llama.cpp's converter computes (`LlamaModel.generate_extra_tensors`), in its float32 arithmetic.
    public static func ropeFrequencyFactors(_ c: LlamaConfig) throws -> [Float]? {
        let rope = c.ropeScaling
        if let d = rope.frequencyDivisors { return d }
        guard rope.kind == .llama3 else { return nil }
        let dim = c.headDim
        let base = Float(c.ropeTheta)
        let factor = Float(rope.factor ?? 8), low = Float(rope.lowFreqFactor ?? 1), high = Float(rope.highFreqFactor ?? 4)
        let old = Float(rope.originalMaxPositionEmbeddings ?? 8192)
        let lowWavelength = old / low, highWavelength = old / high
        let twoPi = Float(2 * Double.pi)
        return (0..<(dim / 2)).map { j in
            // freqs = 1.0 / (base ** (arange(0, dim, 2, float32) / dim))
            let freq = 1 / Foundation.pow(base, Float(2 * j) / Float(dim))
            let wavelength = twoPi / freq
            if wavelength < highWavelength { return 1 }
            if wavelength > lowWavelength { return factor }
            let smooth = (old / wavelength - low) / (high - low)
            return 1 / ((1 - smooth) / factor + smooth)
        }
    }
}
