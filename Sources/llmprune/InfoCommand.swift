import Foundation
import LlamaModel

enum InfoCommand {
    struct Report: Encodable {
        var path: String, format: String
        var vocabSize: Int, hiddenSize: Int, headDim: Int, layers: Int
        var ropeTheta: Double, rmsNormEps: Float, tiedEmbeddings: Bool
        var parameters: Int
        var layerWidths: [LayerShape]
        /// The products with a bias: of q, k, v, o, gate, up, down.
        var biases: [String]
    }

    static func run(_ argv: [String]) throws {
        var a = try Arguments(argv, booleans: ["json"])
        let path = try a.required("model"), json = a.flag("json")
        try a.finish()
        let m = try ModelLoader.describe(path: path)      // no weights read: works for models larger than memory
        let c = m.config
        let r = Report(path: m.path, format: m.format, vocabSize: c.vocabSize, hiddenSize: c.hiddenSize,
                       headDim: c.headDim, layers: c.numLayers, ropeTheta: c.ropeTheta, rmsNormEps: c.rmsNormEps,
                       tiedEmbeddings: c.tieWordEmbeddings, parameters: c.parameterCount, layerWidths: c.layers,
                       biases: (c.qkvBias ? ["q", "k", "v"] : []) + (c.oBias ? ["o"] : []) + (c.mlpBias ? ["gate", "up", "down"] : []))
        if json { try CLI.printJSON(r); return }
        print("model       \(m.path) (\(m.format))")
        print("shape       vocab \(c.vocabSize), hidden \(c.hiddenSize), head_dim \(c.headDim), \(c.numLayers) layers")
        let rs = c.ropeScaling, scaling = rs.kind == .default && rs.frequencyDivisors == nil ? ""
            : ", \(rs.kind.rawValue == "default" ? "GGUF rope_freqs" : rs.kind.rawValue) scaling" + (rs.factor.map { " factor \($0)" } ?? "")
        print("rope        theta \(c.ropeTheta)\(scaling); rms_norm_eps \(c.rmsNormEps); embeddings \(c.tieWordEmbeddings ? "tied" : "untied")")
        if !r.biases.isEmpty { print("biases      \(r.biases.joined(separator: ", ")) (model_type \(c.modelType))") }
        print("parameters  \(c.parameterCount)")
        print("layer  q-heads  kv-heads  mlp   params")
        for (i, l) in c.layers.enumerated() {
            print(String(format: "%5d  %7d  %8d  %5d  %d", i, l.numHeads, l.numKVHeads, l.intermediateSize,
                         c.layerParameterCount(l)))
        }
    }
}
