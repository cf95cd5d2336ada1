// placeholder: Tokenizer
