// `--criterion obs` against NumPy (scripts/reference/make_obs_fixtures.py): the greedy structured OBS scores of
// the tiny model's KV groups, query heads and MLP channels, from its own forward sweep over fixed tokens.
import Foundation
import Testing
import LlamaModel
@testable import Pruning

@Suite struct OBSCriterionTests {
    struct Layer: Decodable { let layer: Int; let kvGroup: [Double]; let queryHead: [Double]; let mlp: [Double] }
    struct Index: Decodable { let batch: Int; let seqLen: Int; let dampening: Double; let tokens: [Int32]; let layers: [Layer] }

    static func index() throws -> Index {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Resources/obs/index.json")
        return try JSONDecoder().decode(Index.self, from: Data(contentsOf: url))
    }

    static func worst(_ a: [Double], _ b: [Double]) -> Double {
        zip(a, b).map { abs($0 - $1) / max(abs($1), 1e-30) }.max()!
    }

    @Test(arguments: [AttentionUnit.kvGroup, .queryHead])
    func scoresMatchNumPy(_ unit: AttentionUnit) throws {
        let ix = try Self.index()
        #expect(ix.dampening == OBSCriterion.dampening)
        let w = try ModelLoader.load(path: ReconFixtures.tinyModel.path, tokenizer: false).weights
        let got = try OBSCriterion.scores(weights: w, layers: [0, 1, 2], tokens: ix.tokens, batch: ix.batch,
                                          seqLen: ix.seqLen, attentionUnit: unit)
        for (g, want) in zip(got, ix.layers) {
            let att = unit == .kvGroup ? want.kvGroup : want.queryHead
            let dA = Self.worst(g.attention, att), dM = Self.worst(g.mlp, want.mlp)
            #expect(dA < 1e-4 && dM < 1e-4, "layer \(want.layer): attention \(dA), mlp \(dM)")
            // the removal order itself (what an allocation reads) is the same
            #expect(g.mlp.indices.sorted { g.mlp[$0] < g.mlp[$1] } == want.mlp.indices.sorted { want.mlp[$0] < want.mlp[$1] })
        }
    }

    /// Scores rise strictly along the removal order, so a local allocation removes a prefix of the greedy order.
    @Test func scoresAreStrictlyOrdered() throws {
        let ix = try Self.index()
        let w = try ModelLoader.load(path: ReconFixtures.tinyModel.path, tokenizer: false).weights
        let got = try OBSCriterion.scores(weights: w, layers: [1], tokens: ix.tokens, batch: ix.batch, seqLen: ix.seqLen,
                                          attentionUnit: .kvGroup)
        let sorted = got[0].mlp.sorted()
        #expect(zip(sorted, sorted.dropFirst()).allSatisfy { $0 < $1 })
    }
}
