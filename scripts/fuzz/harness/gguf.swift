// libFuzzer target: GGUFFile(path:) on arbitrary bytes, then GGUFLlamaSource over it and every tensor decoded.
import Foundation
import Formats

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGGUF(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    let path = writeInput(data, size, name: "input.gguf")
    do {
        let f = try GGUFFile(path: path)
        for t in f.tensors where t.elementCount <= 1 << 22 { do { _ = try f.floats(t) } catch { checkError(error, paths: [path]) } }
        let s = try GGUFLlamaSource(f)
        _ = s.sourceDescription
        for n in s.tensorNames where (s.shape(of: n) ?? []).reduce(1, *) <= 1 << 22 {
            do { _ = try s.floats(n) } catch { checkError(error, paths: [path]) }
        }
    } catch {
        checkError(error, paths: [path])
    }
    return 0
}
