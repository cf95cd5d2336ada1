// The layer-sharded importance pass without MPI: partial loading holds only a stage's tensors, the partition
// is contiguous and balanced, and the stages chained in one process give exactly one GradientPass's result.
import Foundation
import Testing
import Pruning
@testable import Cluster
@testable import ClusterPrune
import LlamaModel
import TensorCore

private let tinyGGUF = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("LlamaModelTests/Resources/tiny.gguf").path
private let tinyUntied = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("LlamaModelTests/Resources/tiny_untied").path

@Suite struct PipelineStages {
    @Test func partialLoadHoldsOnlyTheBlock() throws {
        let full = try ModelLoader.load(path: tinyGGUF, tokenizer: false)
        let c = full.config
        let mid = try ModelLoader.loadStage(path: tinyGGUF, layers: 1..<2, embedding: false, head: false, tokenizer: false)
        #expect(mid.tensorNames.allSatisfy { $0.hasPrefix("model.layers.1.") })
        #expect(mid.tensorNames.count == 9)
        #expect(mid.weights.embed.isEmpty && mid.weights.finalNorm.isEmpty && mid.weights.lmHead == nil)
        #expect(mid.weights.layers[0].wqkv.isEmpty && mid.weights.layers[2].wDown.isEmpty)
        #expect(mid.weights.layers[1].wqkv == full.weights.layers[1].wqkv)
        #expect(mid.weights.layers[1].wDown == full.weights.layers[1].wDown)
        #expect(mid.bytes == 4 * c.layerParameterCount(c.layers[1]))

        let first = try ModelLoader.loadStage(path: tinyGGUF, layers: 0..<1, embedding: true, head: false, tokenizer: false)
        #expect(first.tensorNames.first == "model.embed_tokens.weight" && first.tensorNames.count == 10)
        #expect(first.tensorNames.dropFirst().allSatisfy { $0.hasPrefix("model.layers.0.") })
        #expect(first.weights.embed == full.weights.embed && first.weights.finalNorm.isEmpty)
        #expect(first.bytes == 4 * (c.vocabSize * c.hiddenSize + c.layerParameterCount(c.layers[0])))

        // Tied model: the last stage loads the embedding as its head.
        let last = try ModelLoader.loadStage(path: tinyGGUF, layers: 2..<3, embedding: false, head: true, tokenizer: false)
        #expect(c.tieWordEmbeddings && last.holdsEmbedding && last.weights.lmHead == nil)
        #expect(last.weights.finalNorm == full.weights.finalNorm)
        #expect(!last.tensorNames.contains { $0.hasPrefix("model.layers.0.") || $0.hasPrefix("model.layers.1.") })

        // Untied model: the last stage loads lm_head and not the embedding.
        let u = try ModelLoader.loadStage(path: tinyUntied, layers: 1..<2, embedding: false, head: true, tokenizer: false)
        #expect(!u.holdsEmbedding && u.weights.embed.isEmpty && u.weights.lmHead != nil)
        #expect(u.tensorNames.contains("lm_head.weight") && !u.tensorNames.contains("model.embed_tokens.weight"))
    }

    @Test func partitionIsContiguousAndBalanced() throws {
        let c = try ModelLoader.config(path: tinyGGUF)
        for p in 1...3 {
            let s = try PipelinePartition.balanced(config: c, stages: p)
            #expect(s.count == p && s.first!.lowerBound == 0 && s.last!.upperBound == c.numLayers)
            #expect(zip(s, s.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound } && s.allSatisfy { !$0.isEmpty })
        }
        #expect(throws: ModelError.self) { try PipelinePartition.balanced(config: c, stages: 4) }
        // 30 equal layers, embedding on the first stage and a (tied) head on the last: symmetric halves.
        var big = c
        big.layers = Array(repeating: c.layers[0], count: 30)
        #expect(try PipelinePartition.balanced(config: big, stages: 2) == [0..<15, 15..<30])
    }

