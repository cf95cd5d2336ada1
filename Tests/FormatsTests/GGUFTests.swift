// GGUF reader: metadata of every value type, alignment, v2 files, tensor directory, and the Llama view
// (HF names, HF shapes and llama.cpp's q/k permutation undone) on a small file the test writes itself.
import Foundation
import Testing
@testable import Formats

struct GGUFTests {
    @Test func metadataOfEveryValueType() throws {
        var w = GGUFWriter(alignment: 64)
        w.set("u8", .uint8(200))
        w.set("i8", .int8(-100))
        w.set("u16", .uint16(60000))
        w.set("i16", .int16(-30000))
        w.set("u32", .uint32(4_000_000_000))
        w.set("i32", .int32(-2_000_000_000))
        w.set("u64", .uint64(UInt64.max))
        w.set("i64", .int64(Int64.min))
        w.set("f32", .float32(0.1))
        w.set("f64", .float64(-2.5e300))
        w.set("yes", .bool(true))
        w.set("no", .bool(false))
        w.set("s", .string("héllo ✓"))
        w.set("empty", .string(""))
        w.set("strs", .strings(["a", "", "ĠHello", "<|im_start|>"]))
        w.set("i32s", .int32s([1, -2, 3]))
        w.set("f32s", .float32s([0.5, -1.25]))
        w.set("u8s", .array(.uint8, [.uint8(1), .uint8(255)]))
        w.set("nested", .array(.array, [.strings(["x", "y"]), .strings([]), .strings(["z"])]))
        w.set("empty_arr", .array(.int64, []))
        try w.addTensor(name: "a", shape: [3], values: [1, 2, 3])
        try w.addTensor(name: "b", shape: [2, 2], values: [4, 5, 6, 7])
        let tmp = try TempDir()
        let f = try GGUFFile(path: try tmp.write("m.gguf", try w.serialize()))
        let m = f.metadata
        #expect(f.version == 3)
        #expect(m["u8"] == .uint(200))
        #expect(m["i8"] == .int(-100))
        #expect(m["u16"]?.int == 60000)
        #expect(m["i16"]?.int == -30000)
        #expect(m["u32"]?.int == 4_000_000_000)
        #expect(m["i32"]?.int == -2_000_000_000)
        #expect(m["u64"] == .uint(UInt64.max))
        #expect(m["u64"]?.int == nil)                      // does not fit in Int
        #expect(m["i64"] == .int(Int64.min))
        #expect(m["f32"]?.double == Double(Float(0.1)))
        #expect(m["f64"]?.double == -2.5e300)
        #expect(m["yes"]?.bool == true)
        #expect(m["no"]?.bool == false)
        #expect(m["s"]?.string == "héllo ✓")
        #expect(m["empty"]?.string == "")
        #expect(m["strs"]?.stringArray == ["a", "", "ĠHello", "<|im_start|>"])
        #expect(m["i32s"]?.intArray == [1, -2, 3])
        #expect(m["f32s"]?.floatArray == [0.5, -1.25])
        #expect(m["u8s"]?.intArray == [1, 255])
        #expect(m["nested"]?.array?.map { $0.stringArray ?? ["?"] } == [["x", "y"], [], ["z"]])
        #expect(m["empty_arr"]?.intArray == [])
        #expect(m["s"]?.int == nil && m["strs"]?.intArray == nil)
        #expect(f.metadataTypes["u16"] == .uint16 && f.metadataTypes["strs"] == .array)
        #expect(f.metadataKeys.first == "u8" && f.metadataKeys.last == "general.alignment")

        // Alignment: the writer added general.alignment = 64; data section and tensor offsets honour it.
        #expect(m["general.alignment"]?.int == 64)
        #expect(f.alignment == 64)
        #expect(f.dataOffset % 64 == 0)
        #expect(f.tensors.map(\.name) == ["a", "b"])
        let b = try #require(f.tensor(named: "b"))
        #expect(b.offset == 64 && b.fileOffset == f.dataOffset + 64)
        #expect(b.shape == [2, 2] && b.hfShape == [2, 2] && b.type == .f32 && b.byteCount == 16)
        #expect(try f.floats(b) == [4, 5, 6, 7])
        #expect(try f.floats(try #require(f.tensor(named: "a"))) == [1, 2, 3])
        #expect(f.tensor(named: "zzz") == nil)
    }

    @Test func version2AndDefaultAlignment() throws {
        var w = GGUFWriter(version: 2)
        w.set("general.architecture", .string("llama"))
        try w.addTensor(name: "x", shape: [5], values: [1, 2, 3, 4, 5])
        try w.addTensor(name: "y", shape: [1], values: [9])
        let tmp = try TempDir()
        let f = try GGUFFile(path: try tmp.write("v2.gguf", try w.serialize()))
        #expect(f.version == 2)
        #expect(f.alignment == 32)
        #expect(f.dataOffset % 32 == 0)
        #expect(f.tensor(named: "y")?.offset == 32)
        #expect(try f.floats(try #require(f.tensor(named: "y"))) == [9])
    }

