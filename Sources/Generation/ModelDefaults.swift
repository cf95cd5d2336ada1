// What a checkpoint says about generating with it, beyond the weights: the ids that end a generation and the chat
// template, read where transformers reads them.
// - EOS ids: generate uses the generation config, which from_pretrained reads from generation_config.json and
//   otherwise derives from config.json; either holds eos_token_id as one id or a list (Llama-3.1: [128001, 128008,
//   128009]). A GGUF's is tokenizer.ggml.eos_token_id (transformers' GGUF loader puts it in the config).
// - Chat template: a GGUF's tokenizer.chat_template; in a directory, chat_template.jinja (what transformers 5 saves)
//   or else tokenizer_config.json's chat_template (a string, or a list of {name, template} whose "default" is used).
import Foundation
import LlamaModel

public enum ModelDefaults {
    /// The EOS ids of the model at `path` (loaded as `model`).
    public static func eosIds(_ model: LoadedModel) throws -> Set<Int32> {
        if model.format != "gguf" {
            let dir = URL(fileURLWithPath: model.path)
            for name in ["generation_config.json", "config.json"] {
                let url = dir.appendingPathComponent(name)
                guard let data = FileManager.default.contents(atPath: url.path) else { continue }
                guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
                    throw GenerationError.malformedFile(path: url.path, reason: "not a JSON object")
                }
                guard let v = obj["eos_token_id"], !(v is NSNull) else { continue }
                if let n = v as? NSNumber { return [Int32(truncatingIfNeeded: n.intValue)] }
                guard let list = v as? [NSNumber] else {
                    throw GenerationError.malformedFile(path: url.path, reason: "eos_token_id is not an id or a list of ids")
                }
                return Set(list.map { Int32(truncatingIfNeeded: $0.intValue) })
            }
        }
        return model.config.eosTokenId.map { [Int32($0)] } ?? []
    }

    /// The chat template of the model, or nil when it has none.
    public static func chatTemplate(_ model: LoadedModel) throws -> String? {
        if model.format == "gguf" { return model.chatTemplate }
        let dir = URL(fileURLWithPath: model.path)
        let jinja = dir.appendingPathComponent("chat_template.jinja")
        if let data = FileManager.default.contents(atPath: jinja.path) {
            guard let s = String(data: data, encoding: .utf8) else {
                throw GenerationError.malformedFile(path: jinja.path, reason: "not UTF-8 text")
            }
            return s
        }
        let url = dir.appendingPathComponent("tokenizer_config.json")
        guard let data = FileManager.default.contents(atPath: url.path) else { return model.chatTemplate }
        guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw GenerationError.malformedFile(path: url.path, reason: "not a JSON object")
        }
        guard let t = obj["chat_template"], !(t is NSNull) else { return model.chatTemplate }
        if let s = t as? String { return s }
        if let list = t as? [[String: Any]],
           let d = list.first(where: { ($0["name"] as? String) == "default" }), let s = d["template"] as? String {
            return s
        }
        throw GenerationError.malformedFile(path: url.path,
                                            reason: "chat_template is not a string or a list with a \"default\" template")
    }
}
