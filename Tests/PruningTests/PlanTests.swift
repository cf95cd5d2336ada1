// Prune settings and plans: validation, JSON round trip (sorted keys, pretty), identity check against a model.
// Also holds the small fixtures the other plan/allocation/apply/export tests share.
import Foundation
import Testing
@testable import Pruning
import LlamaModel
import ModelExport
import Support

enum PlanFixtures {
    static let testsDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    static let packageRoot = testsDir.deletingLastPathComponent().deletingLastPathComponent()

    /// A tiny GQA model: 6 layers, 8 query heads over 2 KV heads (n_rep 4), head_dim 8, hidden 32, 48 MLP channels.
    static func config(layers n: Int = 6, heads: Int = 8, kv: Int = 2, inter: Int = 48, tied: Bool = false) -> LlamaConfig {
        LlamaConfig(vocabSize: 64, hiddenSize: 32, headDim: 8,
                    layers: Array(repeating: LayerShape(numHeads: heads, numKVHeads: kv, intermediateSize: inter), count: n),
                    rmsNormEps: 1e-5, ropeTheta: 10000, maxPositionEmbeddings: 128, tieWordEmbeddings: tied,
                    bosTokenId: 1, eosTokenId: 2)
    }

    static func randomScores(_ c: LlamaConfig, _ s: PruneSettings, seed: UInt64 = 7) -> [AllocationScores] {
        var rng = SplitMix64(seed: seed)
        return s.layerRange.map { i in
            let l = c.layers[i]
            let units = (s.attentionUnit == .kvGroup || l.numHeads == l.numKVHeads) ? l.numKVHeads : l.numHeads
            return AllocationScores(layer: i, attention: (0..<units).map { _ in rng.nextUniform() },
                                    mlp: (0..<l.intermediateSize).map { _ in rng.nextUniform() })
        }
    }

    /// A model file to point an identity at.
    static func modelFile(_ dir: PlanTempDir, bytes: Int = 100) throws -> String {
        try dir.write("model.gguf", Data(repeating: 7, count: bytes))
    }

    static func plan(_ c: LlamaConfig, _ s: PruneSettings, dir: PlanTempDir, seed: UInt64 = 7) throws -> PrunePlan {
        let path = try modelFile(dir)
        let id = try ModelIdentity(path: path, format: "gguf", config: c)
        return try PrunePlan.make(settings: s, config: c, model: id, calibration: nil,
                                  scores: randomScores(c, s, seed: seed))
    }
}

/// A fresh temporary directory, removed when the value goes away.
final class PlanTempDir {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("pruning-tests-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }
    func file(_ name: String) -> URL { url.appendingPathComponent(name) }
    func write(_ name: String, _ data: Data) throws -> String {
        let u = file(name)
        try data.write(to: u)
        return u.path
    }
}

/// The one-line message of the PruneError (or, from writing the cut model, ExportError) `body` throws.
func pruneMessage(_ body: () throws -> Void) -> String? {
    do { try body() } catch let e as PruneError { return e.description } catch let e as ExportError { return e.description
    } catch { return "not a PruneError: \(error)" }
    return nil
}

@Suite struct PlanTests {
    @Test func defaultLayerRangeKeepsFirstFourAndLastTwo() {
        #expect(PruneSettings.defaultLayerRange(numLayers: 32) == (4, 30))
        #expect(PruneSettings.defaultLayerRange(numLayers: 22) == (4, 20))
    }

    /// The setting a `PruneError.setting` names, and its one-line message; nil when nothing is thrown.
    func refusal(_ s: PruneSettings, layers: Int = 6) -> (PruneSetting, String)? {
        do { _ = try s.validated(numLayers: layers) } catch let e as PruneError {
            guard case .setting(let which, let reason) = e else { return nil }
            #expect(!e.description.contains("\n"))
            return (which, reason)
        } catch { return nil }
        return nil
    }

    @Test func ratioOutsideRangeIsRefused() throws {
        for r in [-0.1, 1.0, 1.5, Double.nan] {
            let s = PruneSettings(ratio: r, layerStart: 1, layerEnd: 3, criterion: .element1)
            let m = refusal(s)
            #expect(m?.0 == .ratio, "\(r): \(m?.1 ?? "no error")")
            #expect(m?.1.contains("outside [0, 1)") == true)
        }
        let ok = PruneSettings(ratio: 0, layerStart: 1, layerEnd: 3, criterion: .element1)
        #expect(refusal(ok) == nil)
        #expect(try ok.validated(numLayers: 6) == ok)
    }

