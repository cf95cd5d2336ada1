// RoPE scaling, as transformers computes it (src/transformers/modeling_rope_utils.py, 5.x): the config's
// `rope_scaling` (transformers 4; `type` or `rope_type`) or `rope_parameters` (transformers 5) read into a typed value,
// GGUF `{arch}.rope.scaling.*` keys and the `rope_freqs` tensor (llama.cpp), and the inverse frequencies and
// cos/sin multiplier each type gives. Default RoPE keeps llmprune's original computation (inv_freq in Double);
// the scaled types follow transformers' fp32 tensor arithmetic step by step (powf, reciprocal, fp32 products),
// including its float32 / float64 boundaries (Python scalars are doubles, tensors are float32).
import Foundation
import Formats

public struct RopeScaling: Equatable, Sendable {
    public enum Kind: String, Sendable, CaseIterable { case `default`, linear, dynamic, yarn, llama3 }

    public var kind: Kind = .default
    public var factor: Double?                        // linear, dynamic, llama3 (required); yarn (nil: max_pos / orig)
    public var originalMaxPositionEmbeddings: Int?    // yarn, llama3
    public var lowFreqFactor: Double?                 // llama3
    public var highFreqFactor: Double?                // llama3
    public var betaFast: Double?                      // yarn (default 32)
    public var betaSlow: Double?                      // yarn (default 1)
    public var mscale: Double?                        // yarn
    public var mscaleAllDim: Double?                  // yarn
    public var attentionFactor: Double?               // yarn (default from factor / mscale)
    public var truncate: Bool?                        // yarn (default true)
    /// GGUF `rope_freqs.weight`: llama.cpp divides inv_freq[i] by it (Llama-3.1-style models).
    public var frequencyDivisors: [Float]?

    public init(kind: Kind = .default) { self.kind = kind }

    public static let none = RopeScaling()

    /// Types transformers has that llmprune does not compute (refused by name).
    static let supportedNames = Kind.allCases.map(\.rawValue).joined(separator: ", ")
}

// MARK: - config.json

