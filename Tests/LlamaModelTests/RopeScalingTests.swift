// RoPE scaling against transformers (scripts/reference/make_rope_fixtures.py): tiny random Llamas with linear
// (v5 rope_parameters and v4 rope_scaling), dynamic (past and within max_position_embeddings), yarn (two
// parameter sets) and llama3 rope; logits, loss, layer-0 q/k/o gradients and inv_freq; GGUFs carrying the same
// rope as llama.cpp keys / the rope_freqs tensor; config.json write-back; refused configs.
import Foundation
import Testing
import Formats
@testable import LlamaModel

struct RopeGolden {
    static let dir = resources.appendingPathComponent("rope")
    nonisolated(unsafe) static let index: [String: Any] = {
        let data = try! Data(contentsOf: dir.appendingPathComponent("rope_golden.json"))
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }()
    static func model(_ name: String) -> [String: Any] { (index["models"] as! [String: Any])[name] as! [String: Any] }
    static func ids(_ name: String) -> [[Int]] { (model(name)["input_ids"] ?? index["input_ids"]) as! [[Int]] }
    static func floats(_ file: String) -> [Float] {
        let data = try! Data(contentsOf: dir.appendingPathComponent(file))
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }
    static func maxAbs(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).map { abs($0 - $1) }.max()! }
}

/// Logits, loss and the loss gradient of layer 0's q/k/o against transformers, for `path` (a fixture dir or GGUF)
/// with the golden values of `name`.
func checkRopeModel(path: String, golden name: String, gradients: Bool = true) throws {
    let rec = RopeGolden.model(name)
    let ids = RopeGolden.ids(name)
    let tokens = ids.flatMap { $0.map(Int32.init) }, B = ids.count, T = ids[0].count
    let m = try ModelLoader.load(path: RopeGolden.dir.appendingPathComponent(path).path, tokenizer: false)
    let runner = LlamaRunner(weights: m.weights)
    let logits = try runner.logits(tokens: tokens, batch: B, seqLen: T)
    let ref = RopeGolden.floats(rec["logits_file"] as! String)
    #expect(logits.count == ref.count)
    let diff = RopeGolden.maxAbs(logits, ref)
    let refLoss = (rec["loss"] as! NSNumber).doubleValue
    let loss = try runner.nextTokenNLL(tokens: tokens, batch: B, seqLen: T).reduce(0, +) / Double(B * (T - 1))
    var line = "rope \(path) [\(m.config.ropeScaling.kind)]: max |logit diff| \(diff), |loss diff| \(abs(loss - refLoss))"
    #expect(diff <= 1e-4, "\(path): max |logit diff| \(diff)")
    #expect(abs(loss - refLoss) <= 1e-5, "\(path): loss \(loss) vs \(refLoss)")
    if gradients {
        let r = try GradientPass(weights: m.weights).gradients(tokens: tokens, batch: B, seqLen: T, layers: 0..<1, fisher: false)
        #expect(abs(r.loss - refLoss) <= 1e-5)
        let g = r.gradients[0]!, s = m.config.layers[0], d = m.config.hiddenSize, hd = m.config.headDim
        let nq = s.numHeads * hd * d, nkv = s.numKVHeads * hd * d
        var worst = 0.0
        for (key, ours) in [("q_proj", Array(g.wqkv[0..<nq])), ("k_proj", Array(g.wqkv[nq..<nq + nkv])), ("o_proj", g.wo)] {
            let gref = RopeGolden.floats(rec["grad_\(key)"] as! String)
            #expect(ours.count == gref.count)
            let err = Double(RopeGolden.maxAbs(ours, gref)) / Double(gref.map { abs($0) }.max()!)
            #expect(err <= 1e-4, "\(path) layer 0 \(key): max error / max |g| = \(err)")
            worst = max(worst, err)
        }
        line += ", layer-0 q/k/o grad max err / max |g| \(worst)"
    }
    print(line)
}

struct RopeScalingTests {
    @Test(arguments: ["linear", "linear_v4", "dynamic", "yarn", "yarn_mscale", "llama3"])
    func safetensorsMatchTransformers(name: String) throws {
        try checkRopeModel(path: name, golden: name)
    }

    /// Dynamic RoPE at L = 12 ≤ max_position_embeddings (16) is plain RoPE.
    @Test func dynamicWithinMaxPositionsIsDefault() throws {
        try checkRopeModel(path: "dynamic", golden: "dynamic_short")
    }

