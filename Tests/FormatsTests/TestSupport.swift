// Shared helpers for the Formats tests: fixture paths (found via #filePath, no bundle resources), temporary
// files, and a way to assert on a thrown FormatError's one-line message.
import Foundation
import Testing
@testable import Formats

enum Fixtures {
    static let testsDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    static let resources = testsDir.appendingPathComponent("Resources")
    static let packageRoot = testsDir.deletingLastPathComponent().deletingLastPathComponent()
    static let smolLM2 = packageRoot.appendingPathComponent("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    static var hasSmolLM2: Bool { FileManager.default.fileExists(atPath: smolLM2.path) }
}

/// A fresh temporary directory, removed when the value goes away.
final class TempDir {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("formats-tests-\(getpid())-\(UUID().uuidString)")
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

/// Runs `body`, expects a FormatError, and returns its description (checked to be one line).
func formatErrorMessage(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> String {
    do {
        try body()
        Issue.record("expected a FormatError, got success", sourceLocation: sourceLocation)
        return ""
    } catch let e as FormatError {
        let d = e.description
        #expect(!d.contains("\n"), "error message must be one line: \(d)", sourceLocation: sourceLocation)
        return d
    } catch {
        Issue.record("expected a FormatError, got \(error)", sourceLocation: sourceLocation)
        return ""
    }
}

extension Data {
    func le<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        T(littleEndian: withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) })
    }
    mutating func setLE<T: FixedWidthInteger>(_ v: T, at offset: Int) {
        Swift.withUnsafeBytes(of: v.littleEndian) { src in
            for i in 0..<src.count { self[self.startIndex + offset + i] = src[i] }
        }
    }
}

func floatsFromFile(_ url: URL) throws -> [Float] {
    let d = try Data(contentsOf: url)
    return d.withUnsafeBytes { raw in
        (0..<(d.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
    }
}