    @Test func emptyOrInvertedLayerRangeIsRefused() {
        for (a, b) in [(3, 3), (4, 2), (-1, 3), (2, 7)] {
            let s = PruneSettings(ratio: 0.2, layerStart: a, layerEnd: b, criterion: .element1)
            let m = refusal(s)
            #expect(m?.0 == .layers)
            #expect(m?.1 == "\(a):\(b) is an empty or inverted layer range (need 0 ≤ start < end ≤ 6; end is exclusive)")
        }
        // the default range of a 6-layer model is empty: the user must pass --layers
        let d = PruneSettings.defaultLayerRange(numLayers: 6)
        let s = PruneSettings(ratio: 0.2, layerStart: d.start, layerEnd: d.end, criterion: .element1)
        #expect(refusal(s)?.1.hasPrefix("4:4") == true)
    }

    /// Criterion and reduction are enums: the only way an unknown name gets in is a plan file, which is refused at
    /// the setting, while the known names keep the strings plans have always had.
    @Test func criterionAndReductionAreTyped() throws {
        let dir = try PlanTempDir()
        let c = PlanFixtures.config()
        let plan = try PlanFixtures.plan(c, PruneSettings(ratio: 0.25, layerStart: 1, layerEnd: 2, criterion: .paramSecond,
                                                          reduction: .mean), dir: dir)
        let text = String(decoding: try plan.encoded(), as: UTF8.self)
        #expect(text.contains("\"criterion\" : \"param_second\"") && text.contains("\"reduction\" : \"mean\""))
        let bad = Data(text.replacingOccurrences(of: "\"param_second\"", with: "\"taylor\"").utf8)
        let m = pruneMessage { _ = try PrunePlan.decode(bad, source: "p.json") }
        #expect(m?.hasPrefix("p.json: invalid prune plan: not a prune plan (at settings.criterion") == true, "\(m ?? "no error")")
    }

    @Test func otherSettingsAreChecked() {
        var s = PruneSettings(ratio: 0.2, layerStart: 1, layerEnd: 3, criterion: .l1, targetParams: 1.5)
        #expect(refusal(s)?.0 == .targetParams)
        s.targetParams = nil
        s.roundTo = 16
        #expect(refusal(s)?.0 == .roundTo)
        // the allocator refuses what `validated` refuses (it is the one check, not a second one)
        #expect(pruneMessage { _ = try Allocator.allocate(config: PlanFixtures.config(), settings: s, scores: []) }
                == "prune setting roundTo: 16 is not one of 8, 64, 128")
    }

