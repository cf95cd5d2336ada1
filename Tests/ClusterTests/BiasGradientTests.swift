// The data-parallel gradient reduction carries bias gradients: flattened with the weights, reduced, and taken back
// into their own arrays (one rank: the reduction is the identity, so the result is the weighted input).
import Testing
@testable import Cluster
@testable import ClusterPrune
import LlamaModel

@Test func shardedReductionCarriesBiasGradients() throws {
    var c = LlamaConfig(vocabSize: 32, hiddenSize: 16, headDim: 4,
                        layers: [LayerShape(numHeads: 4, numKVHeads: 2, intermediateSize: 24)], rmsNormEps: 1e-5,
                        ropeTheta: 10000, maxPositionEmbeddings: 64, tieWordEmbeddings: true)
    (c.qkvBias, c.oBias, c.mlpBias) = (true, true, true)
    let w = LlamaWeights.random(config: c, seed: 5)
    var g = LayerGradients(zerosLike: w.layers[0])
    var k: Float = 0
    g = LayerGradients(parts: g.parts.map { $0.map { _ in k += 1; return k } })
    let f = g.scaled(by: 3)
    #expect(g.bqkv.count == 32 && g.bo.count == 16 && g.bGateUp.count == 48 && g.bDown.count == 16)
    let r = try ShardedGradients.reduce(layer: 0, gradient: g, fisher: f, weight: 0.5, like: w.layers[0], owner: 0,
                                        comm: Communicator.world)
    #expect(r?.gradient.parts == g.scaled(by: 0.5).parts)
    #expect(r?.fisher?.parts == f.scaled(by: 0.5).parts)
    #expect(g.adding(g, scaledBy: 1).bDown == g.bDown.map { 2 * $0 })
}