    /// Stages chained in-process (the buffers MPI would carry) reproduce one GradientPass bit for bit — at one
    /// OpenBLAS thread throughout, since its rounding depends on the process-wide thread count, which tests running
    /// alongside may change between the two computations.
    @Test(arguments: [(2, 0..<3), (3, 0..<3), (3, 1..<3), (2, 2..<3), (3, 0..<1)])
    func chainedStagesEqualOnePass(stages p: Int, scored: Range<Int>) throws {
        try BLAS.singleThreaded { try chainedStages(p, scored: scored) }
    }

    func chainedStages(_ p: Int, scored: Range<Int>) throws {
        let full = try ModelLoader.load(path: tinyGGUF, tokenizer: false)
        let c = full.config
        let batch = 3, seqLen = 6
        let tokens = (0..<batch * seqLen).map { Int32(($0 * 37 + 11) % c.vocabSize) }
        let ref = try GradientPass(weights: full.weights).gradients(tokens: tokens, batch: batch, seqLen: seqLen,
                                                                     layers: scored, fisher: true)
        let blocks = try PipelinePartition.balanced(config: c, stages: p)
        let passes = try blocks.enumerated().map { i, b in
            StageGradientPass(stage: try ModelLoader.loadStage(path: tinyGGUF, layers: b, embedding: i == 0,
                                                               head: i == p - 1, tokenizer: false), scored: scored)
        }
        var x: [Float]? = nil
        for s in passes { x = try s.forward(tokens: tokens, batch: batch, seqLen: seqLen, input: x) }
        let loss = try passes.last!.lossBackward()
        var g: [Float]? = nil
        for s in passes.reversed() where s.runsBackward {
            #expect((g != nil) == s.receivesOutputGradient)
            g = try s.backward(outputGradient: g, fisher: true)
            #expect((g != nil) == s.sendsInputGradient)
        }
        #expect(loss == ref.loss)
        for s in passes {
            let r = s.result()
            #expect(Set(r.gradients.keys) == Set(s.scoredHere))
            for l in s.scoredHere {
                #expect(r.gradients[l]!.wqkv == ref.gradients[l]!.wqkv && r.gradients[l]!.wDown == ref.gradients[l]!.wDown)
                #expect(r.fisher![l]!.wGateUp == ref.fisher![l]!.wGateUp && r.fisher![l]!.wo == ref.fisher![l]!.wo)
            }
        }
    }

    /// One rank, no MPI: the whole batch, and the batch cut into micro-batches (combined with weights nₘ/N), give
    /// the gradients, Fisher and loss of one GradientPass (micro-batches up to summation order).
    @Test(arguments: [1, 2, 3]) func singleRankPipelineMatchesOnePass(microBatches: Int) throws {
        let c = try ModelLoader.config(path: tinyGGUF)
        let pipe = try Pipeline(comm: Communicator.world, config: c)
        #expect(pipe.stages == [0..<3])
        let stage = try pipe.loadStage(path: tinyGGUF, tokenizer: false)
        let tokens = (0..<40).map { Int32($0 * 5 % c.vocabSize) }
        let ref = try GradientPass(weights: stage.weights).gradients(tokens: tokens, batch: 5, seqLen: 8, layers: 0..<3,
                                                                      fisher: true)
        var consumed: [Int] = []
        let (r, peak) = try pipe.gradients(makePass: { StageGradientPass(stage: stage, scored: 0..<3) }, tokens: tokens,
                                           batch: 5, seqLen: 8, fisher: true, microBatches: microBatches,
                                           consume: { l, g, f in
                                               consumed.append(l)
                                               func close(_ a: [Float], _ b: [Float]) -> Bool {
                                                   let m = b.map(abs).max()!
                                                   return zip(a, b).allSatisfy { abs($0 - $1) <= 1e-5 * m }
                                               }
                                               #expect(close(g.wqkv, ref.gradients[l]!.wqkv) && close(g.wDown, ref.gradients[l]!.wDown))
                                               #expect(close(f!.wGateUp, ref.fisher![l]!.wGateUp) && close(f!.wo, ref.fisher![l]!.wo))
                                           })
        #expect(consumed == [2, 1, 0] && r.gradients.isEmpty && peak > 0)
        #expect(abs(r.loss - ref.loss) <= 1e-6 * ref.loss)
    }
}
