// placeholder: Eval