    @Test func largeTokenizerArrayParsesQuickly() throws {
        let tokens = (0..<50_000).map { "tok\($0)" }
        var w = GGUFWriter()
        w.set("tokenizer.ggml.tokens", .strings(tokens))
        w.set("tokenizer.ggml.token_type", .int32s([Int32](repeating: 1, count: 50_000)))
        let tmp = try TempDir()
        let path = try tmp.write("tok.gguf", try w.serialize())
        let start = Date()
        let f = try GGUFFile(path: path)
        let elapsed = Date().timeIntervalSince(start)
        #expect(f.metadata["tokenizer.ggml.tokens"]?.stringArray == tokens)
        #expect(f.metadata["tokenizer.ggml.token_type"]?.intArray?.count == 50_000)
        #expect(elapsed < 2.0, "parsing 50k tokens took \(elapsed) s")
    }

    // MARK: Llama view

    /// ggml ne = [cols, rows]; value = 100 * row + col, so each row is identifiable.
    static func rowTagged(rows: Int, cols: Int) -> [Float] {
        (0..<rows).flatMap { r in (0..<cols).map { c in Float(100 * r + c) } }
    }

    static func tinyLlama(headCount: GGUFMetadataValue, kvHeadCount: GGUFMetadataValue) throws -> GGUFWriter {
        var w = GGUFWriter()
        w.set("general.architecture", .string("llama"))
        w.set("llama.block_count", .uint32(2))
        w.set("llama.embedding_length", .uint32(12))
        w.set("llama.feed_forward_length", .uint32(8))
        w.set("llama.attention.head_count", headCount)
        w.set("llama.attention.head_count_kv", kvHeadCount)
        w.set("llama.rope.freq_base", .float32(10000))
        w.set("llama.attention.layer_norm_rms_epsilon", .float32(1e-5))
        try w.addTensor(name: "token_embd.weight", shape: [12, 5], values: rowTagged(rows: 5, cols: 12))
        for l in 0..<2 {
            try w.addTensor(name: "blk.\(l).attn_norm.weight", shape: [12], values: [Float](repeating: 1, count: 12))
            try w.addTensor(name: "blk.\(l).attn_q.weight", shape: [3, 12], values: rowTagged(rows: 12, cols: 3))
            try w.addTensor(name: "blk.\(l).attn_k.weight", shape: [3, 12], values: rowTagged(rows: 12, cols: 3))
            try w.addTensor(name: "blk.\(l).attn_v.weight", shape: [3, 12], values: rowTagged(rows: 12, cols: 3))
            try w.addTensor(name: "blk.\(l).attn_output.weight", shape: [12, 12], values: rowTagged(rows: 12, cols: 12))
            try w.addTensor(name: "blk.\(l).ffn_norm.weight", shape: [12], values: [Float](repeating: 2, count: 12))
            try w.addTensor(name: "blk.\(l).ffn_gate.weight", shape: [12, 8], values: rowTagged(rows: 8, cols: 12))
            try w.addTensor(name: "blk.\(l).ffn_up.weight", shape: [12, 8], values: rowTagged(rows: 8, cols: 12))
            try w.addTensor(name: "blk.\(l).ffn_down.weight", shape: [8, 12], values: rowTagged(rows: 12, cols: 8))
        }
        try w.addTensor(name: "output_norm.weight", shape: [12], values: [Float](repeating: 3, count: 12))
        try w.addTensor(name: "rope_freqs.weight", shape: [2], values: [1, 1])
        return w
    }

    /// Source row of each output row, from numpy:
    /// w.reshape(n, rows//n//2, 2, -1).swapaxes(2, 1).reshape(w.shape) on a 12-row matrix.
    static let numpyRowOrder: [Int: [Int]] = [
        1: [0, 2, 4, 6, 8, 10, 1, 3, 5, 7, 9, 11],
        2: [0, 2, 4, 1, 3, 5, 6, 8, 10, 7, 9, 11],
        3: [0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11],
    ]

    static func rowsOf(_ v: [Float], cols: Int) -> [Int] {
        stride(from: 0, to: v.count, by: cols).map { Int(v[$0]) / 100 }
    }

