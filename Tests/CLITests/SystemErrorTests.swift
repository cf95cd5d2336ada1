// File-system failures through the real binary: a full disk, a read-only file system. Each must be one plain line
// naming the path ("no space left on device: PATH"), not Foundation's `Error Domain=NSCocoaErrorDomain Code=640 …`,
// and leave no partial output. The cases need to mount a small tmpfs (root and mount(8)); elsewhere they are
// skipped, saying so.
import Foundation
import Testing

/// A tmpfs mounted for the test and unmounted after it.
final class TinyMount {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("llmprune-mnt-\(UUID().uuidString)")
    let mounted: Bool

    init(options: String) {
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        mounted = (try? run("/bin/mount", ["-t", "tmpfs", "-o", options, "tmpfs", url.path]))?.status == 0
    }

    deinit {
        if mounted { _ = try? run("/bin/umount", [url.path]) }
        try? FileManager.default.removeItem(at: url)
    }

    /// Whether this process may mount a tmpfs (root in a namespace that allows it).
    static let allowed: Bool = getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/bin/mount")
        && TinyMount(options: "size=64k").mounted
}

struct SystemErrorTests {
    static let tiny = fixtures.appendingPathComponent("tiny.gguf").path

    /// The token ids of ptb-valid (≈ 1.6 MB as int32 with the tiny byte-level tokenizer) into `dir`.
    func writeIds(into dir: URL) throws -> (RunResult, String) {
        let out = dir.appendingPathComponent("ids.bin").path
        return (try llmprune(["tokenize", "--model", Self.tiny, "--dataset", "ptb-valid", "--out", out]), out)
    }

    @Test(.enabled(if: TinyMount.allowed, "skipped: needs root and permission to mount a tmpfs"))
    func diskFullIsOnePlainLine() throws {
        let m = TinyMount(options: "size=64k")
        try #require(m.mounted)
        let (r, out) = try writeIds(into: m.url)
        expectCleanFailure(r, mentions: ["no space left on device: \(out)"])
        #expect(!r.stderr.contains("NSCocoaErrorDomain") && !r.stderr.contains("UserInfo"), "\(r.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: m.url.path).isEmpty, "partial output left behind")
    }

    @Test(.enabled(if: TinyMount.allowed, "skipped: needs root and permission to mount a tmpfs"))
    func readOnlyFileSystemIsOnePlainLine() throws {
        let m = TinyMount(options: "size=64k,ro")
        try #require(m.mounted)
        let (r, out) = try writeIds(into: m.url)
        expectCleanFailure(r, mentions: ["read-only file system: \(out)"])
        #expect(!r.stderr.contains("NSCocoaErrorDomain"), "\(r.stderr)")
    }
}
