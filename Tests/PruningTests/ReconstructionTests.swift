// The least-squares refit after the cut against NumPy (scripts/reference/make_recon_fixtures.py): the tiny model
// cut by a fixed plan, o_proj and down_proj refit on fixed tokens, both inputs (`lstsq`: the unpruned model's;
// `lstsq-seq`: the already pruned layers'), over several micro-batches; and the refit's own checks.
import Foundation
import Testing
import LlamaModel
@testable import Pruning

enum ReconFixtures {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Resources/recon")
    static let tinyModel = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("LlamaModelTests/Resources/tiny")

    struct Fit: Decodable { let file: String; let shape: [Int]; let errorCut: Double; let errorRefit: Double; let bias: String? }
    struct Layer: Decodable { let layer: Int; let o: Fit; let down: Fit }
    struct KeptSets: Decodable { let layer: Int; let keptKVHeads: [Int]; let keptQueryHeads: [Int]; let keptMLPChannels: [Int] }
    struct Index: Decodable {
        let batch: Int, seqLen: Int, ridge: Double, tokens: [Int32], plan: [KeptSets], methods: [String: [Layer]]
    }

    static func index() throws -> Index {
        try JSONDecoder().decode(Index.self, from: Data(contentsOf: dir.appendingPathComponent("index.json")))
    }

    static func floats(_ name: String) throws -> [Float] {
        let data = try Data(contentsOf: dir.appendingPathComponent(name))
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    /// The fixture's plan for `config` (scores are irrelevant to the refit).
    static func plan(_ ix: Index, config c: LlamaConfig) throws -> PrunePlan {
        let layers = ix.plan.map {
            LayerPlan(layer: $0.layer, original: c.layers[$0.layer], keptKVHeads: $0.keptKVHeads,
                      keptQueryHeads: $0.keptQueryHeads, keptMLPChannels: $0.keptMLPChannels, attentionScores: [],
                      mlpScores: [])
        }
        return PrunePlan(settings: PruneSettings(ratio: 0.25, layerStart: 0, layerEnd: 2, criterion: .l1),
                         resolvedRatio: 0.25, model: try ModelIdentity(path: ReconFixtures.tinyModel.path,
                                                                        format: "safetensors", config: c),
                         calibration: nil, layers: layers, parametersBefore: 0, parametersAfter: 0)
    }
}

@Suite struct ReconstructionTests {
    /// max |a − b| / max |b|
    static func relative(_ a: [Float], _ b: [Float]) -> Double {
        precondition(a.count == b.count)
        let scale = b.map { abs(Double($0)) }.max()!
        return zip(a, b).map { abs(Double($0) - Double($1)) }.max()! / scale
    }

    /// "+bias": the affine refit (`--bias-compensation`), which also sets o_proj's and down_proj's biases.
    @Test(arguments: ["lstsq", "lstsq-seq", "lstsq+bias", "lstsq-seq+bias"], [16, 32, 2048])
    func refitMatchesNumPy(_ method: String, _ microBatchTokens: Int) throws {
        let ix = try ReconFixtures.index()
        let original = try ModelLoader.load(path: ReconFixtures.tinyModel.path, tokenizer: false).weights
        let plan = try ReconFixtures.plan(ix, config: original.config)
        let pruned = try Pruner.apply(plan: plan, to: original)
        let cutO = plan.layers.map { pruned.layers[$0.layer].wo }
        let bias = method.hasSuffix("+bias")
        let base = bias ? String(method.dropLast("+bias".count)) : method
        let settings = ReconstructionSettings(method: ReconstructionMethod(rawValue: base)!, ridge: ix.ridge,
                                              samples: ix.batch, sampleLength: ix.seqLen, bias: bias)
        let reports = try Reconstructor.run(original: original, pruned: pruned, plan: plan, tokens: ix.tokens,
                                            batch: ix.batch, seqLen: ix.seqLen, settings: settings, quiet: true,
                                            microBatchTokens: microBatchTokens)
        let want = ix.methods[method]!
        #expect(reports.map { $0.layer } == want.map { $0.layer })
        for (i, (w, r)) in zip(want, reports).enumerated() {
            let l = pruned.layers[w.layer]
            let wantO = try ReconFixtures.floats(w.o.file), wantDown = try ReconFixtures.floats(w.down.file)
            let dO = Self.relative(l.wo, wantO), dDown = Self.relative(l.wDown, wantDown)
            #expect(dO < 2e-5 && dDown < 2e-5, "layer \(w.layer): max relative difference o \(dO), down \(dDown)")
            #expect(Self.relative(l.wo, cutO[i]) > 1e-2, "layer \(w.layer): o_proj was not refit")
            if bias {
                let wantBo = try ReconFixtures.floats(w.o.bias!), wantBd = try ReconFixtures.floats(w.down.bias!)
                let bO = Self.relative(l.bo, wantBo), bD = Self.relative(l.bDown, wantBd)
                #expect(bO < 2e-5 && bD < 2e-5, "layer \(w.layer): bias max relative difference o \(bO), down \(bD)")
            } else {
                #expect(l.bo.isEmpty && l.bDown.isEmpty)
            }
            for (got, exp) in [(r.o, w.o), (r.down, w.down)] {
                #expect(abs(got.errorCut - exp.errorCut) < 1e-4 * max(1, exp.errorCut), "\(got) vs \(exp)")
                #expect(abs(got.errorRefit - exp.errorRefit) < 1e-4 * max(1, exp.errorRefit), "\(got) vs \(exp)")
                #expect(got.errorRefit < got.errorCut)
            }
        }
        // The layer after the last planned one is untouched (with a bias refit it gains zero biases, as every layer
        // of a model with Llama's attention_bias and mlp_bias must).
        #expect(pruned.layers[2].wo == original.layers[2].wo)
        #expect(pruned.config.oBias == bias && pruned.config.qkvBias == bias && pruned.config.mlpBias == bias)
        for l in pruned.layers.indices where bias {
            let w = pruned.layers[l]
            #expect(w.bqkv.count == (w.shape.numHeads + 2 * w.shape.numKVHeads) * 16 && w.bGateUp.count == 2 * w.shape.intermediateSize
                    && w.bo.count == 64 && w.bDown.count == 64)
        }
        if bias { #expect(pruned.layers[2].bo.allSatisfy { $0 == 0 } && pruned.layers[0].bqkv.allSatisfy { $0 == 0 }) }
    }

