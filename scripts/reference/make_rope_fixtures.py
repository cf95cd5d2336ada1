#!/usr/bin/env python3
"""Golden fixtures for RoPE scaling: tiny random Llamas (transformers LlamaForCausalLM, fp32) with each
rope type, their logits, loss and layer-0 q/k/o gradients on a fixed token batch.

Output (default Tests/LlamaModelTests/Resources/rope/):
  <name>/            config.json + model.safetensors, for name in
                     linear (v5 rope_parameters), linear_v4 (legacy rope_scaling {"type": "linear"} + top-level
                     rope_theta), dynamic (max_position_embeddings 16 < seq 17), yarn (beta_fast 16),
                     yarn_mscale (truncate false, mscale / mscale_all_dim), llama3 (factor 8, orig 64)
  <name>.gguf        F32 GGUFs written like convert_hf_to_gguf.py: linear (rope.scaling.type linear),
                     yarn (rope.scaling.type yarn + yarn_beta_fast), llama3 (rope_freqs tensor);
                     transformers ignores these keys, so their reference is the safetensors model
  golden/*.bin       little-endian float32: logits [B, S, V]; d loss / dW of layer 0 q/k/o_proj [out, in]
  rope_golden.json   ids, per model: loss, files, inv_freq (fp32, as the rotary module holds it after the
                     forward) and attention_scaling

Run: scripts/reference/run.sh make_rope_fixtures.py [--out DIR]
"""
import argparse
import json
import math
import shutil
import sys
from pathlib import Path

import common
from make_tiny_fixtures import byte_vocab, llamacpp_permute, gguf_name, make_model, dumps_compact

BATCH, SEQ = 2, 17
IDS_SEED = 4321

BASE = dict(
    vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    head_dim=32, intermediate_size=64, rms_norm_eps=1e-5, max_position_embeddings=1024,
    tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, hidden_act="silu",
    attention_bias=False, mlp_bias=False, initializer_range=0.02,
)

MODELS = {
    # name: (config overrides, rope_parameters, seed)
    "linear": ({}, {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}, 11),
    "dynamic": ({"max_position_embeddings": 16}, {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}, 12),
    "yarn": ({}, {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 256,
                  "beta_fast": 16.0}, 13),
    "yarn_mscale": ({"max_position_embeddings": 2048},
                    {"rope_type": "yarn", "rope_theta": 50000.0, "factor": 8.0, "original_max_position_embeddings": 256,
                     "truncate": False, "mscale": 1.0, "mscale_all_dim": 0.5}, 14),
    "llama3": ({"max_position_embeddings": 512},
               {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 64}, 15),
}


def record(model, ids, out: Path, name: str):
    import numpy as np
    import torch
    model.zero_grad()
    res = model(input_ids=ids, labels=ids, use_cache=False)
    res.loss.backward()
    logits = res.logits.detach().float().numpy().astype("<f4")
    files = {"logits_file": f"golden/{name}_logits.bin"}
    (out / files["logits_file"]).write_bytes(logits.tobytes())
    attn = model.model.layers[0].self_attn
    for key, lin in [("q_proj", attn.q_proj), ("k_proj", attn.k_proj), ("o_proj", attn.o_proj)]:
        rel = f"golden/{name}_layer0_{key}_grad.bin"
        (out / rel).write_bytes(lin.weight.grad.detach().numpy().astype("<f4").tobytes())
        files[f"grad_{key}"] = rel
    rot = model.model.rotary_emb
    return dict(files, loss=float(res.loss), logits_shape=list(logits.shape),
                inv_freq=[float(x) for x in rot.inv_freq.float()],
                attention_scaling=float(rot.attention_scaling))


