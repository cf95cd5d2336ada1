#!/usr/bin/env python3
"""Writes the small hand-made seeds in scripts/fuzz/seeds/ (a 1-layer Llama GGUF with F32/F16/Q8_0 tensors and
per-layer metadata arrays, a heterogeneous config.json). Plans come from the CLI (see README.md)."""
import json, os, struct
D = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")

def s(x): b = x.encode(); return struct.pack("<Q", len(b)) + b
def kv(k, t, payload): return s(k) + struct.pack("<I", t) + payload
U32, I32, F32, STR, ARR = 4, 5, 6, 8, 9

def gguf(path, layer_arrays):
    d, heads, kvh, ff, vocab = 8, 2, 1, 16, 4
    meta = [kv("general.architecture", STR, s("llama")),
            kv("llama.block_count", U32, struct.pack("<I", 1)),
            kv("llama.embedding_length", U32, struct.pack("<I", d)),
            kv("llama.context_length", U32, struct.pack("<I", 64)),
            kv("llama.rope.freq_base", F32, struct.pack("<f", 10000.0)),
            kv("llama.attention.layer_norm_rms_epsilon", F32, struct.pack("<f", 1e-5)),
            kv("general.alignment", U32, struct.pack("<I", 32)),
            kv("tokenizer.ggml.model", STR, s("gpt2")),
            kv("tokenizer.ggml.tokens", ARR, struct.pack("<IQ", STR, vocab) + b"".join(s(t) for t in "abcd")),
            kv("tokenizer.ggml.bos_token_id", U32, struct.pack("<I", 1))]
    for key, v in (("attention.head_count", heads), ("attention.head_count_kv", kvh), ("feed_forward_length", ff)):
        if layer_arrays: meta.append(kv("llama." + key, ARR, struct.pack("<IQi", I32, 1, v)))
        else: meta.append(kv("llama." + key, U32, struct.pack("<I", v)))
    hd = d // heads
    tensors = [("token_embd.weight", [d, vocab], 0), ("output_norm.weight", [d], 0),
               ("blk.0.attn_norm.weight", [d], 0), ("blk.0.ffn_norm.weight", [d], 1),
               ("blk.0.attn_q.weight", [d, heads * hd], 0), ("blk.0.attn_k.weight", [d, kvh * hd], 1),
               ("blk.0.attn_v.weight", [d, kvh * hd], 0), ("blk.0.attn_output.weight", [heads * hd, d], 1),
               ("blk.0.ffn_gate.weight", [32, ff // 2], 8), ("blk.0.ffn_up.weight", [d, ff], 0),
               ("blk.0.ffn_down.weight", [ff, d], 1)]
    infos, data = b"", b""
    for name, shape, typ in tensors:
        n = 1
        for x in shape: n *= x
        size = {0: 4 * n, 1: 2 * n, 8: n // 32 * 34}[typ]
        infos += s(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", x) for x in shape)
        infos += struct.pack("<IQ", typ, len(data))
        data += bytes((i * 7 + 3) % 251 for i in range(size)) if typ == 8 else (
            b"".join(struct.pack("<f", (i % 13) / 13.0) for i in range(n)) if typ == 0 else
            b"".join(struct.pack("<e", (i % 13) / 13.0) for i in range(n)))
        data += b"\0" * (-len(data) % 32)
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta)) + b"".join(meta) + infos
    head += b"\0" * (-len(head) % 32)
    open(path, "wb").write(head + data)

gguf(os.path.join(D, "one_layer.gguf"), False)
gguf(os.path.join(D, "one_layer_arrays.gguf"), True)
json.dump({"model_type": "llama", "hidden_size": 8, "num_attention_heads": 2, "num_key_value_heads": 1,
           "head_dim": 4, "num_hidden_layers": 2, "intermediate_size": 16, "vocab_size": 4,
           "rope_scaling": None, "rope_theta": 10000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
           "bos_token_id": [1], "eos_token_id": 2,
           "layer_widths": [{"num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 16},
                            {"num_attention_heads": 1, "num_key_value_heads": 1, "intermediate_size": 7}]},
          open(os.path.join(D, "config_hetero.json"), "w"), indent=1)