extension RopeScaling {
    /// Reads `rope_scaling` / `rope_parameters` of a config.json object. `theta` is the rope dict's `rope_theta`
    /// (transformers prefers it over the top-level key), nil when the dict has none.
    static func parse(configJSON obj: [String: Any], source: String) throws -> (scaling: RopeScaling, theta: Double?) {
        func fail(_ r: String) -> ModelError { .invalidConfig(source: source, reason: r) }
        func present(_ v: Any?) -> Bool { v != nil && !(v is NSNull) }
        // transformers: `rope_parameters = rope_scaling or rope_parameters`.
        var key = "rope_scaling"
        var dict: [String: Any]? = nil
        for k in ["rope_scaling", "rope_parameters"] where present(obj[k]) {
            guard let d = obj[k] as? [String: Any] else { throw fail("\"\(k)\" is not an object") }
            if d.isEmpty { continue }
            key = k
            dict = d
            break
        }
        guard let d = dict else { return (.none, nil) }
        if let nested = d.first(where: { $0.value is [String: Any] }) {
            throw fail("\(key).\(nested.key): per-layer-type RoPE parameters are not supported")
        }
        func number(_ k: String, in o: [String: Any], name: String) throws -> Double? {
            guard present(o[k]) else { return nil }
            guard let n = o[k] as? NSNumber, n.doubleValue.isFinite else {
                throw fail("\(name) must be a finite number")
            }
            return n.doubleValue
        }
        func num(_ k: String) throws -> Double? { try number(k, in: d, name: "\(key).\(k)") }
        let rawType = d["rope_type"] ?? d["type"] ?? "default"
        guard let typeName = rawType as? String else { throw fail("\(key).rope_type is not a string") }
        func required(_ k: String) throws -> Double {
            guard let v = try num(k) else { throw fail("\(key).\(k) is required for rope_type \"\(typeName)\"") }
            return v
        }
        guard let kind = Kind(rawValue: typeName) else {
            throw fail("\(key).rope_type \"\(typeName)\" is not supported (only \(supportedNames))")
        }
        let theta = try num("rope_theta")
        var s = RopeScaling(kind: kind)
        guard kind != .default else { return (s, theta) }
        for (o, name) in [(d, "\(key).partial_rotary_factor"), (obj, "partial_rotary_factor")] {
            if let p = try number("partial_rotary_factor", in: o, name: name), p != 1 {
                throw fail("\(name) \(p) is not supported with rope_type \"\(typeName)\"")
            }
        }
        switch kind {
        case .default: break
        case .linear, .dynamic:
            s.factor = try required("factor")
        case .yarn:
            guard d.keys.contains("factor") else { throw fail("\(key).factor is required for rope_type \"yarn\"") }
            s.factor = try num("factor")
            s.betaFast = try num("beta_fast")
            s.betaSlow = try num("beta_slow")
            s.mscale = try num("mscale")
            s.mscaleAllDim = try num("mscale_all_dim")
            s.attentionFactor = try num("attention_factor")
            if present(d["truncate"]) {
                guard let t = d["truncate"] as? Bool else { throw fail("\(key).truncate is not a boolean") }
                s.truncate = t
            }
        case .llama3:
            s.factor = try required("factor")
            s.lowFreqFactor = try required("low_freq_factor")
            s.highFreqFactor = try required("high_freq_factor")
            guard s.lowFreqFactor != s.highFreqFactor else {
                throw fail("\(key).low_freq_factor and high_freq_factor are equal (\(s.lowFreqFactor!))")
            }
        }
        if kind == .yarn || kind == .llama3 {
            // standardize_rope_params: a top-level original_max_position_embeddings wins, then the dict's,
            // then max_position_embeddings.
            let orig = try number("original_max_position_embeddings", in: obj, name: "original_max_position_embeddings")
                ?? num("original_max_position_embeddings")
                ?? number("max_position_embeddings", in: obj, name: "max_position_embeddings") ?? 2048
            guard orig >= 1, orig <= 1e15 else { throw fail("\(key).original_max_position_embeddings \(orig) is not positive") }
            s.originalMaxPositionEmbeddings = Int(orig)
        }
        if let f = s.factor, !(f > 0) { throw fail("\(key).factor \(f) must be positive") }
        return (s, theta)
    }

    /// The `rope_scaling` object written back to config.json (nil for plain RoPE: the key is then left out).
    public func configJSONValue() throws -> [String: Any]? {
        if frequencyDivisors != nil {
            guard kind == .llama3 else {
                throw ModelError.invalidConfig(source: "config.json", reason:
                    "GGUF rope_freqs.weight divisors that are not the llama3 rope formula cannot be written as rope_scaling")
            }
        }
        guard kind != .default else { return nil }
        var o: [String: Any] = ["rope_type": kind.rawValue]
        let pairs: [(String, Any?)] = [
            ("factor", factor), ("original_max_position_embeddings", originalMaxPositionEmbeddings),
            ("low_freq_factor", lowFreqFactor), ("high_freq_factor", highFreqFactor), ("beta_fast", betaFast),
            ("beta_slow", betaSlow), ("mscale", mscale), ("mscale_all_dim", mscaleAllDim),
            ("attention_factor", attentionFactor), ("truncate", truncate),
        ]
        for (k, v) in pairs { if let v { o[k] = v } }
        if kind == .yarn && factor == nil { o["factor"] = NSNull() }
        return o
    }
}

// MARK: - GGUF