    @Test func planRoundTripsThroughJSON() throws {
        let dir = try PlanTempDir()
        let c = PlanFixtures.config()
        let s = PruneSettings(ratio: 0.3, layerStart: 1, layerEnd: 5, criterion: .element1, attentionUnit: .queryHead,
                              roundTo: 8, seed: 9)
        var plan = try PlanFixtures.plan(c, s, dir: dir)
        plan.calibration = CalibrationProvenance(file: "/data/cal.txt", fileSHA256: String(repeating: "ab", count: 32),
                                                 seed: 42, samples: 2, sampleLength: 4, offsets: [7, 0], tokenCount: 20)
        let url = dir.file("plan.json")
        try plan.write(to: url)
        let back = try PrunePlan.read(from: url)
        #expect(back == plan)
        #expect(back.sourcePath == url.path)
        // pretty, sorted keys, re-encodes byte-identically
        let text = try String(contentsOf: url, encoding: .utf8)
        #expect(text.contains("\n  \"calibration\" : {"))
        #expect(text.range(of: "\"calibration\"")!.lowerBound < text.range(of: "\"created\"")!.lowerBound)
        #expect(try back.encoded() == Data(text.utf8))
        #expect(text.contains("\"attentionUnit\" : \"query-head\""))
        #expect(plan.version == llmpruneVersion)
        #expect(plan.parametersBefore == c.parameterCount)
        #expect(plan.parametersAfter == (try plan.prunedConfig(c)).parameterCount)
        #expect(plan.parametersAfter < plan.parametersBefore)
        // no temporary file left beside it
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path).sorted() == ["model.gguf", "plan.json"])
    }

    @Test func planForAnotherModelIsRefused() throws {
        let dir = try PlanTempDir()
        let c = PlanFixtures.config()
        let s = PruneSettings(ratio: 0.25, layerStart: 1, layerEnd: 5, criterion: .element1)
        let url = dir.file("plan.json")
        try PlanFixtures.plan(c, s, dir: dir).write(to: url)
        let plan = try PrunePlan.read(from: url)
        let model = dir.file("model.gguf").path
        #expect(try plan.check(against: c, modelPath: model).isEmpty)

        var wider = c
        wider.layers[2].intermediateSize = 64
        let m = pruneMessage { try plan.check(against: wider, modelPath: model) }
        #expect(m == "\(url.path): plan was made for another model: layer 2 has 8/2 heads and 64 MLP channels, plan has 8/2 and 48")
        var otherRope = c
        otherRope.ropeTheta = 500000
        #expect(pruneMessage { try plan.check(against: otherRope, modelPath: model) }?.contains("config fingerprint differs") == true)
        var otherVocab = c
        otherVocab.vocabSize = 65
        #expect(pruneMessage { try plan.check(against: otherVocab, modelPath: model) }?.contains("vocab size 65, plan has 64") == true)
        // same architecture, different file size: another checkpoint
        let other = try dir.write("other.gguf", Data(repeating: 1, count: 101))
        let m2 = pruneMessage { try plan.check(against: c, modelPath: other) }
        #expect(m2?.hasPrefix("\(url.path): plan was made for another model: \(other) has 101 bytes") == true)
        // a copy (same size, other path and time) is accepted with warnings
        let copy = try dir.write("copy.gguf", Data(repeating: 7, count: 100))
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: 3600)], ofItemAtPath: copy)
        #expect(try plan.check(against: c, modelPath: copy).count == 2)
    }

    @Test func corruptPlanFileIsOneLine() throws {
        let dir = try PlanTempDir()
        let url = dir.file("plan.json")
        try Data("{\"version\": \"0.1.0\"}".utf8).write(to: url)
        let m = pruneMessage { _ = try PrunePlan.read(from: url) }
        #expect(m?.hasPrefix("\(url.path): invalid prune plan: not a prune plan (missing key") == true)
        #expect(m?.contains("\n") == false)
        // a plan whose kept query heads break the GQA grouping
        let c = PlanFixtures.config()
        var plan = try PlanFixtures.plan(c, PruneSettings(ratio: 0.25, layerStart: 1, layerEnd: 2, criterion: .l1), dir: dir)
        plan.layers[0].keptQueryHeads = [0, 1, 4]
        plan.layers[0].keptKVHeads = [0, 1]
        try plan.write(to: url)
        #expect(pruneMessage { _ = try PrunePlan.read(from: url) }
                == "\(url.path): invalid prune plan: layer 1: kept query heads must fill the kept KV groups evenly (GQA)")
    }

    @Test func identityIsSizeTimeAndFingerprint() throws {
        let dir = try PlanTempDir()
        let c = PlanFixtures.config()
        let path = try PlanFixtures.modelFile(dir, bytes: 123)
        let id = try ModelIdentity(path: path, format: "gguf", config: c)
        #expect(id.fileSize == 123)
        #expect(id.modified > 0)
        #expect(id.configFingerprint.count == 64)
        #expect(id.layers == c.layers)
        var d = c
        d.layers[0].numHeads = 4
        #expect(try ModelIdentity.fingerprint(d) != id.configFingerprint)
    }
}

/// Plans on disk carry their model's fingerprint, and `apply` refuses a plan whose fingerprint differs: what the
/// fingerprint hashes must not move when the export gains presentation keys (pad_token_id, the epsilon's shortest
/// decimal). These are the fingerprints plans were written with before those keys (release binary of 1a50bcc).
@Test func fingerprintsOfPlansAlreadyWrittenStillMatch() throws {
    let tiny = PlanFixtures.packageRoot.appendingPathComponent("Tests/LlamaModelTests/Resources/tiny.gguf").path
    #expect(try ModelIdentity.fingerprint(ModelLoader.load(path: tiny, tokenizer: false).config)
            == "1e4cc60e6a502a690d323cee8a25b51a98b0a7d804b681866bee7f28d3cdb1f9")
    guard FileManager.default.fileExists(atPath: smolLM2PruningPath) else { return }
    let smol = try ModelLoader.load(path: smolLM2PruningPath, tokenizer: false).config
    #expect(smol.padTokenId != nil)      // the GGUF's padding id is read, and left out of the fingerprint
    #expect(try ModelIdentity.fingerprint(smol) == "e4d7b970ccf51b47830a8c703596b1a54139ae538259b874d59ab3d49091d2e5")
}
