// GGUF export: the file our own reader reads back is the model (f32: the same weights and logits; deci for per-layer
// widths, qwen2 / llama with q/k/v biases, rope_freqs for llama3 RoPE, no output tensor when tied), the per-layer keys
// and permutations are llama.cpp's, what llama.cpp cannot compute is refused by name, and a failed or refused export
// leaves no file. llama.cpp itself runs the exports in scripts/reference/check_gguf_export.py.
import Foundation
import Testing
import Formats
import LlamaModel
import Tokenizer
@testable import ModelExport

@Suite struct GGUFExportTests {
    static let tokenizerJSON = ExportFixtures.tokenizerJSON     // byte-level BPE, Llama-3 split, 501 tokens

    /// A small model of `widths` (default: 6 uniform layers of 8 heads over 2 KV heads, 48 channels), vocab 512.
    static func config(widths: [(Int, Int, Int)]? = nil, tied: Bool = false, modelType: String = "llama") -> LlamaConfig {
        var c = ExportFixtures.config(tied: tied, widths: widths)
        c.vocabSize = 512
        c.modelType = modelType
        if modelType == "qwen2" { c.qkvBias = true }
        return c
    }

    /// `w` written as a Hugging Face directory with the tiny Llama-3 tokenizer, then exported to GGUF.
    static func export(_ w: LlamaWeights, _ dir: ExportTempDir, name: String, type: GGUFOutputType = .f32) throws -> (URL, GGUFExportSummary) {
        let src = dir.file(name)
        let tok = dir.file(name + "-tok")
        try FileManager.default.createDirectory(at: tok, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: tokenizerJSON, to: tok.appendingPathComponent("tokenizer.json"))
        try HFExport.write(weights: w, tokenizerSource: .huggingFaceDirectory(tok), to: src, force: false)
        let out = dir.file(name + ".gguf")
        let s = try GGUFExport.write(try Checkpoint.open(path: src.path), to: out, type: type, force: false)
        return (out, s)
    }

    static func logits(_ w: LlamaWeights) throws -> [Float] {
        let ids: [Int32] = (0..<24).map { Int32(($0 * 37 + 11) % 500) }
        return try LlamaRunner(weights: w).logits(tokens: ids, batch: 2, seqLen: 12)
    }

