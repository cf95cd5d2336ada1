// Iterative pruning, as LLM-Pruner's `--iterative_steps K` (hf_prune.py: `pruner.step()` K times with the
// torch-pruning linear scheduler, fresh gradients of the same calibration batch before each step): round i
// (1…K) cuts the model down to i/K of the final cut, scoring the model as the earlier rounds left it.
//   local: round i takes each layer to the removal counts of ratio·i/K on its ORIGINAL widths (the scheduler's
//     per-step ratio is of the original channel count), removing the lowest-scoring units that remain.
//   global: round i's parameter target is total − (total − target)·i/K (integer floor of the removed part),
//     the last round's is the target of a one-round plan.
// The final plan lists original indices, so `apply` of it on the original model gives the K-round result;
// a layer's recorded scores are those of round 1 (the unpruned model). `roundTo` applies in the last round.
// With a between-rounds refit (`--iterative-refit`), each partly pruned model is refit (Reconstructor: o/down
// matched to the unpruned layers' outputs) before the next round scores it, so rounds score what the final refit
// will keep; the plan is still one of original indices, and the written model is refit once from the original.
import Foundation
import LlamaModel

extension Planner {
    static func iterativePlan(model: LoadedModel, settings s: PruneSettings, calibration: CalibrationSet?, steps: Int,
                              microBatches: Int, refit: (ReconstructionSettings, CalibrationSet)? = nil)
        throws -> (PrunePlan, PlanTimings)
    {
        let config = model.config, total = config.parameterCount
        let identity = try ModelIdentity(path: model.path, format: model.format, config: config)
        var timings = PlanTimings()
        // The final size, as the one-round allocation sizes it.
        var ratio = s.ratio
        var target: Int
        if let f = s.targetParams {
            target = Int((Double(total) * f).rounded(.down))
            if s.allocation == .local { ratio = try Allocator.solveRatio(config: config, settings: s, target: target) }
        } else {
            target = Allocator.localParameterCount(config: config, settings: s, ratio: s.ratio)
        }
        // Original indices of what each scored layer keeps so far.
        var kept: [Int: (kv: [Int], q: [Int], mlp: [Int])] = [:]
        for l in s.layerRange {
            let sh = config.layers[l]
            kept[l] = (Array(0..<sh.numKVHeads), Array(0..<sh.numHeads), Array(0..<sh.intermediateSize))
        }
        var weights = model.weights
        var firstScores: [LayerScores] = []
        var plan: PrunePlan! = nil
        for step in 1...steps {
            let scores = try layerScores(weights: weights, settings: s, calibration: calibration,
                                         microBatches: microBatches, timings: &timings)
            if step == 1 { firstScores = scores }
            let t0 = Date()
            let current = weights.config
            try Allocator.checkScores(config: current, settings: s, scores: scores)
            var keep: [LayerKeep]
            if s.allocation == .local {
                let r = ratio * Double(step) / Double(steps)
                keep = scores.map { sc in
                    let (a, m) = Allocator.removalCounts(config: config, settings: s, layer: sc.layer, ratio: r)
                    let o = config.layers[sc.layer], c = current.layers[sc.layer]
                    let groups = s.attentionUnit == .kvGroup || o.numHeads == o.numKVHeads
                    let doneA = groups ? o.numKVHeads - c.numKVHeads
                                       : o.numHeads / o.numKVHeads - c.numHeads / c.numKVHeads
                    let doneM = o.intermediateSize - c.intermediateSize
                    return Allocator.local(config: current, unit: s.attentionUnit,
                                           counts: (max(0, a - doneA), max(0, m - doneM)), scores: sc)
                }
            } else {
                let t = total - Int((Double(total - target) * Double(step) / Double(steps)).rounded(.down))
                keep = try Allocator.global(config: current, settings: s, scores: scores, target: step == steps ? target : t,
                                            setting: s.targetParams == nil ? .ratio : .targetParams)
            }
            if step == steps, let r = s.roundTo {
                keep = zip(keep, scores).map { k, sc in Allocator.roundMLP(k, to: r, scores: sc.mlp) }
            }
            // back to original indices
            for (k, sc) in zip(keep, scores) {
                let lp = k.plan(scores: sc), old = kept[sc.layer]!
                kept[sc.layer] = (lp.keptKVHeads.map { old.kv[$0] }, lp.keptQueryHeads.map { old.q[$0] },
                                  lp.keptMLPChannels.map { old.mlp[$0] })
            }
            let layers = firstScores.map { sc in
                LayerPlan(layer: sc.layer, original: config.layers[sc.layer], keptKVHeads: kept[sc.layer]!.kv,
                          keptQueryHeads: kept[sc.layer]!.q, keptMLPChannels: kept[sc.layer]!.mlp,
                          attentionScores: sc.attention, mlpScores: sc.mlp)
            }
            plan = PrunePlan(settings: s, resolvedRatio: ratio, model: identity, calibration: calibration?.provenance,
                             layers: layers, parametersBefore: total, parametersAfter: 0)
            plan.parametersAfter = try plan.prunedConfig(config).parameterCount
            timings.allocationSeconds += Date().timeIntervalSince(t0)
            if step < steps {
                weights = try Pruner.apply(plan: plan, to: model.weights)
                if let (rs, data) = refit {
                    _ = try Reconstructor.run(original: model.weights, pruned: weights, plan: plan, tokens: data.batchTokens,
                                              batch: data.samples.count, seqLen: data.sampleLength, settings: rs, quiet: true)
                }
            }
        }
        return (plan, timings)
    }
}