    /// One runner, sequence lengths 17 → 12 → 17: the tables follow the batch length (transformers after a reset).
    @Test func dynamicTablesFollowTheSequenceLength() throws {
        let m = try ModelLoader.load(path: RopeGolden.dir.appendingPathComponent("dynamic").path, tokenizer: false)
        let runner = LlamaRunner(weights: m.weights)
        for name in ["dynamic", "dynamic_short", "dynamic"] {
            let ids = RopeGolden.ids(name)
            let logits = try runner.logits(tokens: ids.flatMap { $0.map(Int32.init) }, batch: ids.count, seqLen: ids[0].count)
            let diff = RopeGolden.maxAbs(logits, RopeGolden.floats(RopeGolden.model(name)["logits_file"] as! String))
            #expect(diff <= 1e-4, "\(name): \(diff)")
        }
    }

    /// inv_freq and the cos/sin factor as the rotary module holds them after the forward.
    @Test(arguments: ["linear", "linear_v4", "dynamic", "dynamic_short", "yarn", "yarn_mscale", "llama3"])
    func inverseFrequenciesMatchTransformers(name: String) throws {
        let rec = RopeGolden.model(name)
        let c = try ModelLoader.config(path: RopeGolden.dir.appendingPathComponent(rec["dir"] as! String).path)
        let (inv, af) = c.ropeScaling.inverseFrequencies(theta: c.ropeTheta, headDim: c.headDim,
                                                         maxPositionEmbeddings: c.maxPositionEmbeddings,
                                                         seqLen: RopeGolden.ids(name)[0].count)
        let ref = (rec["inv_freq"] as! [NSNumber]).map { $0.floatValue }
        let refAF = Float((rec["attention_scaling"] as! NSNumber).doubleValue)
        let ulps = zip(inv, ref).map { abs(Int($0.bitPattern) - Int($1.bitPattern)) }.max()!
        print("rope \(name): inv_freq max ulp difference \(ulps); attention factor \(af) vs \(refAF)")
        #expect(inv.count == ref.count)
        #expect(ulps <= 1, "\(name): inv_freq differs by \(ulps) ulp: \(inv) vs \(ref)")
        #expect(af == refAF)
    }

    /// GGUFs written as convert_hf_to_gguf.py would: rope.scaling.type linear / yarn and the llama3 rope_freqs tensor.
    @Test(arguments: ["linear", "yarn", "llama3"])
    func ggufMatchesTransformers(name: String) throws {
        try checkRopeModel(path: "\(name).gguf", golden: name, gradients: false)
        let c = try ModelLoader.config(path: RopeGolden.dir.appendingPathComponent("\(name).gguf").path)
        let st = try ModelLoader.config(path: RopeGolden.dir.appendingPathComponent(name).path)
        #expect(c.ropeScaling.kind == st.ropeScaling.kind)
        if name == "llama3" {
            #expect(c.ropeScaling.frequencyDivisors?.count == c.headDim / 2)
            #expect(c.ropeScaling.factor == 8 && c.ropeScaling.originalMaxPositionEmbeddings == 64)
            #expect(c.ropeScaling.lowFreqFactor == 1 && c.ropeScaling.highFreqFactor == 4)
        }
    }

    /// config.json written back parses to the same rope (and transformers' keys: rope_scaling with rope_type).
    /// With LLMPRUNE_ROPE_EXPORT_DIR set, the written configs (also those of the GGUFs) are saved there for
    /// scripts/reference/check_rope_export.py, which loads them with transformers.
    @Test(arguments: ["linear", "linear_v4", "dynamic", "yarn", "yarn_mscale", "llama3", "linear.gguf", "yarn.gguf", "llama3.gguf"])
    func configRoundTrip(name: String) throws {
        let c = try ModelLoader.config(path: RopeGolden.dir.appendingPathComponent(name).path)
        let data = try c.configJSON()
        if let out = ProcessInfo.processInfo.environment["LLMPRUNE_ROPE_EXPORT_DIR"] {
            let dir = URL(fileURLWithPath: out).appendingPathComponent(name.replacingOccurrences(of: ".gguf", with: "_gguf"))
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try data.write(to: dir.appendingPathComponent("config.json"))
        }
        let obj = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        let rs = try #require(obj["rope_scaling"] as? [String: Any])
        #expect(rs["rope_type"] as? String == c.ropeScaling.kind.rawValue)
        var back = try LlamaConfig(configJSON: data, source: "exported/config.json")
        back.ropeScaling.frequencyDivisors = c.ropeScaling.frequencyDivisors   // a GGUF's rope_freqs become llama3 keys
        back.bosTokenId = c.bosTokenId; back.eosTokenId = c.eosTokenId
        #expect(back == c)
    }