    static func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
        zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    @Test func f32ExportReadsBackAsTheSameModel() throws {
        let dir = try ExportTempDir()
        var qwen = Self.config(modelType: "qwen2")     // 8 heads × head_dim 8 ≠ hidden 32: llama with q/k/v biases
        qwen.tieWordEmbeddings = true
        var qwenFull = Self.config(widths: Array(repeating: (4, 2, 48), count: 6), tied: true, modelType: "qwen2")
        qwenFull.ropeTheta = 1_000_000                 // 4 heads × 8 = hidden: llama.cpp's qwen2
        let cases: [(String, LlamaConfig, String)] = [
            ("hetero", Self.config(widths: ExportFixtures.heterogeneous), "deci"),
            ("uniform-tied", Self.config(tied: true), "llama"),
            ("qwen2-pruned", qwen, "llama"),
            ("qwen2-hetero", Self.config(widths: ExportFixtures.heterogeneous, modelType: "qwen2"), "deci"),
            ("qwen2-full", qwenFull, "qwen2"),
        ]
        for (name, c, arch) in cases {
            let w = LlamaWeights.random(config: c, seed: 7)
            let (out, summary) = try Self.export(w, dir, name: name)
            #expect(summary.architecture == arch, "\(name)")
            let f = try GGUFFile(path: out.path)
            #expect(f.metadata["general.architecture"]?.string == arch)
            #expect((f.tensor(named: "output.weight") == nil) == c.tieWordEmbeddings, "\(name)")
            #expect(f.metadata["\(arch).attention.key_length"]?.int == 8)
            let back = try ModelLoader.load(path: out.path, tokenizer: true)
            #expect(back.config.layers == c.layers, "\(name)")
            #expect(back.config.qkvBias == c.qkvBias && back.config.oBias == c.oBias, "\(name)")
            let a = w.huggingFaceTensors(), b = back.weights.huggingFaceTensors()
            #expect(a.map(\.name) == b.map(\.name), "\(name)")
            for (x, y) in zip(a, b) { #expect(x.values == y.values, "\(name): \(x.name)") }
            #expect(try Self.logits(back.weights) == Self.logits(w), "\(name)")
        }
    }

    @Test func shardedDirectoryExportsTheSameWeights() throws {
        // the layout cluster prune and synth write: model-0000k-of-0000n.safetensors + model.safetensors.index.json
        let dir = try ExportTempDir()
        var c = SyntheticShape.tinyQwen2.config(vocabSize: 512)
        c.layers[2] = LayerShape(numHeads: 2, numKVHeads: 1, intermediateSize: 40)     // a pruned layer: deci
        let src = dir.file("sharded")
        try FileManager.default.createDirectory(at: src, withIntermediateDirectories: true)
        let shards = try Synthesize.writeWeights(config: c, dtype: "F32", seed: 3, into: src, maxShardBytes: 200_000)
        #expect(shards.count > 1)
        let tok = dir.file("tok")
        try FileManager.default.createDirectory(at: tok, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: Self.tokenizerJSON, to: tok.appendingPathComponent("tokenizer.json"))
        try HFExport.writeModelFiles(config: c, tokenizerSource: .huggingFaceDirectory(tok), into: src)
        let out = dir.file("sharded.gguf")
        let s = try GGUFExport.write(try Checkpoint.open(path: src.path), to: out, type: .f32, force: false)
        #expect(s.architecture == "deci")
        let a = try ModelLoader.load(path: src.path, tokenizer: false), b = try ModelLoader.load(path: out.path, tokenizer: false)
        #expect(b.config.modelType == "qwen2" && b.config.qkvBias && b.config.layers == c.layers)
        for (x, y) in zip(a.weights.huggingFaceTensors(), b.weights.huggingFaceTensors()) {
            #expect(x.name == y.name && x.values == y.values, "\(x.name)")
        }
    }

    @Test func heterogeneousKeysArePerLayerAndQKPermutedPerLayer() throws {
        let dir = try ExportTempDir()
        let c = Self.config(widths: ExportFixtures.heterogeneous)
        let w = LlamaWeights.random(config: c, seed: 3)
        let (out, _) = try Self.export(w, dir, name: "h")
        let f = try GGUFFile(path: out.path)
        #expect(f.metadataTypes["deci.attention.head_count"] == .array)
        #expect(f.metadata["deci.attention.head_count"]?.intArray == ExportFixtures.heterogeneous.map(\.0))
        #expect(f.metadata["deci.attention.head_count_kv"]?.intArray == ExportFixtures.heterogeneous.map(\.1))
        #expect(f.metadata["deci.feed_forward_length"]?.intArray == ExportFixtures.heterogeneous.map(\.2))
        #expect(f.metadata["deci.rope.dimension_count"]?.int == 8)
        // layer 3 (4 query heads, 1 KV head): GGUF row h·2·dim + 2d + j holds HF row h·2·dim + j·dim + d (dim = 4)
        let hf = w.huggingFaceTensors().first { $0.name == "model.layers.3.self_attn.k_proj.weight" }!
        let g = try f.floats(f.tensor(named: "blk.3.attn_k.weight")!)
        let cols = 32
        for (gRow, hfRow) in [(0, 0), (1, 4), (2, 1), (3, 5), (6, 3), (7, 7)] {
            #expect(Array(g[(gRow * cols)..<((gRow + 1) * cols)]) == Array(hf.values[(hfRow * cols)..<((hfRow + 1) * cols)]))
        }
    }

    @Test func llama3RopeIsWrittenAsRopeFreqs() throws {
        let dir = try ExportTempDir()
        var c = SyntheticShape.tinyLlama3.config()
        c.vocabSize = 512
        let w = LlamaWeights.random(config: c, seed: 5)
        let (out, _) = try Self.export(w, dir, name: "l3")
        let f = try GGUFFile(path: out.path)
        let freqs = try f.floats(f.tensor(named: "rope_freqs.weight")!)
        // llama.cpp's converter on Llama-3.2's rope (factor 32, low 1, high 4, original 8192), head_dim 16, theta 5e5:
        // float32 golden values from conversion/llama.py generate_extra_tensors
        #expect(freqs.map(\.bitPattern) == [0x3f80_0000, 0x3f80_0000, 0x3f80_0000, 0x3f80_0000, 0x4052_b46f,
                                             0x4200_0000, 0x4200_0000, 0x4200_0000])
        let back = try ModelLoader.load(path: out.path, tokenizer: false)
        #expect(back.config.ropeScaling.kind == .llama3)
        #expect(back.config.ropeScaling.factor == 32 && back.config.ropeScaling.originalMaxPositionEmbeddings == 8192)
        let d = Self.maxAbsDiff(try Self.logits(back.weights), try Self.logits(w))
        #expect(d < 1e-4, "llama3 logits differ by \(d)")
    }

    @Test func yarnAndLinearRopeAreWrittenAsScalingKeys() throws {
        let dir = try ExportTempDir()
        var yarn = Self.config(tied: true)
        yarn.ropeScaling = RopeScaling(kind: .yarn)
        yarn.ropeScaling.factor = 4
        yarn.ropeScaling.originalMaxPositionEmbeddings = 32
        var linear = Self.config()
        linear.ropeScaling = RopeScaling(kind: .linear)
        linear.ropeScaling.factor = 2
        for (name, c) in [("yarn", yarn), ("linear", linear)] {
            let w = LlamaWeights.random(config: c, seed: 9)
            let (out, _) = try Self.export(w, dir, name: name)
            let f = try GGUFFile(path: out.path)
            #expect(f.metadata["llama.rope.scaling.type"]?.string == name)
            #expect(f.metadata["llama.rope.scaling.factor"]?.double == c.ropeScaling.factor)
            #expect(f.metadata["llama.rope.scaling.yarn_beta_fast"] == nil)
            if name == "yarn" { #expect(f.metadata["llama.rope.scaling.original_context_length"]?.int == 32) }
            let back = try ModelLoader.load(path: out.path, tokenizer: false)
            #expect(back.config.ropeScaling.kind == c.ropeScaling.kind)
            let d = Self.maxAbsDiff(try Self.logits(back.weights), try Self.logits(w))
            #expect(d < 1e-5, "\(name): logits differ by \(d)")
        }
    }

    @Test func halfAndQ8ExportsAreCloseAndQ8FallsBackWhereRowsAreNotBlocks() throws {
        let dir = try ExportTempDir()
        let c = Self.config(widths: ExportFixtures.heterogeneous)    // layer 4 has 30 MLP channels: down rows of 30
        let w = LlamaWeights.random(config: c, seed: 11)
        let reference = try Self.logits(w)
        let scale = reference.map(abs).max()!
        for (type, tolerance) in [(GGUFOutputType.f16, Float(2e-3)), (.bf16, 2e-2), (.q8_0, 3e-2)] {
            let (out, s) = try Self.export(w, dir, name: "m-\(type.rawValue)", type: type)
            let f = try GGUFFile(path: out.path)
            #expect(f.metadata["general.file_type"]?.int == Int(type.fileType))
            #expect(f.tensor(named: "blk.0.attn_q.weight")?.type == type.ggmlType)
            #expect(f.tensor(named: "blk.0.attn_norm.weight")?.type == .f32)
            if type == .q8_0 {
                // inputs of 48 (6 heads × 8), 48, 40, 30 or 16 values are not whole blocks of 32
                var expected: [String] = []
                for (i, l) in c.layers.enumerated() {
                    if l.numHeads * 8 % 32 != 0 { expected.append("blk.\(i).attn_output.weight") }
                    if l.intermediateSize % 32 != 0 { expected.append("blk.\(i).ffn_down.weight") }
                }
                #expect(s.fallbacksToF16 == expected)
                #expect(f.tensor(named: "blk.4.ffn_down.weight")?.type == .f16)
                #expect(f.tensor(named: "blk.4.ffn_up.weight")?.type == .q8_0)
            }
            let d = Self.maxAbsDiff(try Self.logits(try ModelLoader.load(path: out.path, tokenizer: false).weights), reference)
            #expect(d <= tolerance * scale, "\(type): logits differ by \(d) (scale \(scale))")
        }
    }

    @Test func tokenizerKeysFromTokenizerJSONAndFromAGGUF() throws {
        let dir = try ExportTempDir()
        let w = LlamaWeights.random(config: Self.config(), seed: 1)
        let (out, _) = try Self.export(w, dir, name: "t")
        let f = try GGUFFile(path: out.path)
        #expect(f.metadata["tokenizer.ggml.model"]?.string == "gpt2")
        #expect(f.metadata["tokenizer.ggml.pre"]?.string == "llama-bpe")
        let tokens = f.metadata["tokenizer.ggml.tokens"]?.stringArray ?? []
        #expect(tokens.count == 512 && tokens[0] == "<|begin_of_text|>" && tokens[500] == "<think>" && tokens[511] == "[PAD511]")
        let types = f.metadata["tokenizer.ggml.token_type"]?.intArray ?? []
        #expect(types[0] == 3 && types[500] == 4 && types[511] == 5 && types[300] == 1)
        #expect(f.metadataArrayElementTypes["tokenizer.ggml.token_type"] == .int32)
        // the reader's tokenizer of the export = the tokenizer.json's, on text with digits, spaces and an added token
        let text = "Hello world 1234567, don't <think> go\n\n  spaces"
        let original = try ModelLoader.tokenizer(path: dir.file("t").path)
        let back = try ModelLoader.tokenizer(path: out.path)
        #expect(back.encode(text) == original.encode(text))
        // a GGUF source: its tokenizer keys are copied with their types
        let again = dir.file("again.gguf")
        try GGUFExport.write(try Checkpoint.open(path: out.path), to: again, type: .f32, force: false)
        let g = try GGUFFile(path: again.path)
        for k in f.metadataKeys where k.hasPrefix("tokenizer.") {
            #expect(g.metadata[k] == f.metadata[k] && g.metadataTypes[k] == f.metadataTypes[k], "\(k)")
        }
        #expect(try Self.logits(try ModelLoader.load(path: again.path, tokenizer: false).weights) == Self.logits(w))
    }

    @Test func whatLlamaCppCannotComputeIsRefusedByNameAndLeavesNoFile() throws {
        let dir = try ExportTempDir()
        var window = Self.config()
        window.modelType = "mistral"
        window.slidingWindow = 8
        var dynamic = Self.config()
        dynamic.ropeScaling = RopeScaling(kind: .dynamic)
        dynamic.ropeScaling.factor = 2
        var mscale = Self.config()
        mscale.ropeScaling = RopeScaling(kind: .yarn)
        mscale.ropeScaling.factor = 4
        mscale.ropeScaling.originalMaxPositionEmbeddings = 32
        mscale.ropeScaling.mscale = 1
        mscale.ropeScaling.mscaleAllDim = 1
        var beta = Self.config()
        beta.ropeScaling = RopeScaling(kind: .yarn)
        beta.ropeScaling.factor = 4
        beta.ropeScaling.originalMaxPositionEmbeddings = 32
        beta.ropeScaling.betaFast = 16
        var smolHetero = Self.config(widths: ExportFixtures.heterogeneous)
        smolHetero.modelType = "smollm3"
        smolHetero.ropeLayers = (0..<6).map { ($0 + 1) % 4 != 0 }
        var smolPattern = Self.config()
        smolPattern.modelType = "smollm3"
        smolPattern.ropeLayers = (0..<6).map { $0 != 1 }
        let cases: [(String, LlamaConfig, String)] = [
            ("window", window, "sliding-window attention"), ("dynamic", dynamic, "rope_scaling dynamic"),
            ("mscale", mscale, "mscale"), ("yarn-beta", beta, "beta_fast 16.0"),
            ("smol-hetero", smolHetero, "NoPE layers with per-layer widths"),
            ("smol-pattern", smolPattern, "no_rope_layers other than every 4th layer"),
        ]
        for (name, c, phrase) in cases {
            let w = LlamaWeights.random(config: c, seed: 1)
            do {
                _ = try Self.export(w, dir, name: name)
                Issue.record("\(name): exported")
            } catch let e as GGUFExportError {
                #expect(e.description.contains("llama.cpp cannot represent") && e.description.contains(phrase), "\(e)")
                #expect(!e.description.contains("\n"))
            }
            #expect(!FileManager.default.fileExists(atPath: dir.file(name + ".gguf").path))
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path).allSatisfy { !$0.hasPrefix(".") })
    }

    @Test func existingOutputNeedsForceAndAFailedExportLeavesNoPartialFile() throws {
        let dir = try ExportTempDir()
        let w = LlamaWeights.random(config: Self.config(), seed: 2)
        let (out, _) = try Self.export(w, dir, name: "x")
        let before = try Data(contentsOf: out)
        let checkpoint = try Checkpoint.open(path: dir.file("x").path)
        #expect(throws: GGUFExportError.outputExists(path: out.path)) {
            try GGUFExport.write(checkpoint, to: out, type: .f16, force: false)
        }
        #expect(try Data(contentsOf: out) == before)
        // a non-finite weight stops the export half way: the old file stays, no temporary is left
        var layers = w.layers                    // LlamaWeights is a class: a modified copy, not w itself
        layers[4].wDown[7] = .nan
        let bad = LlamaWeights(config: w.config, embed: w.embed, layers: layers, finalNorm: w.finalNorm, lmHead: w.lmHead)
        let badDir = dir.file("bad")
        try HFExport.write(weights: bad, tokenizerSource: .huggingFaceDirectory(dir.file("x-tok")), to: badDir, force: false)
        do {
            try GGUFExport.write(try Checkpoint.open(path: badDir.path), to: out, type: .q8_0, force: true)
            Issue.record("exported a NaN")
        } catch let e as GGUFExportError {
            #expect(e.description.contains("model.layers.4.mlp.down_proj.weight") && e.description.contains("nan"), "\(e)")
        }
        #expect(try Data(contentsOf: out) == before)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path).allSatisfy { !$0.hasPrefix(".") })
        // with force, replaced
        try GGUFExport.write(checkpoint, to: out, type: .f16, force: true)
        #expect(try GGUFFile(path: out.path).tensor(named: "blk.0.attn_q.weight")?.type == .f16)
    }
}
