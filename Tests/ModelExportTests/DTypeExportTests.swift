// The export's dtype: a model written in bf16 or f16 (norms and biases included) loads back as exactly the rounded
// fp32 weights, config.json names the dtype, and fp32 is byte for byte the file the fp32-only writer made; the
// default dtype follows the input (a GGUF → bf16, a safetensors checkpoint → its dominant float dtype).
import Foundation
import Testing
import Formats
import LlamaModel
@testable import ModelExport

@Suite struct DTypeExportTests {
    /// The export fixtures plus a model with every bias (q/k/v, o, MLP): biases must follow the dtype too.
    static func models() -> [LlamaWeights] {
        var c = ExportFixtures.config(widths: ExportFixtures.heterogeneous)
        (c.qkvBias, c.oBias, c.mlpBias) = (true, true, true)
        return ExportFixtures.models() + [LlamaWeights.random(config: c, seed: 6)]
    }

    static func json(_ url: URL) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
    }

    @Test(arguments: TensorDType.allCases)
    func everyTensorReadsBackAsTheRoundedValue(dtype: TensorDType) throws {
        let dir = try ExportTempDir()
        for (i, w) in Self.models().enumerated() {
            let out = dir.file("m\(i)")
            try HFExport.write(weights: w, dtype: dtype, tokenizerSource: .none, to: out, force: false)
            let file = try SafetensorsFile(path: out.appendingPathComponent("model.safetensors").path)
            let want = w.huggingFaceTensors()
            #expect(file.tensorNames.sorted() == want.map(\.name).sorted())
            #expect(file.entries.allSatisfy { $0.dtype == dtype.safetensorsName }, "norms and biases too")
            #expect(file.entries.reduce(0) { $0 + $1.end - $1.begin } == dtype.byteCount * w.config.parameterCount)
            let back = try ModelLoader.load(path: out.path, tokenizer: false).weights
            #expect(back.config == w.config)
            for (x, y) in zip(back.huggingFaceTensors(), want) {
                #expect(x.name == y.name && x.shape == y.shape)
                #expect(x.values.map(\.bitPattern) == y.values.map { FloatEncoding.rounded($0, to: dtype).bitPattern }, "\(x.name)")
            }
            let config = try Self.json(out.appendingPathComponent("config.json"))
            #expect(config["torch_dtype"] as? String == dtype.torchName && config["dtype"] as? String == dtype.torchName)
            if w.config.qkvBias { #expect(file.tensorNames.filter { $0.hasSuffix(".bias") }.count == 7 * 6) }
        }
    }

    /// fp32 through the streamed writer is the file the whole-tensor writer made before dtypes existed.
    @Test func fp32IsTheOldFileByteForByte() throws {
        let dir = try ExportTempDir()
        for (i, w) in Self.models().enumerated() {
            let out = dir.file("m\(i)"), old = dir.file("old\(i).safetensors")
            try HFExport.write(weights: w, tokenizerSource: .none, to: out, force: false)
            try SafetensorsWriter.write(w.huggingFaceTensors(), metadata: ["format": "pt"], to: old)
            #expect(try Data(contentsOf: out.appendingPathComponent("model.safetensors")) == Data(contentsOf: old))
        }
    }

    /// `round(to:)` is the rounding the file applies; a model sharing arrays with it keeps its fp32 values.
    @Test func roundingInPlaceMatchesTheFile() throws {
        let w = Self.models()[2]
        let copy = LlamaWeights(config: w.config, embed: w.embed, layers: w.layers, finalNorm: w.finalNorm, lmHead: w.lmHead)
        copy.round(to: .bf16)
        for (x, y) in zip(copy.huggingFaceTensors(), w.huggingFaceTensors()) {
            #expect(x.values.map(\.bitPattern) == y.values.map { FloatEncoding.rounded($0, to: .bf16).bitPattern }, "\(x.name)")
            #expect(x.name.hasSuffix("norm.weight") || x.values != y.values, "\(x.name) unchanged by rounding")
        }
        let f32 = LlamaWeights(config: w.config, embed: w.embed, layers: w.layers, finalNorm: w.finalNorm, lmHead: w.lmHead)
        f32.round(to: .f32)
        #expect(f32.huggingFaceTensors().map(\.values) == w.huggingFaceTensors().map(\.values))
    }

    /// A checkpoint whose tensors are stored in `dtypeOf(name)`.
    static func mixedCheckpoint(_ dir: URL, _ w: LlamaWeights, _ dtypeOf: (String) -> TensorDType) throws -> String {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try HFExport.writeModelFiles(config: w.config, tokenizerSource: .none, into: dir)
        let tensors = w.huggingFaceTensors()
        let specs = tensors.map { SafetensorsWriter.Spec(name: $0.name, shape: $0.shape, dtype: dtypeOf($0.name).safetensorsName) }
        try SafetensorsWriter.stream(specs, to: dir.appendingPathComponent("model.safetensors")) {
            FloatEncoding.encode(tensors[$0].values, as: dtypeOf(tensors[$0].name))
        }
        return dir.path
    }

    @Test func defaultIsTheInputsDominantFloatDType() throws {
        let dir = try ExportTempDir()
        let w = ExportFixtures.models()[0]
        for d in TensorDType.allCases {      // a single-dtype checkpoint keeps its dtype
            let out = dir.file("plain-\(d)")
            try HFExport.write(weights: w, dtype: d, tokenizerSource: .none, to: out, force: false)
            #expect(try HFExport.defaultDType(modelPath: out.path) == d)
        }
        // fp32 norms beside bf16 matrices (as many bf16 checkpoints ship): bf16
        let norms = try Self.mixedCheckpoint(dir.file("norms-f32"), w) { $0.hasSuffix("norm.weight") ? .f32 : .bf16 }
        #expect(try HFExport.defaultDType(modelPath: norms) == .bf16)
        // only the norms in bf16: f32
        let mostly = try Self.mixedCheckpoint(dir.file("mostly-f32"), w) { $0.hasSuffix("norm.weight") ? .bf16 : .f32 }
        #expect(try HFExport.defaultDType(modelPath: mostly) == .f32)
        // the embedding, the head and layers 0–3 in f16, the rest bf16: whichever holds more elements
        let inF16 = { (n: String) in !n.hasPrefix("model.layers.") || ["0", "1", "2", "3"].contains(n.split(separator: ".")[2]) }
        let split = try Self.mixedCheckpoint(dir.file("split"), w) { inF16($0) ? .f16 : .bf16 }
        let counts = w.huggingFaceTensors().reduce(into: [false: 0, true: 0]) { $0[inF16($1.name)]! += $1.values.count }
        try #require(counts[true]! > counts[false]!, "\(counts)")
        #expect(try HFExport.defaultDType(modelPath: split) == .f16)
        // a GGUF (quantised or not): bf16
        let gguf = ExportFixtures.packageRoot.appendingPathComponent("Tests/LlamaModelTests/Resources/tiny.gguf").path
        #expect(try HFExport.defaultDType(modelPath: gguf) == .bf16)
    }
}
