// The `trust_remote_code` files of an output directory that stock transformers cannot load as its family's class:
// RemoteCode/configuration_llmprune.py and RemoteCode/modeling_llmprune.py (transformers' Llama classes with
// per-layer widths), compiled into the binary (SwiftPM `embedInCode`), written flat beside config.json, and the
// config.json keys that route AutoConfig / AutoModelForCausalLM to them (transformers docs, custom_models.md:
// `auto_map`, a model_type of its own). The python files are the one definition; nothing here restates them.
import Foundation
import LlamaModel

public enum RemoteCode {
    public static let configurationFile = "configuration_llmprune.py"
    public static let modelingFile = "modeling_llmprune.py"
    public static let architecture = "LlmpruneForCausalLM"

    /// Whether transformers' own class for the family cannot load `c`:
    /// - the layers differ in width (one `num_attention_heads` / `num_key_value_heads` / `intermediate_size` per
    ///   model in LlamaConfig, MistralConfig, Qwen2Config and SmolLM3Config);
    /// - a Llama whose query heads do not divide hidden_size: transformers 5's LlamaConfig refuses it
    ///   (`validate_architecture`, models/llama/configuration_llama.py), even with an explicit head_dim.
    public static func isNeeded(for c: LlamaConfig) -> Bool {
        !c.isUniform || (c.modelType == "llama" && c.hiddenSize % c.layers[0].numHeads != 0)
    }

    /// The keys added to (or replaced in) `c.configJSON()`: the model_type and class, the family as
    /// `base_model_type` (read back by `LlamaConfig(configJSON:source:)`), `auto_map`, and the window per layer
    /// spelled out for every family (`layer_types`, `sliding_window`), as the python reads it.
    public static func configKeys(for c: LlamaConfig) -> [String: Any] {
        let config = configurationFile.dropLast(3), modeling = modelingFile.dropLast(3)
        return [
            "model_type": LlamaConfig.remoteCodeModelType,
            LlamaConfig.baseModelTypeKey: c.modelType,
            "architectures": [architecture],
            "auto_map": ["AutoConfig": "\(config).LlmpruneConfig",
                         "AutoModel": "\(modeling).LlmpruneModel",
                         "AutoModelForCausalLM": "\(modeling).\(architecture)"],
            "layer_types": (0..<c.numLayers).map { c.attentionWindow(layer: $0) != nil ? "sliding_attention" : "full_attention" },
            "sliding_window": c.slidingWindow.map { $0 as Any } ?? NSNull(),
        ]
    }

    /// The two python files, name → contents.
    public static var files: [String: Data] {
        [configurationFile: Data(PackageResources.configuration_llmprune_py),
         modelingFile: Data(PackageResources.modeling_llmprune_py)]
    }
}
