#!/usr/bin/env python3
"""Writes the golden fixtures for the Formats tests (run with the reference venv, e.g.
/work/main/.venv-ref/bin/python scripts/reference/make_quant_fixtures.py [--quant] [--smollm2]).

--quant (default when no flag is given): for every ggml type the Swift reader dequantizes, writes
  Tests/FormatsTests/Resources/quant/<TYPE>.bin       raw block bytes, as they would sit in a GGUF
  Tests/FormatsTests/Resources/quant/<TYPE>.f32       expected float32 (little-endian) from gguf-py's dequantize
  Tests/FormatsTests/Resources/quant/manifest.json    {type: {"ggml_type": n, "elements": n, "bytes": n}}
  Types gguf-py can quantize (F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) are made from random floats through
  gguf-py's quantize, plus a few random raw blocks; the K types (which gguf-py cannot quantize) are random
  raw block bytes with their fp16 super-block scales overwritten by sane values.

--smollm2: loads models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf through transformers
  (AutoModelForCausalLM.from_pretrained(dir, gguf_file=..., dtype=float32)) and writes
  Tests/FormatsTests/Resources/smollm2_golden.json with, per tensor, its HF shape, a few rows' first values and
  float64 checksums (sum, sum of |x|, row-weighted sum that detects row permutations).
"""
import json
import os
import sys

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RES = os.path.join(ROOT, "Tests", "FormatsTests", "Resources")


def f16_bits(x):
    return np.asarray(x, dtype=np.float16).view(np.uint16)


def make_quant():
    import gguf
    from gguf import GGMLQuantizationType as T
    from gguf.quants import quantize, dequantize

    out = os.path.join(RES, "quant")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(20240607)
    manifest = {}

    def emit(name, qtype, raw, n_elements):
        raw = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
        if qtype in (T.F32,):
            expected = raw.view(np.float32).copy()
        else:
            bs, ts = gguf.GGML_QUANT_SIZES[qtype]
            assert raw.size % ts == 0
            expected = dequantize(raw.reshape(1, -1), qtype).reshape(-1).astype(np.float32)
        assert expected.size == n_elements, (name, expected.size, n_elements)
        assert np.all(np.isfinite(expected)) or qtype in (T.F32, T.F16, T.BF16)
        raw.tofile(os.path.join(out, f"{name}.bin"))
        expected.astype("<f4").tofile(os.path.join(out, f"{name}.f32"))
        manifest[name] = {"ggml_type": int(qtype), "elements": int(n_elements), "bytes": int(raw.size)}

    # F32: the identity, with specials.
    v = rng.standard_normal(256).astype(np.float32)
    v[:4] = [np.inf, -np.inf, 0.0, -0.0]
    emit("F32", T.F32, v.view(np.uint8), 256)

    # F16: random bit patterns (no NaN, whose payload numpy may canonicalize) + specials + subnormals.
    bits = rng.integers(0, 65536, size=1024, dtype=np.uint32).astype(np.uint16)
    nan = (bits & 0x7C00) == 0x7C00
    bits[nan & ((bits & 0x03FF) != 0)] &= 0x83FF  # turn NaNs into finite numbers with the same mantissa
    bits[:8] = [0x0000, 0x8000, 0x7C00, 0xFC00, 0x0001, 0x03FF, 0x8001, 0x7BFF]
    emit("F16", T.F16, bits.view(np.uint8), 1024)

    # BF16: through gguf-py's quantize (round to nearest even) of random floats, plus raw patterns.
    x = (rng.standard_normal(512) * 10.0 ** rng.integers(-8, 8, size=512)).astype(np.float32)
    q = quantize(x.reshape(1, -1), T.BF16).reshape(-1)
    rawbits = rng.integers(0, 65536, size=512, dtype=np.uint32).astype(np.uint16)
    isnan = ((rawbits & 0x7F80) == 0x7F80) & ((rawbits & 0x007F) != 0)
    rawbits[isnan] &= 0xFF7F
    emit("BF16", T.BF16, np.concatenate([q, rawbits.view(np.uint8)]), 1024)

    # The 32-element block types that gguf-py can quantize: 28 quantized blocks + 4 random raw blocks.
    for name, qtype in [("Q4_0", T.Q4_0), ("Q4_1", T.Q4_1), ("Q5_0", T.Q5_0), ("Q5_1", T.Q5_1), ("Q8_0", T.Q8_0)]:
        bs, ts = gguf.GGML_QUANT_SIZES[qtype]
        x = (rng.standard_normal(28 * bs) * 0.05).astype(np.float32)
        x[:bs] = 0.0  # an all-zero block (d == 0)
        q = quantize(x.reshape(1, -1), qtype).reshape(-1)
        raw = rng.integers(0, 256, size=(4, ts), dtype=np.uint16).astype(np.uint8)
        raw[:, 0:2] = f16_bits(rng.uniform(-0.02, 0.02, size=4)).view(np.uint8).reshape(4, 2)
        if qtype in (T.Q4_1, T.Q5_1):
            raw[:, 2:4] = f16_bits(rng.uniform(-0.2, 0.2, size=4)).view(np.uint8).reshape(4, 2)
        emit(name, qtype, np.concatenate([q, raw.reshape(-1)]), 32 * bs)

    # K types: random raw super-blocks with sane fp16 scales (offsets from ggml-common.h block_qN_K).
    nb = 4
    k_layouts = {
        # name: (qtype, [(offset of an fp16 scale, low, high), ...])
        "Q2_K": (T.Q2_K, [(80, 0.001, 0.05), (82, 0.001, 0.05)]),        # scales[16] qs[64] d dmin
        "Q3_K": (T.Q3_K, [(108, -0.05, 0.05)]),                          # hmask[32] qs[64] scales[12] d
        "Q4_K": (T.Q4_K, [(0, 0.0005, 0.02), (2, 0.0005, 0.02)]),        # d dmin scales[12] qs[128]
        "Q5_K": (T.Q5_K, [(0, 0.0005, 0.02), (2, 0.0005, 0.02)]),        # d dmin scales[12] qh[32] qs[128]
        "Q6_K": (T.Q6_K, [(208, -0.01, 0.01)]),                          # ql[128] qh[64] scales[16] d
    }
    for name, (qtype, scales) in k_layouts.items():
        bs, ts = gguf.GGML_QUANT_SIZES[qtype]
        raw = rng.integers(0, 256, size=(nb, ts), dtype=np.uint16).astype(np.uint8)
        for off, lo, hi in scales:
            raw[:, off:off + 2] = f16_bits(rng.uniform(lo, hi, size=nb)).view(np.uint8).reshape(nb, 2)
        emit(name, qtype, raw, nb * bs)

    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    total = sum(os.path.getsize(os.path.join(out, n)) for n in os.listdir(out))
    print(f"wrote {len(manifest)} types to {out} ({total} bytes)")