    /// A bias refit needs a refit, and a model whose architecture has o_proj/down_proj biases (Llama's).
    @Test func biasCompensationIsRefusedWhereItCannotBe() throws {
        #expect(throws: PruneError.self) { try ReconstructionSettings(method: .none, bias: true).validated() }
        var c = try ModelLoader.load(path: ReconFixtures.tinyModel.path, tokenizer: false).weights.config
        try ReconstructionSettings(method: .lstsq, bias: true).check(for: c)
        for other in ["qwen2", "mistral", "smollm3"] {
            c.modelType = other
            #expect(throws: PruneError.self) { try ReconstructionSettings(method: .lstsq, bias: true).check(for: c) }
            try ReconstructionSettings(method: .lstsq, bias: false).check(for: c)
        }
    }

    /// Plans written before the bias refit existed (no "bias" key) decode as without it.
    @Test func settingsWithoutBiasKeyDecode() throws {
        let old = #"{"method":"lstsq","ridge":0.1,"samples":256,"sampleLength":128}"#
        let s = try JSONDecoder().decode(ReconstructionSettings.self, from: Data(old.utf8))
        #expect(s == ReconstructionSettings(method: .lstsq, ridge: 0.1, samples: 256, sampleLength: 128, bias: false))
        let round = try JSONDecoder().decode(ReconstructionSettings.self,
                                             from: try JSONEncoder().encode(ReconstructionSettings(method: .lstsqSequential, bias: true)))
        #expect(round.bias && round.method == .lstsqSequential)
    }

    @Test func ridgeMustBePositive() {
        for bad in [0.0, -1, .nan, .infinity] {
            #expect(throws: PruneError.self) { try ReconstructionSettings(method: .lstsq, ridge: bad).validated() }
        }
    }

    /// Without a ridge term the refit of an exactly reconstructible target is exact: W X with X in the span of the
    /// kept inputs (the removed column's input is a copy of a kept one) is matched with zero error.
    @Test func exactWhenTheRemovedInputIsRedundant() throws {
        // in = 3, kept = [0, 2], X column 1 = X column 0; W [2 × 3]
        let xs: [[Double]] = [[1, 1, 2], [0.5, 0.5, -1], [2, 2, 0.25], [-1, -1, 3]]
        var g = [Double](repeating: 0, count: 9)
        for x in xs { for i in 0..<3 { for j in 0..<3 { g[i * 3 + j] += x[i] * x[j] } } }
        let w: [Float] = [1, 2, 3, -1, 0.5, 2]
        let kept = [0, 2]
        let sub = LeastSquaresRefit.submatrix(g, n: 3, rows: kept, cols: kept)
        let cross = LeastSquaresRefit.submatrix(g, n: 3, rows: nil, cols: kept)
        let (refit, fit) = try LeastSquaresRefit.solve(weight: w, inputs: 3, kept: kept, gramKept: sub, cross: cross,
                                                       gramFull: g, ridge: 1e-12, what: "test")
        // W' = [w00 + w01, w02] per row
        let want: [Float] = [3, 3, -0.5, 2]
        #expect(zip(refit, want).allSatisfy { abs($0 - $1) < 1e-5 }, "\(refit)")
        #expect(fit.errorRefit < 1e-9 && fit.errorCut > 0.1)
    }
}