    @Test func defaultRopeWritesNoScalingKey() throws {
        let c = try ModelLoader.config(path: resources.appendingPathComponent("tiny").path)
        #expect(c.ropeScaling == .none)
        let obj = try JSONSerialization.jsonObject(with: try c.configJSON()) as! [String: Any]
        #expect(obj["rope_scaling"] == nil)
    }
}

// MARK: - refused input

struct RopeScalingBadInputTests {
    nonisolated(unsafe) static let base: [String: Any] = [
        "model_type": "llama", "vocab_size": 16, "hidden_size": 8, "num_attention_heads": 2, "num_hidden_layers": 1,
        "intermediate_size": 8, "max_position_embeddings": 32, "rope_theta": 10000.0,
    ]

    static func refused(_ extra: [String: Any]) -> String {
        let source = "/models/x/config.json"
        do {
            let data = try JSONSerialization.data(withJSONObject: base.merging(extra) { $1 })
            _ = try LlamaConfig(configJSON: data, source: source)
            Issue.record("expected an error for \(extra)")
            return ""
        } catch {
            let m = "\(error)"
            #expect(error is ModelError)
            #expect(m.hasPrefix(source), "names the file: \(m)")
            #expect(!m.contains(where: { $0.isNewline }), "one line: \(m)")
            return m
        }
    }

    @Test func unknownRopeType() {
        let m = Self.refused(["rope_scaling": ["rope_type": "wavy", "factor": 2.0]])
        #expect(m.contains("rope_scaling.rope_type \"wavy\" is not supported"), "\(m)")
        let legacy = Self.refused(["rope_scaling": ["type": "ntk", "factor": 2.0]])
        #expect(legacy.contains("rope_scaling.rope_type \"ntk\""), "\(legacy)")
    }

    @Test func longropeRefused() {
        let m = Self.refused(["rope_parameters": ["rope_type": "longrope", "rope_theta": 10000.0,
                                                  "short_factor": [1.0, 1.0], "long_factor": [2.0, 2.0]]])
        #expect(m.contains("rope_parameters.rope_type \"longrope\" is not supported"), "\(m)")
        let p = Self.refused(["rope_parameters": ["rope_type": "proportional", "rope_theta": 10000.0]])
        #expect(p.contains("\"proportional\""), "\(p)")
    }

    @Test func missingLlama3Key() {
        let m = Self.refused(["rope_scaling": ["rope_type": "llama3", "factor": 8.0, "high_freq_factor": 4.0,
                                               "original_max_position_embeddings": 16]])
        #expect(m.contains("rope_scaling.low_freq_factor is required for rope_type \"llama3\""), "\(m)")
        let lin = Self.refused(["rope_scaling": ["type": "linear"]])
        #expect(lin.contains("rope_scaling.factor is required"), "\(lin)")
    }

    @Test func badRopeValues() {
        #expect(Self.refused(["rope_scaling": ["rope_type": "linear", "factor": "2"]]).contains("rope_scaling.factor"))
        #expect(Self.refused(["rope_scaling": ["rope_type": "dynamic", "factor": -1.0]]).contains("rope_scaling.factor"))
        #expect(Self.refused(["rope_scaling": 3]).contains("\"rope_scaling\" is not an object"))
        #expect(Self.refused(["rope_scaling": ["rope_type": "yarn", "factor": 2.0, "partial_rotary_factor": 0.5]])
            .contains("partial_rotary_factor"))
    }

    /// A GGUF with a rope scaling type or key we do not compute: the error names the key.
    @Test func ggufUnsupportedRopeKeys() throws {
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("rope-bad-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        for (key, value, expect) in [("llama.rope.scaling.type", GGUFMetadataValue.string("longrope"), "llama.rope.scaling.type \"longrope\""),
                                     ("llama.rope.scaling.yarn_log_multiplier", .float32(0.1), "llama.rope.scaling.yarn_log_multiplier"),
                                     ("llama.rope.dimension_count", .uint32(2), "llama.rope.dimension_count 2")] {
            var w = GGUFWriter()
            w.set("general.architecture", .string("llama"))
            for (k, v) in [("block_count", 1), ("embedding_length", 8), ("attention.head_count", 2),
                           ("feed_forward_length", 8), ("vocab_size", 16), ("context_length", 32)] {
                w.set("llama." + k, .uint32(UInt32(v)))
            }
            w.set(key, value)
            let url = tmp.appendingPathComponent("m.gguf")
            try w.write(to: url)
            do {
                _ = try ModelLoader.config(path: url.path)
                Issue.record("\(key): expected an error")
            } catch {
                let m = "\(error)"
                #expect(m.hasPrefix(url.path) && m.contains(expect) && !m.contains(where: { $0.isNewline }), "\(m)")
            }
        }
    }
}
