// libFuzzer target: ModelLoader.config(path:) on a GGUF file (GGUFFile + llama.* metadata → LlamaConfig +
// GGUFLlamaSource), then the derived config's parameter count and fingerprint-relevant JSON.
import Foundation
import LlamaModel

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGGUFConfig(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    let path = writeInput(data, size, name: "model.gguf")
    do {
        let c = try ModelLoader.config(path: path)
        _ = c.parameterCount
        _ = try c.configJSON()
    } catch {
        checkError(error, paths: [path])
    }
    return 0
}
