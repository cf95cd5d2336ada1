// Small models and a temporary directory shared by the export tests.
import Foundation
import LlamaModel
@testable import ModelExport

enum ExportFixtures {
    static let testsDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    static let packageRoot = testsDir.deletingLastPathComponent().deletingLastPathComponent()
    static let tokenizerJSON = packageRoot.appendingPathComponent("Tests/TokenizerTests/Resources/tiny_llama3.json")

    /// A tiny GQA model: hidden 32, head_dim 8, 6 layers of 8 query heads over 2 KV heads and 48 MLP channels,
    /// unless `widths` gives each layer its own (heads, KV heads, channels), as a pruned model has.
    static func config(tied: Bool = false, widths: [(Int, Int, Int)]? = nil) -> LlamaConfig {
        let shapes = (widths ?? Array(repeating: (8, 2, 48), count: 6))
            .map { LayerShape(numHeads: $0.0, numKVHeads: $0.1, intermediateSize: $0.2) }
        return LlamaConfig(vocabSize: 64, hiddenSize: 32, headDim: 8, layers: shapes, rmsNormEps: 1e-5,
                           ropeTheta: 10000, maxPositionEmbeddings: 128, tieWordEmbeddings: tied,
                           bosTokenId: 1, eosTokenId: 2)
    }

    /// Per-layer widths as a pruning leaves them: the first and last layers whole, the middle ones cut unevenly.
    static let heterogeneous = [(8, 2, 48), (4, 2, 24), (6, 2, 40), (4, 1, 16), (8, 2, 30), (8, 2, 48)]

    /// A heterogeneous untied model and a uniform tied one.
    static func models() -> [LlamaWeights] {
        [LlamaWeights.random(config: config(widths: heterogeneous), seed: 2),
         LlamaWeights.random(config: config(tied: true), seed: 4)]
    }

}

/// A fresh temporary directory, removed when the value goes away.
final class ExportTempDir {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("export-tests-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }
    func file(_ name: String) -> URL { url.appendingPathComponent(name) }
}

/// The one-line message of the ExportError `body` throws.
func exportMessage(_ body: () throws -> Void) -> String? {
    do { try body() } catch let e as ExportError { return e.description } catch { return "not an ExportError: \(error)" }
    return nil
}
