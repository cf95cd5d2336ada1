// placeholder: LlamaModel
