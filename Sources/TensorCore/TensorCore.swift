// placeholder: TensorCore
