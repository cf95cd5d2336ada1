// Bad input through the real binary: every case must end in one line on stderr that names the file or flag
// at fault, a non-zero exit status, and no trap (a trap exits by signal, which Process reports as
// `.uncaughtSignal`).
import Foundation
import Testing

let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()
let fixtures = packageRoot.appendingPathComponent("Tests/LlamaModelTests/Resources")

struct RunResult { let status: Int32; let signaled: Bool; let stdout: String; let stderr: String }

/// The llmprune binary built next to the test bundle.
func llmpruneBinary() -> URL {
    let bin = Bundle.main.bundleURL.appendingPathComponent("llmprune")
    return FileManager.default.fileExists(atPath: bin.path) ? bin : packageRoot.appendingPathComponent(".build/debug/llmprune")
}

/// Runs the llmprune binary.
func llmprune(_ args: [String]) throws -> RunResult { try run(llmpruneBinary().path, args) }

/// Runs a program with the shared data directory set (and `extra` environment, in `cwd` when given), capturing
/// both streams.
func run(_ executable: String, _ args: [String], env extra: [String: String] = [:], cwd: URL? = nil) throws -> RunResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = args
    var env = ProcessInfo.processInfo.environment
    env["LLMPRUNE_DATA"] = packageRoot.deletingLastPathComponent().appendingPathComponent("shared/data").path
    for (k, v) in extra { env[k] = v }
    p.environment = env
    if let cwd { p.currentDirectoryURL = cwd }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return RunResult(status: p.terminationStatus, signaled: p.terminationReason == .uncaughtSignal,
                     stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
}

/// A scratch directory removed after the test.
final class Scratch {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("llmprune-cli-\(UUID().uuidString)")
    init() { try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) }
    deinit { try? FileManager.default.removeItem(at: url) }
    func file(_ name: String, _ data: Data) throws -> String {
        let f = url.appendingPathComponent(name)
        try data.write(to: f)
        return f.path
    }
}

func expectCleanFailure(_ r: RunResult, mentions: [String], sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(!r.signaled, "trapped: \(r.stderr)", sourceLocation: sourceLocation)
    #expect(r.status != 0, sourceLocation: sourceLocation)
    let lines = r.stderr.split(separator: "\n")
    #expect(lines.count == 1, "stderr: \(r.stderr)", sourceLocation: sourceLocation)
    for m in mentions {
        #expect(r.stderr.contains(m), "stderr lacks \"\(m)\": \(r.stderr)", sourceLocation: sourceLocation)
    }
}

func tinyGGUF() throws -> Data { try Data(contentsOf: fixtures.appendingPathComponent("tiny.gguf")) }

/// Byte offset of a GGUF tensor-info record's field after its name (n_dims), found by the name string.
func tensorInfoOffset(_ data: Data, name: String) -> Int {
    let key = Data(name.utf8)
    var lenField = Data()
    withUnsafeBytes(of: UInt64(key.count).littleEndian) { lenField.append(contentsOf: $0) }
    let r = data.range(of: lenField + key)!
    return r.upperBound
}

@Suite struct GGUFBadInput {
    @Test func badMagic() throws {
        let s = Scratch()
        var d = try tinyGGUF()
        d.replaceSubrange(0..<4, with: Data("GGML".utf8))
        let path = try s.file("bad.gguf", d)
        expectCleanFailure(try llmprune(["info", "--model", path]), mentions: ["bad.gguf", "magic"])
    }

    @Test func truncatedHeader() throws {
        let s = Scratch()
        let path = try s.file("trunc.gguf", try tinyGGUF().prefix(100))
        expectCleanFailure(try llmprune(["info", "--model", path]), mentions: ["trunc.gguf"])
    }

    @Test func tensorDataOutOfRange() throws {
        let s = Scratch()
        let d = try tinyGGUF()
        let path = try s.file("short.gguf", d.prefix(d.count - 4096))
        expectCleanFailure(try llmprune(["info", "--model", path]), mentions: ["short.gguf", "out of range"])
    }

    @Test func unknownQuantType() throws {
        let s = Scratch()
        var d = try tinyGGUF()
        let at = tensorInfoOffset(d, name: "blk.0.ffn_down.weight")
        let nDims = Int(d[at])
        let typeAt = at + 4 + 8 * nDims
        d.replaceSubrange(typeAt..<typeAt + 4, with: [99, 0, 0, 0])
        let path = try s.file("qtype.gguf", d)
        expectCleanFailure(try llmprune(["info", "--model", path]), mentions: ["qtype.gguf", "99"])
    }

    @Test func shapeMismatch() throws {
        let s = Scratch()
        var d = try tinyGGUF()
        // blk.0.attn_norm.weight is [64]; claim [32]: the data still fits but the model shape is wrong.
        let at = tensorInfoOffset(d, name: "blk.0.attn_norm.weight")
        d.replaceSubrange(at + 4..<at + 12, with: [32, 0, 0, 0, 0, 0, 0, 0])
        let path = try s.file("shape.gguf", d)
        expectCleanFailure(try llmprune(["info", "--model", path]), mentions: ["shape.gguf", "input_layernorm"])
    }
}

