// libFuzzer target: SafetensorsFile(path:) on arbitrary bytes (every tensor decoded), and the same bytes as a
// sharded index (model.safetensors.index.json) next to two valid shards, via ShardedSafetensors(indexPath:).
import Foundation
import Formats

/// Valid shards the index inputs can point at: copied once from $FUZZ_SHARD (a small safetensors file).
let shardNames: [String] = {
    guard let src = ProcessInfo.processInfo.environment["FUZZ_SHARD"] else { return [] }
    var names = [String]()
    for n in ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"] {
        let dst = fuzzDir + "/" + n
        try? FileManager.default.removeItem(atPath: dst)
        if (try? FileManager.default.copyItem(atPath: src, toPath: dst)) != nil { names.append(dst) }
    }
    return names
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafetensors(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    _ = shardNames
    // Inputs starting with '{' are shard indexes; everything else a single safetensors file.
    if size > 0, data.load(as: UInt8.self) == UInt8(ascii: "{") {
        let path = writeInput(data, size, name: "model.safetensors.index.json")
        do {
            let s = try ShardedSafetensors(indexPath: path)
            _ = s.sourceDescription
            for n in s.tensorNames { do { _ = try s.floats(n) } catch { checkError(error, paths: [path] + shardNames) } }
        } catch {
            checkError(error, paths: [path] + shardNames)
        }
        return 0
    }
    let path = writeInput(data, size, name: "model.safetensors")
    do {
        let f = try SafetensorsFile(path: path)
        for e in f.entries where e.elementCount <= 1 << 22 {
            do { _ = try f.floats(e.name) } catch { checkError(error, paths: [path]) }
        }
    } catch {
        checkError(error, paths: [path])
    }
    return 0
}
