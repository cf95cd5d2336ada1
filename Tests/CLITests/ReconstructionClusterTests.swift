// `cluster prune --reconstruct lstsq` on the tiny model: sample sharding on 2 ranks (Grams summed over ranks),
// layer sharding on 3 ranks (the stream passed up the stages), and low-memory layer sharding write the weights of
// the single-process `prune --reconstruct lstsq` (refit tensors within 1e-5 relative, every other tensor equal),
// and record the same reconstruction.
import Foundation
import Formats
import Testing

@Suite(.enabled(if: mpiexecPath() != nil, "mpiexec not installed"), .serialized) struct ReconstructionCluster {
    static let recon = ["--reconstruct", "lstsq", "--recon-samples", "6", "--recon-len", "8", "--ridge", "0.01"]

    @Test func everyShardingGivesTheSingleProcessRefit() throws {
        let s = Scratch()
        let single = s.url.appendingPathComponent("single").path
        let r0 = try llmprune(["prune"] + (try clusterJobArgs(s)) + Self.recon + ["--out", single, "--quiet", "--dtype", "f32"])
        try #require(r0.status == 0, "\(r0.stderr)")
        let reference = try SafetensorsFile(path: single + "/model.safetensors")
        let refPlan = try readJSON(single + "/prune_plan.json")
        let refLayers = (refPlan["reconstruction"] as! [String: Any])["layers"] as! [[String: Any]]
        #expect(refLayers.count == 3)
        for (ranks, extra) in [(2, ["--shard", "samples"]), (3, ["--shard", "layers"]), (3, ["--shard", "layers", "--low-memory"])] {
            let out = s.url.appendingPathComponent("c-\(ranks)-\(extra.joined())").path
            let r = try clusterRun(ranks, ["prune"] + (try clusterJobArgs(s)) + Self.recon
                                   + ["--out", out, "--json", "--dtype", "f32"] + extra)
            #expect(r.status == 0, "\(ranks) \(extra): \(r.stderr)")
            guard r.status == 0 else { continue }
            let sharded = try ShardedSafetensors(indexPath: out + "/model.safetensors.index.json")
            #expect(Set(sharded.tensorNames) == Set(reference.tensorNames))
            var worst = 0.0
            for name in reference.tensorNames {
                let a = try sharded.floats(name), b = try reference.floats(name)
                #expect(a.count == b.count, "\(name)")
                if name.hasSuffix("o_proj.weight") || name.hasSuffix("down_proj.weight") {
                    let scale = b.map { abs(Double($0)) }.max()!
                    let d = zip(a, b).map { abs(Double($0) - Double($1)) }.max()! / scale
                    worst = max(worst, d)
                } else {
                    #expect(a == b, "\(name) differs (\(ranks) \(extra))")
                }
            }
            #expect(worst < 1e-5, "\(ranks) \(extra): worst relative refit difference \(worst)")
            // The plan written with the model records the same reconstruction.
            let rc = try #require(try readJSON(out + "/prune_plan.json")["reconstruction"] as? [String: Any])
            let layers = rc["layers"] as! [[String: Any]]
            #expect(layers.map { $0["layer"] as! Int } == refLayers.map { $0["layer"] as! Int })
            for (a, b) in zip(layers, refLayers) {
                for p in ["o", "down"] {
                    let x = (a[p] as! [String: Double])["errorRefit"]!, y = (b[p] as! [String: Double])["errorRefit"]!
                    #expect(abs(x - y) <= 1e-5 * max(y, 1e-3), "layer \(a["layer"]!) \(p): \(x) vs \(y)")
                }
            }
        }
    }

    @Test func sequentialInputsAreOneProcessOnly() throws {
        let s = Scratch()
        let out = s.url.appendingPathComponent("o").path
        expectCleanFailure(try llmprune(["cluster", "prune"] + (try clusterJobArgs(s)) + ["--reconstruct", "lstsq-seq", "--out", out]),
                           mentions: ["--reconstruct", "lstsq-seq"])
        #expect(!FileManager.default.fileExists(atPath: out))
    }
}
