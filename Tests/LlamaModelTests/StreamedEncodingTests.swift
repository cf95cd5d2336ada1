// A low-memory stage's embedding encoded for its shard (StreamedLayers.encoded): the stored bytes when the dtype is
// the file's, otherwise the table's values narrowed to the dtype, the same bytes whether a safetensors table is
// converted whole or a few rows at a time (the last block partial); a GGUF's table is decoded whole.
import Foundation
import Testing
import Formats
@testable import LlamaModel

struct StreamedEncodingTests {
    @Test(arguments: ["tiny", "tiny.gguf"])
    func embeddingEncodedInBlocksIsTheNarrowedTable(_ name: String) throws {
        let path = resources.appendingPathComponent(name).path
        let stage = try ModelLoader.loadStage(path: path, layers: 0..<1, embedding: true, head: false, tokenizer: false,
                                              lowMemory: true)
        let s = try #require(stage.streamed)
        let e = "model.embed_tokens.weight"
        let table = try s.floats(e)
        let cols = stage.config.hiddenSize
        #expect(stage.config.vocabSize % 3 != 0, "a 3-row block leaves a partial last block")
        for dtype in TensorDType.allCases {
            let want = FloatEncoding.encode(table, as: dtype)
            for block in [1 << 22, 3 * cols, 1] {
                #expect(try s.encoded(e, as: dtype, blockElements: block) == want, "\(name) \(dtype) block \(block)")
            }
        }
        if name == "tiny" { #expect(try s.encoded(e, as: .f32) == s.storedBytes(e)?.bytes) }
    }
}