def make_smollm2():
    import torch
    from transformers import AutoModelForCausalLM

    path = os.path.join(ROOT, "models", "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.exists(path):
        path = "/work/main/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                 dtype=torch.float32)
    sd = model.state_dict()
    names = ["model.embed_tokens.weight",
             "model.layers.0.input_layernorm.weight",
             "model.layers.0.self_attn.q_proj.weight",
             "model.layers.0.self_attn.k_proj.weight",
             "model.layers.0.self_attn.v_proj.weight",
             "model.layers.0.self_attn.o_proj.weight",
             "model.layers.0.mlp.down_proj.weight",
             "model.layers.29.self_attn.q_proj.weight",
             "model.layers.29.self_attn.k_proj.weight",
             "model.layers.29.mlp.gate_proj.weight",
             "model.norm.weight"]
    golden = {"gguf": os.path.basename(path), "config": {
        "num_hidden_layers": model.config.num_hidden_layers,
        "num_attention_heads": model.config.num_attention_heads,
        "num_key_value_heads": model.config.num_key_value_heads,
        "hidden_size": model.config.hidden_size,
        "intermediate_size": model.config.intermediate_size,
        "vocab_size": model.config.vocab_size,
        "tie_word_embeddings": bool(model.config.tie_word_embeddings)}, "tensors": {}}
    for n in names:
        w = sd[n].detach().to(torch.float64).numpy()
        w2 = w.reshape(w.shape[0], -1) if w.ndim > 1 else w.reshape(1, -1)
        rows = sorted({0, 1, 2, 3, 33, 65, w2.shape[0] // 2 + 1, w2.shape[0] - 1} & set(range(w2.shape[0])))
        row_sums = w2.sum(axis=1)
        weights = (np.arange(w2.shape[0]) % 97 + 1).astype(np.float64)
        golden["tensors"][n] = {
            "shape": list(w.shape),
            "first64": [float(v) for v in w.reshape(-1)[:64]],
            "rows": {str(r): [float(v) for v in w2[r, :16]] for r in rows},
            "sum": float(w.sum()),
            "abs_sum": float(np.abs(w).sum()),
            "row_weighted_sum": float((row_sums * weights).sum()),
        }
    golden["lm_head_is_embed"] = bool(torch.equal(sd["lm_head.weight"], sd["model.embed_tokens.weight"]))
    with open(os.path.join(RES, "smollm2_golden.json"), "w") as f:
        json.dump(golden, f, indent=1)
    print("wrote", os.path.join(RES, "smollm2_golden.json"))


if __name__ == "__main__":
    args = set(sys.argv[1:]) or {"--quant"}
    if "--quant" in args:
        make_quant()
    if "--smollm2" in args:
        make_smollm2()