extension RopeScaling {
    /// Reads `{arch}.rope.scaling.*` and the `rope_freqs.weight` tensor as llama.cpp applies them. Anything llama.cpp
    /// would compute differently from one of our types is refused, naming the key.
    static func parse(gguf f: GGUFFile, arch: String, headDim: Int, contextLength: Int) throws -> RopeScaling {
        let m = f.metadata
        func fail(_ r: String) -> ModelError { .invalidConfig(source: f.path, reason: r) }
        let p = arch + ".rope."
        if let n = m[p + "dimension_count"]?.int, n != headDim {
            throw fail("\(p)dimension_count \(n) differs from head_dim \(headDim) (partial rotary embedding is not supported)")
        }
        func number(_ k: String) throws -> Double? {
            guard let v = m[p + k] else { return nil }
            guard let d = v.double, d.isFinite else { throw fail("\(p)\(k) is not a finite number") }
            return d
        }
        // Keys whose non-neutral values change llama.cpp's rotation in ways we do not compute.
        for (k, neutral) in [("scaling.attn_factor", [1.0]), ("scaling.yarn_attn_factor", [1.0]),
                             ("scaling.yarn_log_multiplier", [0.0]), ("scaling.yarn_ext_factor", [-1.0, 1.0]),
                             ("scaling.alpha", [])] {
            if let v = try number(k), !neutral.contains(v) {
                throw fail("\(p)\(k) \(v) is not supported")
            }
        }
        if m[p + "freq_base_swa"] != nil || m[p + "dimension_sections"] != nil {
            throw fail("\(p)\(m[p + "freq_base_swa"] != nil ? "freq_base_swa" : "dimension_sections") is not supported")
        }
        let typeName: String
        if let v = m[p + "scaling.type"] {
            guard let t = v.string else { throw fail("\(p)scaling.type is not a string") }
            typeName = t
        } else {
            typeName = "none"
        }
        // llama.cpp: freq_scale = 1 / rope.scaling.factor (or the older rope.scale_linear), for every scaling type.
        var factor = try number("scaling.factor") ?? 0
        if factor == 0 { factor = try number("scale_linear") ?? 0 }
        if factor != 0 && !(factor > 0) { throw fail("\(p)scaling.factor \(factor) must be positive") }
        var s = RopeScaling()
        switch typeName {
        case "none", "linear":
            if factor != 0 && factor != 1 {
                s.kind = .linear
                s.factor = factor
            }
        case "yarn":
            s.kind = .yarn
            s.factor = factor == 0 ? 1 : factor
            s.originalMaxPositionEmbeddings = try number("scaling.original_context_length").map(Int.init) ?? contextLength
            s.betaFast = try number("scaling.yarn_beta_fast")
            s.betaSlow = try number("scaling.yarn_beta_slow")
        default:
            throw fail("\(p)scaling.type \"\(typeName)\" is not supported (only none, linear, yarn)")
        }
        if let info = f.tensor(named: "rope_freqs.weight") {
            guard s.kind != .yarn else { throw fail("rope_freqs.weight together with \(p)scaling.type yarn is not supported") }
            guard info.elementCount == headDim / 2 else {
                throw fail("rope_freqs.weight has \(info.elementCount) values, expected head_dim / 2 = \(headDim / 2)")
            }
            let divisors = try f.floats(info)
            guard divisors.allSatisfy({ $0.isFinite && $0 > 0 }) else { throw fail("rope_freqs.weight has values that are not positive") }
            s.frequencyDivisors = divisors
            if s.kind == .default {
                s.recognizeLlama3(theta: try number("freq_base") ?? 10000,
                                  contextLength: try number("scaling.original_context_length"))
            }
        }
        return s
    }
}

// MARK: - inverse frequencies

