// Shared by every fuzz harness: writes the input to a per-process file (the parsers take paths) and checks the
// contract "every bad input is a thrown error whose description is one line and names the file".
import Foundation
#if canImport(Glibc)
import Glibc
#endif

let fuzzDir: String = {
    let d = (ProcessInfo.processInfo.environment["FUZZ_TMP"] ?? "/tmp") + "/llmprune-fuzz-\(getpid())"
    try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}()

/// Writes `count` bytes at `start` to `fuzzDir/name` and returns the path.
func writeInput(_ start: UnsafeRawPointer, _ count: Int, name: String) -> String {
    let path = fuzzDir + "/" + name
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    precondition(fd >= 0, "cannot create \(path)")
    var off = 0
    while off < count {
        let n = write(fd, start + off, count - off)
        precondition(n > 0, "cannot write \(path)")
        off += n
    }
    close(fd)
    return path
}

/// A thrown error is fine if its message is one line and names one of `paths`; anything else is a finding.
func checkError(_ error: Error, paths: [String]) {
    let d = "\(error)"
    if d.contains("\n") || d.contains("\r") {
        fatalError("FUZZ: error message is not one line: \(d.debugDescription)")
    }
    // Naming the input, or another file under the fuzz directory (e.g. a shard an index lists), is fine.
    if !paths.contains(where: { d.contains($0) }) && !d.hasPrefix(fuzzDir + "/") {
        fatalError("FUZZ: error message does not name the file (\(paths)): \(d.debugDescription)")
    }
}
