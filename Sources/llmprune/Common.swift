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

    static func loadModel(_ path: String, tokenizer: Bool) throws -> LoadedModel {
        try ModelLoader.load(path: path, tokenizer: tokenizer)
    }
}