extension RopeScaling {
    /// Marks GGUF `rope_freqs` divisors as llama3 rope when they are what llama.cpp's converter writes for
    /// factor = max divisor, low/high_freq_factor 1/4 and an original length implied by a smoothed divisor, else
    /// `contextLength` or 8192 (so export can write `rope_scaling`); the computation keeps using the divisors.
    mutating func recognizeLlama3(theta: Double, contextLength: Double?) {
        guard let d = frequencyDivisors, let f = d.max(), f > 1 else { return }
        let dim = d.count * 2
        // The original length implied by a smoothed (medium) frequency: s = (1/d - 1/F) / (1 - 1/F) and
        // s = (orig / wavelength - low) / (high - low) with low = 1, high = 4.
        var implied: Int? = nil
        if let j = d.indices.first(where: { d[$0] > 1.0001 && d[$0] < f * 0.9999 }) {
            let fd = Double(f), sm = (1 / Double(d[j]) - 1 / fd) / (1 - 1 / fd)
            let wavelength = 2 * Double.pi * Foundation.pow(theta, Double(2 * j) / Double(dim))
            let orig = (wavelength * (sm * 3 + 1)).rounded()
            if orig >= 1 && orig < 1e12 { implied = Int(orig) }
        }
        // Recognised only if every divisor is reproduced.
        for orig in [implied, contextLength.map(Int.init), 8192].compactMap({ $0 }) where orig > 0 {
            var c = RopeScaling(kind: .llama3)
            c.factor = Double(f); c.lowFreqFactor = 1; c.highFreqFactor = 4; c.originalMaxPositionEmbeddings = orig
            let plain = RopeScaling.none.inverseFrequencies(theta: theta, headDim: dim, maxPositionEmbeddings: orig, seqLen: 1).inv
            let ours = c.inverseFrequencies(theta: theta, headDim: dim, maxPositionEmbeddings: orig, seqLen: 1).inv
            let matches = zip(zip(plain, ours), d).allSatisfy { (pair: (Float, Float), divisor: Float) -> Bool in
                let ratio = Double(pair.0) / Double(pair.1)
                return abs(ratio - Double(divisor)) <= 1e-5 * Double(divisor)
            }
            if matches {
                self = c
                frequencyDivisors = d
                return
            }
        }
    }
}

extension RopeScaling {
    /// The sequence length the tables depend on: non-nil only for dynamic scaling past max_position_embeddings
    /// (transformers recomputes inv_freq from L = max(position_ids) + 1 there; at L ≤ max_pos it is the init value).
    /// Every batch gets the tables of its own length, as a freshly loaded transformers model computes it. A model
    /// that has already run a longer batch keeps that batch's frequencies in transformers (dynamic_rope_update in
    /// modeling_rope_utils.py grows its cache and resets it only below max_pos), so there a result depends on the
    /// batches run before it; that history is not a property of the checkpoint, and ranks of a data-parallel job
    /// would not share it.
    public func dynamicLength(seqLen: Int, maxPositionEmbeddings: Int) -> Int? {
        kind == .dynamic && seqLen > maxPositionEmbeddings ? seqLen : nil
    }

