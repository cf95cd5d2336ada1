// The memory decision `cluster prune` acts on and `cluster memory` prints: what the planner is told of a job, and
// when layers mode switches to low memory under a per-rank budget.
import ClusterPrune
import LlamaModel
import ModelExport
import Pruning
import Testing

struct MemoryDecisionTests {
    let c = SyntheticShape.llama7b.config()

    func inputs(_ shard: ShardMode, ranks: Int, low: Bool = false, criterion: Criterion = .element1) -> MemoryPlanInputs {
        let s = PruneSettings(ratio: 0.2, layerStart: 4, layerEnd: c.numLayers - 2, criterion: criterion)
        return MemoryPlanInputs(config: c, shard: shard, ranks: ranks, lowMemory: low, fileBytesPerParameter: 2,
                                settings: s, samples: 10, length: 64, microBatches: 1, activationCache: nil)
    }

    @Test func theSettingsSayWhatThePassNeeds() {
        let e1 = inputs(.layers, ranks: 4), e2 = inputs(.layers, ranks: 4, criterion: .element2)
        let l1 = inputs(.layers, ranks: 4, criterion: .l1)
        #expect(e1.needsGradient && !e1.needsFisher)
        #expect(e2.needsGradient && e2.needsFisher)
        #expect(!l1.needsGradient && !l1.needsFisher)
        #expect(e1.scored == 4..<30 && e1.ratio == 0.2 && e1.samples == 10 && e1.sampleLength == 64)
    }

    @Test func withoutABudgetNothingChanges() throws {
        var x = inputs(.layers, ranks: 4)
        let p = try MemoryPlanner.decide(&x, budget: nil)
        #expect(!x.lowMemory && !p.lowMemory && x.budget == nil)
        #expect(p == (try MemoryPlanner.plan(inputs(.layers, ranks: 4))))
    }

    @Test func layersModeSwitchesToLowMemoryOnlyWhenFp32DoesNotFit() throws {
        let six = 6 << 30
        // fp32 layers of 7B on four ranks need ~6.5 GB each: over 6 GiB, so the decision keeps them mapped in bf16.
        #expect(try MemoryPlanner.plan(inputs(.layers, ranks: 4)).largest > six)
        var x = inputs(.layers, ranks: 4)
        let p = try MemoryPlanner.decide(&x, budget: six)
        #expect(x.lowMemory && p.lowMemory && p.largest <= six && x.budget == six)
        // A budget the fp32 layers fit leaves them in fp32.
        var roomy = inputs(.layers, ranks: 4)
        let q = try MemoryPlanner.decide(&roomy, budget: 64 << 30)
        #expect(!roomy.lowMemory && !q.lowMemory)
    }

    @Test func samplesModeNeverSwitchesAndIsRefusedWithTheWayOut() {
        var x = inputs(.samples, ranks: 4)
        do {
            _ = try MemoryPlanner.decide(&x, budget: 6 << 30)
            Issue.record("7B in samples mode fit 6 GiB per rank")
        } catch let e as MemoryBudgetError {
            #expect(e.message.contains("use --shard layers"), "\(e.message)")
        } catch { Issue.record("\(error)") }
        #expect(!x.lowMemory)
    }
}
