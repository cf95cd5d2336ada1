import Foundation
import LlamaModel

enum InfoCommand {
    struct Report: Encodable {
        var path: String, format: String
        var vocabSize: Int, hiddenSize: Int, headDim: Int, layers: Int
        var ropeTheta: Double, rmsNormEps: Float, tiedEmbeddings: Bool
        var parameters: Int
        var layerWidths: [LayerShape]
        var tokenizerVocabulary: Int?
    }

    static func run(_ argv: [String]) throws {
        var a = try Arguments(argv, booleans: ["json"])
        let path = try a.required("model"), json = a.flag("json")
        try a.finish()
        let m = try CLI.loadModel(path, tokenizer: false)
        let c = m.config
        let r = Report(path: m.path, format: m.format, vocabSize: c.vocabSize, hiddenSize: c.hiddenSize,
                       headDim: c.headDim, layers: c.numLayers, ropeTheta: c.ropeTheta, rmsNormEps: c.rmsNormEps,
                       tiedEmbeddings: c.tieWordEmbeddings, parameters: c.parameterCount, layerWidths: c.layers,
                       tokenizerVocabulary: m.tokenizer?.vocabularySize)
        if json { try CLI.printJSON(r); return }
        print("model       \(m.path) (\(m.format))")
        print("shape       vocab \(c.vocabSize), hidden \(c.hiddenSize), head_dim \(c.headDim), \(c.numLayers) layers")
        print("rope        theta \(c.ropeTheta); rms_norm_eps \(c.rmsNormEps); embeddings \(c.tieWordEmbeddings ? "tied" : "untied")")
        print("parameters  \(c.parameterCount)")
        if let v = m.tokenizer?.vocabularySize { print("tokenizer   \(v) tokens") }
        print("layer  q-heads  kv-heads  mlp   params")
        for (i, l) in c.layers.enumerated() {
            print(String(format: "%5d  %7d  %8d  %5d  %d", i, l.numHeads, l.numKVHeads, l.intermediateSize,
                         c.layerParameterCount(l)))
        }
    }
}