    /// inv_freq [headDim/2] and the factor cos and sin are multiplied by, for a batch of `seqLen` positions.
    public func inverseFrequencies(theta: Double, headDim: Int, maxPositionEmbeddings: Int,
                                   seqLen: Int) -> (inv: [Float], attentionFactor: Float) {
        let half = headDim / 2, dim = headDim
        /// 1 / base ** (arange(0, dim, 2).float() / dim), all in fp32 as torch computes it.
        func fp32Inverse(_ base: Float) -> [Float] {
            (0..<half).map { j in 1 / Foundation.pow(base, Float(2 * j) / Float(dim)) }
        }
        var inv: [Float]
        var attention: Float = 1
        // A GGUF's rope_freqs recognised as the llama3 formula: llama.cpp divides the plain frequencies by it.
        let computed = kind == .llama3 && frequencyDivisors != nil ? .default : kind
        switch computed {
        case .default:
            // llmprune's original computation, unchanged: theta^(-2j/hd) in Double.
            inv = (0..<half).map { j in Float(1.0 / Foundation.pow(theta, Double(2 * j) / Double(dim))) }
        case .linear:
            inv = fp32Inverse(Float(theta)).map { $0 / Float(factor!) }
        case .dynamic:
            let f = factor!
            if let l = dynamicLength(seqLen: seqLen, maxPositionEmbeddings: maxPositionEmbeddings) {
                // base * ((factor * L / max_pos) - (factor - 1)) ** (dim / (dim - 2)), a float32 tensor expression.
                var t = Float(f) * Float(l)
                t = t / Float(maxPositionEmbeddings)
                t = t - Float(f - 1)
                t = Foundation.pow(t, Float(Double(dim) / Double(dim - 2)))
                inv = fp32Inverse(Float(theta) * t)
            } else {
                // At init (seq_len = max_pos) the same expression in Python floats.
                let m = Double(maxPositionEmbeddings)
                let base = theta * Foundation.pow((f * m / m) - (f - 1), Double(dim) / Double(dim - 2))
                inv = fp32Inverse(Float(base))
            }
        case .yarn:
            let orig = originalMaxPositionEmbeddings!
            let f = factor ?? Double(maxPositionEmbeddings) / Double(orig)
            let af: Double
            func getMscale(_ scale: Double, _ m: Double = 1) -> Double { scale <= 1 ? 1 : 0.1 * m * Foundation.log(scale) + 1 }
            if let a = attentionFactor {
                af = a
            } else if let m = mscale, let mad = mscaleAllDim, m != 0, mad != 0 {
                af = getMscale(f, m) / getMscale(f, mad)
            } else {
                af = getMscale(f)
            }
            attention = Float(af)
            let betaFast = (self.betaFast ?? 0) != 0 ? self.betaFast! : 32
            let betaSlow = (self.betaSlow ?? 0) != 0 ? self.betaSlow! : 1
            func correctionDim(_ rotations: Double) -> Double {
                Double(dim) * Foundation.log(Double(orig) / (rotations * 2 * Double.pi)) / (2 * Foundation.log(theta))
            }
            var low = correctionDim(betaFast), high = correctionDim(betaSlow)
            if truncate ?? true { low = low.rounded(.down); high = high.rounded(.up) }
            low = Swift.max(low, 0)
            high = Swift.min(high, Double(dim - 1))
            if low == high { high += 0.001 }
            let fF = Float(f), lowF = Float(low), span = Float(high - low)
            inv = (0..<half).map { j in
                let pos = Foundation.pow(Float(theta), Float(2 * j) / Float(dim))
                let extrapolation = 1 / pos
                let interpolation = 1 / (fF * pos)
                let ramp = Swift.min(Swift.max((Float(j) - lowF) / span, 0), 1)
                let extrapolationFactor = 1 - ramp
                let a = interpolation * (1 - extrapolationFactor)
                let b = extrapolation * extrapolationFactor
                return a + b
            }
        case .llama3:
            let f = Float(factor!), orig = originalMaxPositionEmbeddings!
            let lowF = lowFreqFactor!, highF = highFreqFactor!
            let lowWavelength = Float(Double(orig) / lowF), highWavelength = Float(Double(orig) / highF)
            let twoPi = Float(2 * Double.pi), origF = Float(orig), lowFF = Float(lowF), spanF = Float(highF - lowF)
            inv = fp32Inverse(Float(theta)).map { i in
                let wavelength = (1 / i) * twoPi                     // 2π / inv: reciprocal, then product
                let scaled = wavelength > lowWavelength ? i / f : i
                let smooth = ((1 / wavelength) * origF - lowFF) / spanF
                let a = (1 - smooth) * scaled / f
                let b = smooth * scaled
                let smoothed = a + b
                let medium = !(wavelength < highWavelength) && !(wavelength > lowWavelength)
                return medium ? smoothed : scaled
            }
        }
        if let d = frequencyDivisors {
            // llama.cpp: theta_base / freq_factor on top of the base (and linear) frequencies.
            inv = zip(inv, d).map { $0 / $1 }
        }
        return (inv, attention)
    }
}
