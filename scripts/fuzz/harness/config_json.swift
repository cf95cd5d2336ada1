// libFuzzer target: LlamaConfig(configJSON:source:) — how ModelLoader parses a Hugging Face config.json —
// then the derived quantities every loader computes from it.
import Foundation
import LlamaModel

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfigJSON(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    let path = "/fuzz/config.json"
    do {
        let c = try LlamaConfig(configJSON: Data(bytes: data, count: size), source: path)
        _ = c.parameterCount
        _ = try c.configJSON()
    } catch {
        checkError(error, paths: [path])
    }
    return 0
}