def write_gguf(model_dir: Path, out_path: Path, rope: dict):
    """F32 GGUF of a tiny rope model, keys as convert_hf_to_gguf.py writes them for `rope`."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file
    cfg = json.loads((model_dir / "config.json").read_text())
    sd = load_file(str(model_dir / "model.safetensors"))
    n_head, n_kv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    w = gguf.GGUFWriter(str(out_path), "llama")
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(out_path.stem)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_freq_base(float(rope["rope_theta"]))
    w.add_layer_norm_rms_eps(float(cfg["rms_norm_eps"]))
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_vocab_size(cfg["vocab_size"])
    w.add_rope_dimension_count(hd)
    t = rope["rope_type"]
    extra = {}
    if t == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(rope["factor"])
    elif t == "yarn":
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(rope["factor"])
        w.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
        if "beta_fast" in rope:
            w.add_rope_scaling_yarn_beta_fast(rope["beta_fast"])
    elif t == "llama3":
        # convert_hf_to_gguf.py LlamaModel.generate_extra_tensors (old_context_len taken from the rope dict here)
        import torch
        base, dim = rope["rope_theta"], hd
        freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        factor, lo, hi = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
        old = rope["original_max_position_embeddings"]
        lw, hw = old / lo, old / hi
        fac = []
        for f in freqs:
            wl = 2 * math.pi / f
            if wl < hw:
                fac.append(1)
            elif wl > lw:
                fac.append(factor)
            else:
                s = (old / wl - lo) / (hi - lo)
                fac.append(1 / ((1 - s) / factor + s))
        extra["rope_freqs.weight"] = torch.tensor(fac, dtype=torch.float32).numpy()
    tokens, types = byte_vocab()
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_scores([0.0] * len(tokens))
    w.add_bos_token_id(cfg["bos_token_id"])
    w.add_eos_token_id(cfg["eos_token_id"])
    for k, v in extra.items():
        w.add_tensor(k, np.ascontiguousarray(v, dtype=np.float32))
    order = sorted(sd, key=lambda k: (0, 0, "") if k == "model.embed_tokens.weight" else
                   ((1, int(k.split(".")[2]), k) if k.startswith("model.layers.") else (2, 0, k)))
    for k in order:
        data = sd[k].astype(np.float32)
        if k.endswith("q_proj.weight"):
            data = llamacpp_permute(data, n_head, n_head)
        elif k.endswith("k_proj.weight"):
            data = llamacpp_permute(data, n_head, n_kv)
        w.add_tensor(gguf_name(k), np.ascontiguousarray(data))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(common.REPO_ROOT / "Tests" / "LlamaModelTests" / "Resources" / "rope"))
    common.add_threads_arg(ap)
    args = ap.parse_args()
    common.set_threads(args.threads)
    import torch
    import transformers

    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    (out / "golden").mkdir(parents=True)
    g = torch.Generator().manual_seed(IDS_SEED)
    ids = torch.randint(0, BASE["vocab_size"], (BATCH, SEQ), generator=g)
    golden = {"generator": "scripts/reference/make_rope_fixtures.py", "torch_version": torch.__version__,
              "transformers_version": transformers.__version__, "input_ids": ids.tolist(), "models": {},
              "description": "loss = model(ids, labels=ids).loss; grads = d loss / dW (fp32, one backward); "
                             "inv_freq / attention_scaling read from model.model.rotary_emb after the forward"}
    for name, (over, rope, seed) in MODELS.items():
        model = make_model(dict(BASE, **over, rope_parameters=dict(rope)), seed)
        d = out / name
        model.save_pretrained(str(d))
        for extra in ["generation_config.json"]:
            (d / extra).unlink(missing_ok=True)
        re = common.load_model(d)
        rec = record(re, ids, out, name)
        rec["dir"] = name
        golden["models"][name] = rec
        if name == "dynamic":
            # L = 12 <= max_position_embeddings: plain RoPE (fresh model: no cached growth)
            short = ids[:, :12].contiguous()
            rec12 = record(common.load_model(d), short, out, "dynamic_short")
            rec12.update(dir=name, input_ids=short.tolist())
            golden["models"]["dynamic_short"] = rec12
        if name == "linear":
            # the same weights under the transformers-4 form of the config
            v4 = out / "linear_v4"
            shutil.copytree(d, v4)
            cfg = json.loads((v4 / "config.json").read_text())
            cfg.pop("rope_parameters")
            cfg["rope_theta"] = rope["rope_theta"]
            cfg["rope_scaling"] = {"type": "linear", "factor": rope["factor"]}
            (v4 / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
            r4 = record(common.load_model(v4), ids, out, "linear_v4")
            assert r4["loss"] == rec["loss"], (r4["loss"], rec["loss"])
            for f in ["logits_file", "grad_q_proj", "grad_k_proj", "grad_o_proj"]:
                assert (out / r4[f]).read_bytes() == (out / rec[f]).read_bytes(), f
                (out / r4[f]).unlink()
                r4[f] = rec[f]
            r4["dir"] = "linear_v4"
            golden["models"]["linear_v4"] = r4
        if name in ("linear", "yarn", "llama3"):
            write_gguf(d, out / f"{name}.gguf", rope)
            golden["models"][name]["gguf"] = f"{name}.gguf"
    (out / "rope_golden.json").write_text(dumps_compact(golden) + "\n")
    sizes = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    print(json.dumps({"sizes": sizes, "total": sum(sizes.values()),
                      "losses": {k: v["loss"] for k, v in golden["models"].items()},
                      "attention_scaling": {k: v["attention_scaling"] for k, v in golden["models"].items()}},
                     indent=1))


if __name__ == "__main__":
    sys.exit(main())