    @Test func llamaViewNamesShapesAndUnpermute() throws {
        let tmp = try TempDir()
        let w = try GGUFTests.tinyLlama(headCount: .uint32(2), kvHeadCount: .uint32(3))
        let src = try GGUFLlamaSource(try GGUFFile(path: try tmp.write("tiny.gguf", try w.serialize())))
        #expect(src.tensorNames.count == 1 + 2 * 9 + 1)
        #expect(src.unmappedTensorNames == ["rope_freqs.weight"])
        #expect(src.tensorNames.first == "model.embed_tokens.weight")
        #expect(src.tensorNames.last == "model.norm.weight")
        #expect(!src.contains("lm_head.weight"))
        #expect(src.hyperparameters.tiedEmbeddings)
        #expect(src.hyperparameters.blockCount == 2 && src.hyperparameters.embeddingLength == 12)
        #expect(src.hyperparameters.headCounts == [2, 2] && src.hyperparameters.kvHeadCounts == [3, 3])
        #expect(src.hyperparameters.vocabSize == 5)
        #expect(src.shape(of: "model.embed_tokens.weight") == [5, 12])
        #expect(src.shape(of: "model.layers.1.self_attn.q_proj.weight") == [12, 3])
        #expect(src.shape(of: "model.layers.0.mlp.gate_proj.weight") == [8, 12])
        #expect(src.shape(of: "model.layers.0.mlp.down_proj.weight") == [12, 8])
        #expect(src.shape(of: "model.layers.0.input_layernorm.weight") == [12])
        #expect(try src.floats("model.layers.0.post_attention_layernorm.weight") == [Float](repeating: 2, count: 12))

        let q = try src.floats("model.layers.0.self_attn.q_proj.weight")
        let k = try src.floats("model.layers.1.self_attn.k_proj.weight")
        let v = try src.floats("model.layers.0.self_attn.v_proj.weight")
        #expect(GGUFTests.rowsOf(q, cols: 3) == GGUFTests.numpyRowOrder[2])
        #expect(GGUFTests.rowsOf(k, cols: 3) == GGUFTests.numpyRowOrder[3])
        #expect(GGUFTests.rowsOf(v, cols: 3) == Array(0..<12))          // v is not permuted
        #expect(q[3 * 3 + 2] == 102)                                     // row 3 <- source row 1, column 2
        #expect(throws: FormatError.self) { try src.floats("model.layers.9.self_attn.q_proj.weight") }
    }

    @Test func perLayerHeadCountArrays() throws {
        let tmp = try TempDir()
        let w = try GGUFTests.tinyLlama(headCount: .array(.int32, [.int32(1), .int32(3)]),
                                        kvHeadCount: .array(.int32, [.int32(2), .int32(1)]))
        let src = try GGUFLlamaSource(try GGUFFile(path: try tmp.write("tiny.gguf", try w.serialize())))
        #expect(src.hyperparameters.headCounts == [1, 3])
        #expect(GGUFTests.rowsOf(try src.floats("model.layers.0.self_attn.q_proj.weight"), cols: 3) == GGUFTests.numpyRowOrder[1])
        #expect(GGUFTests.rowsOf(try src.floats("model.layers.1.self_attn.q_proj.weight"), cols: 3) == GGUFTests.numpyRowOrder[3])
        #expect(GGUFTests.rowsOf(try src.floats("model.layers.0.self_attn.k_proj.weight"), cols: 3) == GGUFTests.numpyRowOrder[2])
        #expect(GGUFTests.rowsOf(try src.floats("model.layers.1.self_attn.k_proj.weight"), cols: 3) == GGUFTests.numpyRowOrder[1])
    }

    @Test func headCountThatDoesNotDivideIsAClearError() throws {
        let tmp = try TempDir()
        let w = try GGUFTests.tinyLlama(headCount: .uint32(4), kvHeadCount: .uint32(3))  // 12 rows / (2*4) no
        let src = try GGUFLlamaSource(try GGUFFile(path: try tmp.write("tiny.gguf", try w.serialize())))
        let msg = formatErrorMessage { _ = try src.floats("model.layers.0.self_attn.q_proj.weight") }
        #expect(msg.contains("blk.0.attn_q.weight") && msg.contains("4 heads"))
    }

    @Test func nameMappingBothWays() {
        let pairs = [
            ("token_embd.weight", "model.embed_tokens.weight"), ("output_norm.weight", "model.norm.weight"),
            ("output.weight", "lm_head.weight"), ("blk.7.attn_norm.weight", "model.layers.7.input_layernorm.weight"),
            ("blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight"),
            ("blk.0.attn_k.bias", "model.layers.0.self_attn.k_proj.bias"),
            ("blk.12.attn_v.weight", "model.layers.12.self_attn.v_proj.weight"),
            ("blk.3.attn_output.weight", "model.layers.3.self_attn.o_proj.weight"),
            ("blk.3.ffn_norm.weight", "model.layers.3.post_attention_layernorm.weight"),
            ("blk.29.ffn_gate.weight", "model.layers.29.mlp.gate_proj.weight"),
            ("blk.29.ffn_up.weight", "model.layers.29.mlp.up_proj.weight"),
            ("blk.29.ffn_down.weight", "model.layers.29.mlp.down_proj.weight"),
        ]
        for (g, h) in pairs {
            #expect(GGUFLlamaSource.hfName(forGGUF: g) == h)
            #expect(GGUFLlamaSource.ggufName(forHF: h) == g)
        }
        #expect(GGUFLlamaSource.hfName(forGGUF: "rope_freqs.weight") == nil)
        #expect(GGUFLlamaSource.hfName(forGGUF: "blk.x.attn_q.weight") == nil)
        #expect(GGUFLlamaSource.ggufName(forHF: "model.layers.0.mlp.foo.weight") == nil)
    }
}