@Suite struct SafetensorsBadInput {
    /// The tiny model directory copied to scratch, with `model.safetensors` replaced by `data`.
    func modelDir(_ s: Scratch, safetensors data: Data?) throws -> String {
        let dir = s.url.appendingPathComponent("m")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: fixtures.appendingPathComponent("tiny/config.json"),
                                         to: dir.appendingPathComponent("config.json"))
        if let data { try data.write(to: dir.appendingPathComponent("model.safetensors")) }
        return dir.path
    }

    func original() throws -> Data { try Data(contentsOf: fixtures.appendingPathComponent("tiny/model.safetensors")) }

    func headerLength(_ d: Data) -> Int { Int(d.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }) }

    /// Rewrites the JSON header (same length, padded with spaces) through `edit`.
    func editHeader(_ d: Data, _ edit: (String) -> String) -> Data {
        let n = headerLength(d)
        var json = edit(String(decoding: d[8..<8 + n], as: UTF8.self))
        precondition(json.utf8.count <= n)
        json += String(repeating: " ", count: n - json.utf8.count)
        var out = d
        out.replaceSubrange(8..<8 + n, with: Data(json.utf8))
        return out
    }

    @Test func headerLengthPastEOF() throws {
        let s = Scratch()
        var d = try original()
        d.replaceSubrange(0..<8, with: [0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 0])
        expectCleanFailure(try llmprune(["info", "--model", try modelDir(s, safetensors: d)]),
                           mentions: ["model.safetensors", "header"])
    }

    @Test func corruptHeaderJSON() throws {
        let s = Scratch()
        let d = editHeader(try original()) { _ in "{\"oops\": [" }
        expectCleanFailure(try llmprune(["info", "--model", try modelDir(s, safetensors: d)]),
                           mentions: ["model.safetensors"])
    }

    @Test func unknownDtype() throws {
        let s = Scratch()
        let d = editHeader(try original()) { $0.replacingOccurrences(of: "\"F32\"", with: "\"Q9\"") }
        expectCleanFailure(try llmprune(["info", "--model", try modelDir(s, safetensors: d)]),
                           mentions: ["model.safetensors", "Q9"])
    }

    @Test func dataOutOfRange() throws {
        let s = Scratch()
        let d = try original()
        expectCleanFailure(try llmprune(["info", "--model", try modelDir(s, safetensors: d.prefix(d.count - 1000))]),
                           mentions: ["model.safetensors"])
    }

    @Test func missingConfig() throws {
        let s = Scratch()
        let dir = s.url.appendingPathComponent("noconfig")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: fixtures.appendingPathComponent("tiny/model.safetensors"),
                                         to: dir.appendingPathComponent("model.safetensors"))
        expectCleanFailure(try llmprune(["info", "--model", dir.path]), mentions: ["noconfig", "config.json"])
    }

    @Test func missingWeights() throws {
        let s = Scratch()
        expectCleanFailure(try llmprune(["info", "--model", try modelDir(s, safetensors: nil)]),
                           mentions: ["model.safetensors"])
    }

    @Test func missingTokenizer() throws {
        let r = try llmprune(["eval", "--model", fixtures.appendingPathComponent("tiny").path, "--dataset", "ptb",
                              "--max-windows", "1"])
        expectCleanFailure(r, mentions: ["tokenizer.json"])
    }
}

@Suite struct FlagBadInput {
    @Test func unknownDataset() throws {
        expectCleanFailure(try llmprune(["eval", "--model", fixtures.appendingPathComponent("tiny.gguf").path,
                                         "--dataset", "nosuchset"]), mentions: ["--dataset", "nosuchset"])
    }

    @Test(arguments: ["0", "-5", "1"])
    func nonPositiveSeqLen(value: String) throws {
        expectCleanFailure(try llmprune(["eval", "--model", fixtures.appendingPathComponent("tiny.gguf").path,
                                         "--dataset", "ptb", "--seq-len", value]), mentions: ["--seq-len"])
    }

    /// --also-first must be positive and within the windows evaluated.
    @Test(arguments: [("0", "1"), ("3", "2")])
    func badAlsoFirst(first: String, windows: String) throws {
        expectCleanFailure(try llmprune(["eval", "--model", fixtures.appendingPathComponent("tiny.gguf").path,
                                         "--dataset", "ptb", "--seq-len", "16", "--max-windows", windows, "--also-first", first]),
                           mentions: ["--also-first"])
    }

    @Test func missingModelFile() throws {
        expectCleanFailure(try llmprune(["info", "--model", "/nonexistent/model.gguf"]), mentions: ["/nonexistent/model.gguf"])
    }

    @Test func unknownFlagAndCommand() throws {
        expectCleanFailure(try llmprune(["info", "--model", "x", "--frobnicate"]), mentions: ["--frobnicate"])
        expectCleanFailure(try llmprune(["frobnicate"]), mentions: ["frobnicate"])
    }
}
