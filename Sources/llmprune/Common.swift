import Cluster
import Foundation
import LlamaModel
import TensorCore

enum CLI {
    /// Sets the BLAS thread count from --threads (default: all cores).
    static func applyThreads(_ args: inout Arguments) throws {
        if let t = try args.int("threads", min: 1) { BLAS.threads = t }
    }

    static func printJSON<T: Encodable>(_ value: T) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        print(String(data: try enc.encode(value), encoding: .utf8)!)
    }

    /// Parses `--layers START:END` (END exclusive); default: keep the first 4 and the last 2 layers, as the
    /// reference does.
    static func layerRange(_ spec: String?, layers n: Int) throws -> Range<Int> {
        guard let spec else { return min(4, n)..<max(min(4, n), n - 2) }
        let parts = spec.split(separator: ":", omittingEmptySubsequences: false).map { Int($0) }
        guard parts.count == 2, let lo = parts[0], let hi = parts[1] else {
            throw UsageError("--layers: \"\(spec)\" is not START:END")
        }
        guard lo >= 0, hi <= n, lo < hi else {
            throw UsageError("--layers: \(lo):\(hi) is empty, inverted or outside 0:\(n)")
        }
        return lo..<hi
    }

    /// Peak resident set size of this process so far, in MB: VmHWM of its own address space (`peakRSSBytes`).
    /// Not getrusage's ru_maxrss: Linux carries the parent's peak into it across fork and exec (exec_mmap keeps the
    /// larger of the old and new address space's peaks), so a process started by a 2 GB test runner reported
    /// 2163 MB for a 939 MB eval.
    static func peakRSSMB() -> Double {
        Double(peakRSSBytes()) / (1024 * 1024)
    }

    static func loadModel(_ path: String, tokenizer: Bool) throws -> LoadedModel {
        try ModelLoader.load(path: path, tokenizer: tokenizer)
    }
}
