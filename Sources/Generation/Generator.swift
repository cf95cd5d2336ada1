// Autoregressive generation over LlamaRunner's cached forward: the prompt in one batched forward (prefill), then
// one token at a time, each attending to the KV cache, until a stop id or the token budget. The loop of
// transformers' generate (GenerationMixin._sample) for one sequence: the stop token is part of the output, as it is
// in generate's returned ids.
import Foundation
import LlamaModel

/// What a generation does besides the prompt.
public struct GenerationOptions: Sendable {
    public var maxNewTokens = 128
    /// Until this many new tokens exist, the stop ids are not chosen (transformers' MinNewTokensLengthLogitsProcessor:
    /// their logits are set to −∞).
    public var minNewTokens = 0
    public var sampling = SamplingSettings()
    /// Ids that end the generation (the model's EOS ids); the stop token is emitted, then generation ends.
    public var stopIds: Set<Int32> = []

    public init(maxNewTokens: Int = 128, minNewTokens: Int = 0, sampling: SamplingSettings = SamplingSettings(),
                stopIds: Set<Int32> = []) {
        self.maxNewTokens = maxNewTokens
        self.minNewTokens = minNewTokens
        self.sampling = sampling
        self.stopIds = stopIds
    }
}

public enum StopReason: String, Codable, Sendable {
    case eos
    case maxNewTokens = "max_new_tokens"
    /// The model's context (max_position_embeddings) is full.
    case context
}

public struct GenerationResult: Codable, Sendable {
    public var promptTokens: Int
    /// The new tokens, the stop token included when there was one.
    public var tokens: [Int32]
    public var stopReason: StopReason
    /// The prompt's forward and the first token's choice.
    public var prefillSeconds: Double
    /// Every later step (forward of one token, choice of the next).
    public var decodeSeconds: Double

    public var prefillTokensPerSecond: Double { prefillSeconds > 0 ? Double(promptTokens) / prefillSeconds : 0 }
    /// New tokens after the first (each one decode step), per second.
    public var decodeTokensPerSecond: Double { decodeSeconds > 0 ? Double(tokens.count - 1) / decodeSeconds : 0 }
}

public final class Generator {
    public let runner: LlamaRunner

    public init(weights: LlamaWeights) {
        runner = LlamaRunner(weights: weights)
    }

    /// Generation over a given runner (e.g. one whose products run in bf16).
    public init(runner: LlamaRunner) {
        self.runner = runner
    }

    public var config: LlamaConfig { runner.config }

    /// Positions the model takes: max_position_embeddings, or nil under dynamic RoPE (which rescales past it, so
    /// transformers runs any length).
    public static func context(of c: LlamaConfig) -> Int? {
        c.ropeScaling.kind == .dynamic ? nil : c.maxPositionEmbeddings
    }

    /// Refuses a prompt the model cannot take (before anything is allocated).
    public static func checkPrompt(_ count: Int, config c: LlamaConfig) throws {
        guard count > 0 else { throw GenerationError.emptyPrompt }
        if let ctx = context(of: c), count > ctx { throw GenerationError.promptTooLong(tokens: count, context: ctx) }
    }

    /// Generates after `prompt`; `onToken` sees each new token as it is chosen (the stop token too).
    public func generate(prompt: [Int32], options o: GenerationOptions,
                         onToken: (Int32) throws -> Void = { _ in }) throws -> GenerationResult {
        try Self.checkPrompt(prompt.count, config: config)
        try o.sampling.validate()
        guard o.maxNewTokens >= 1 else { throw GenerationError.setting("max-new-tokens", "\(o.maxNewTokens) must be at least 1") }
        // The last new token is never fed back, so the cache needs prompt + maxNew − 1 positions; a static context
        // bounds the positions a forward may use.
        var capacity = prompt.count + min(o.maxNewTokens, Int(Int32.max)) - 1
        if let ctx = Self.context(of: config) { capacity = min(capacity, ctx) }
        capacity = max(capacity, prompt.count)
        // Without a static context (dynamic RoPE) the budget alone sizes the cache: refuse one that cannot be held.
        let bytes = Double(capacity) * Double(config.layers.reduce(0) { $0 + $1.numKVHeads }) * Double(config.headDim) * 8
        guard bytes <= Double(ProcessInfo.processInfo.physicalMemory) / 2 else {
            throw GenerationError.setting("max-new-tokens", String(format: "%d new tokens need a KV cache of %.1f GB, more "
                + "than half of this machine's memory", o.maxNewTokens, bytes / 1e9))
        }
        let cache = KVCache(config: config, capacity: capacity)
        var sampler = Sampler(o.sampling)

        let t0 = DispatchTime.now().uptimeNanoseconds
        var logits = try runner.forward(appending: prompt, cache: cache)
        var out: [Int32] = []
        var reason = StopReason.maxNewTokens
        var t1 = t0
        while true {
            if out.count < o.minNewTokens {
                for id in o.stopIds where Int(id) < logits.count && id >= 0 { logits[Int(id)] = -.infinity }
            }
            let token = sampler.next(logits)
            out.append(token)
            if out.count == 1 { t1 = DispatchTime.now().uptimeNanoseconds }
            try onToken(token)
            if o.stopIds.contains(token) { reason = .eos; break }
            if out.count == o.maxNewTokens { reason = .maxNewTokens; break }
            if cache.length >= cache.capacity { reason = .context; break }
            logits = try runner.forward(appending: [token], cache: cache)
        }
        let t2 = DispatchTime.now().uptimeNanoseconds
        return GenerationResult(promptTokens: prompt.count, tokens: out, stopReason: reason,
                                prefillSeconds: Double(t1 - t0) * 1e-9, decodeSeconds: Double(t2 - t1) * 1e-9)
    }
}
