#!/usr/bin/env python3
"""Write the committed golden fixtures for a tiny random GQA Llama.

Output (default Tests/LlamaModelTests/Resources/):
  tiny/            config.json, generation_config.json, model.safetensors  (tied, 3 layers, fp32)
  tiny_untied/     same, tie_word_embeddings=false, own lm_head, 2 layers
  tiny.gguf        tiny/ converted to GGUF F32 like llama.cpp's convert_hf_to_gguf.py
                   (attn_q / attn_k rows permuted, no output.weight because tied)
  tiny_q8.gguf     same, every 2-D weight quantized to Q8_0 with gguf.quants.quantize
  golden/*.bin     little-endian float32 logits [2,17,256], C order
  tiny_golden.json index: input ids, losses, per-token / per-window NLL, layer-0 hidden
                   states, which .bin holds which logits, and the GGUF round-trip diffs.

Run: scripts/reference/run.sh make_tiny_fixtures.py [--out DIR]
The script is deterministic (torch.manual_seed) on a given torch build.
"""
import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import common

SEED = 0
IDS_SEED = 1234
BATCH, SEQ = 2, 17

BASE_CONFIG = dict(
    vocab_size=256,
    hidden_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    intermediate_size=96,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    max_position_embeddings=256,
    tie_word_embeddings=True,
    bos_token_id=1,
    eos_token_id=2,
    hidden_act="silu",
    attention_bias=False,
    mlp_bias=False,
    initializer_range=0.02,
)

PROJ_STD = 0.08    # every Linear weight (q,k,v,o,gate,up,down, untied lm_head)
EMBED_STD = 0.25   # embed_tokens (also the tied output matrix) -> logits with std ~1-2
NORM_STD = 0.1     # RMSNorm weights = 1 + NORM_STD * randn


def make_model(config_kwargs, seed):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    config = LlamaConfig(**config_kwargs)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)  # default init, then scaled up deterministically below
    return scale_weights(model)


def scale_weights(model, bias_std=None):
    """Redraws every parameter in order from torch's generator at the fixtures' scales (logits with std ~1-2):
    norms 1 + NORM_STD*randn, embeddings EMBED_STD*randn, biases bias_std*randn (when given), the rest
    PROJ_STD*randn. Returns the model in eval mode. Every fixture script shares it."""
    import torch
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied lm_head is not listed separately
            if name.endswith("norm.weight"):
                p.copy_(1.0 + NORM_STD * torch.randn_like(p))
            elif "embed_tokens" in name:
                p.copy_(EMBED_STD * torch.randn_like(p))
            elif bias_std is not None and name.endswith(".bias"):
                p.copy_(bias_std * torch.randn_like(p))
            else:
                p.copy_(PROJ_STD * torch.randn_like(p))
    model.eval()
    return model


def save_hf(model, out_dir: Path):
    if out_dir.exists():
        shutil.rmtree(out_dir)
    model.save_pretrained(str(out_dir))  # transformers 5: always safetensors
    from safetensors import safe_open
    with safe_open(str(out_dir / "model.safetensors"), "pt") as f:
        keys = sorted(f.keys())
        meta = f.metadata()
    return keys, meta


def llamacpp_permute(w, n_head, n_head_kv=None):
    """llama.cpp convert_hf_to_gguf.py LlamaModel.permute (HF rotate-half -> interleaved rope rows)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
             .swapaxes(1, 2)
             .reshape(w.shape))


HF_TO_GGUF = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
LAYER_MAP = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(hf_name):
    if hf_name in HF_TO_GGUF:
        return HF_TO_GGUF[hf_name]
    parts = hf_name.split(".")
    assert parts[0] == "model" and parts[1] == "layers", hf_name
    return f"blk.{parts[2]}.{LAYER_MAP['.'.join(parts[3:])]}"


def byte_vocab():
    """256-entry GPT-2 byte-level vocab: ids 0,1,2 are <unk>/<s>/</s> (CONTROL), id i>=3 is byte i."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    b2u = dict(zip(bs, (chr(c) for c in cs)))
    tokens = [b2u[i] for i in range(256)]
    tokens[0], tokens[1], tokens[2] = "<unk>", "<s>", "</s>"
    types = [1] * 256  # NORMAL
    types[0] = 2       # UNKNOWN
    types[1] = types[2] = 3  # CONTROL
    return tokens, types


def write_gguf(model_dir: Path, out_path: Path, qtype_name: str, name: str):
    """Convert an HF llama checkpoint directory the way convert_hf_to_gguf.py does (subset)."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    cfg = json.loads((model_dir / "config.json").read_text())
    sd = load_file(str(model_dir / "model.safetensors"))
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // n_head
    qtype = {"F32": gguf.GGMLQuantizationType.F32, "Q8_0": gguf.GGMLQuantizationType.Q8_0}[qtype_name]
    ftype = {"F32": gguf.LlamaFileType.ALL_F32, "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[qtype_name]

    w = gguf.GGUFWriter(str(out_path), "llama")
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(name)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_freq_base(float(cfg["rope_theta"] if "rope_theta" in cfg else cfg["rope_parameters"]["rope_theta"]))
    w.add_layer_norm_rms_eps(float(cfg["rms_norm_eps"]))
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_file_type(ftype)
    w.add_vocab_size(cfg["vocab_size"])
    w.add_rope_dimension_count(head_dim)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    tokens, types = byte_vocab()
    assert len(tokens) == cfg["vocab_size"]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    # No merges (a pure byte vocab; GGUFWriter skips empty arrays anyway). All-zero scores are
    # written because transformers' GGUF tokenizer converter derives merges from scores when the
    # file has no merges list (KeyError 'scores' otherwise); with single-character tokens it
    # derives none.
    w.add_token_scores([0.0] * len(tokens))
    w.add_bos_token_id(cfg["bos_token_id"])
    w.add_eos_token_id(cfg["eos_token_id"])
    w.add_unk_token_id(0)
    w.add_add_bos_token(False)

    layout = []
    # Same order as the safetensors file (sorted keys), like the converter iterating the checkpoint
    # would give; order in the file does not matter for readers.
    order = ["model.embed_tokens.weight"] + sorted(k for k in sd if k.startswith("model.layers.")) \
        + ["model.norm.weight"] + (["lm_head.weight"] if "lm_head.weight" in sd else [])
    # numeric layer order
    order = sorted(order, key=lambda k: (0, 0, "") if k == "model.embed_tokens.weight" else
                   ((1, int(k.split(".")[2]), k) if k.startswith("model.layers.") else (2, 0, k)))
    for k in order:
        data = sd[k].astype(np.float32)
        if k.endswith("q_proj.weight"):
            data = llamacpp_permute(data, n_head, n_head)
        elif k.endswith("k_proj.weight"):
            data = llamacpp_permute(data, n_head, n_kv)
        gname = gguf_name(k)
        if data.ndim == 2 and qtype != gguf.GGMLQuantizationType.F32:
            q = gguf.quants.quantize(data, qtype)
            w.add_tensor(gname, q, raw_dtype=qtype)
            layout.append([gname, list(data.shape), qtype_name])
        else:
            w.add_tensor(gname, np.ascontiguousarray(data, dtype=np.float32))
            layout.append([gname, list(data.shape), "F32"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return layout


def forward_record(model, ids, bin_path: Path, rel: str):
    """Run the model; write logits to bin_path; return the JSON record."""
    import numpy as np
    import torch
    with torch.inference_mode():
        out = model(input_ids=ids, labels=ids, output_hidden_states=True, use_cache=False)
    logits = out.logits.float()
    lp = torch.log_softmax(logits[:, :-1], dim=-1)
    nll = -lp.gather(-1, ids[:, 1:, None]).squeeze(-1)  # [B, S-1] fp32
    arr = logits.numpy().astype("<f4")
    bin_path.parent.mkdir(parents=True, exist_ok=True)
    bin_path.write_bytes(arr.tobytes())
    return {
        "logits_file": rel,
        "logits_shape": list(arr.shape),
        "logits_sha256": hashlib.sha256(arr.tobytes()).hexdigest(),
        "logits_first8": [float(x) for x in arr.reshape(-1)[:8]],
        "logits_abs_max": float(np.abs(arr).max()),
        "loss": float(out.loss),
        "per_token_nll": [[float(x) for x in row] for row in nll],
        "window_nll_sums": [float(x) for x in nll.double().sum(dim=1)],
        "nll_mean": float(nll.double().mean()),
        "hidden_after_layer0_batch0": [[float(x) for x in row] for row in out.hidden_states[1][0].float()],
        "hidden_after_layer0_shape": list(out.hidden_states[1][0].shape),
    }, logits


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(common.REPO_ROOT / "Tests" / "LlamaModelTests" / "Resources"))
    common.add_threads_arg(ap)
    args = ap.parse_args()
    common.set_threads(args.threads)

    import numpy as np
    import torch
    import transformers
    import gguf

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "golden").mkdir(exist_ok=True)

    # ---- models ---------------------------------------------------------------------------
    tied = make_model(BASE_CONFIG, SEED)
    untied_cfg = dict(BASE_CONFIG, tie_word_embeddings=False, num_hidden_layers=2)
    untied = make_model(untied_cfg, SEED + 1)
    assert tied.lm_head.weight.data_ptr() == tied.model.embed_tokens.weight.data_ptr(), "tied model is not tied"
    assert untied.lm_head.weight.data_ptr() != untied.model.embed_tokens.weight.data_ptr()

    tied_keys, tied_meta = save_hf(tied, out / "tiny")
    untied_keys, untied_meta = save_hf(untied, out / "tiny_untied")
    common.log("tied safetensors keys:", tied_keys)
    common.log("untied has lm_head:", "lm_head.weight" in untied_keys)

    # reload from disk: the golden values must come from what is committed
    tied_re = common.load_model(out / "tiny")
    untied_re = common.load_model(out / "tiny_untied")

    g = torch.Generator().manual_seed(IDS_SEED)
    ids = torch.randint(0, BASE_CONFIG["vocab_size"], (BATCH, SEQ), generator=g)

    golden = {
        "description": "Golden outputs of transformers LlamaForCausalLM (fp32, CPU) for the tiny random GQA Llama "
                       "fixtures. Logits are little-endian float32 C-order [batch, seq, vocab] in logits_file. "
                       "loss = model(ids, labels=ids).loss (mean next-token CE over batch*(seq-1) tokens); "
                       "per_token_nll[b][t] = -log_softmax(logits[b,t])[ids[b,t+1]] (fp32); "
                       "window_nll_sums = per-row sums in float64; hidden_after_layer0_batch0 = "
                       "output_hidden_states[1][0] (residual stream after decoder layer 0, before final norm).",
        "generator": "scripts/reference/make_tiny_fixtures.py",
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "gguf_py_version": getattr(gguf, "__version__", None) or _pkg_version("gguf"),
        "init": {"seed_tied": SEED, "seed_untied": SEED + 1, "proj_std": PROJ_STD, "embed_std": EMBED_STD,
                 "norm": f"1 + {NORM_STD} * randn", "ids_seed": IDS_SEED},
        "input_ids": ids.tolist(),
        "input_shape": [BATCH, SEQ],
        "models": {},
    }

    rec, tied_logits = forward_record(tied_re, ids, out / "golden" / "tiny_logits.bin", "golden/tiny_logits.bin")
    with torch.inference_mode():
        mem = tied(input_ids=ids, use_cache=False).logits
    assert torch.equal(mem, tied_logits), "reloaded tied model differs from in-memory model"
    rec.update({"dir": "tiny", "config": _cfg_summary(tied_re.config), "safetensors_keys": tied_keys,
                "safetensors_metadata": tied_meta})
    golden["models"]["tiny"] = rec

    rec, _ = forward_record(untied_re, ids, out / "golden" / "tiny_untied_logits.bin", "golden/tiny_untied_logits.bin")
    rec.update({"dir": "tiny_untied", "config": _cfg_summary(untied_re.config), "safetensors_keys": untied_keys,
                "safetensors_metadata": untied_meta})
    golden["models"]["tiny_untied"] = rec

    # ---- GGUF ---------------------------------------------------------------------------
    layout_f32 = write_gguf(out / "tiny", out / "tiny.gguf", "F32", "tiny-llama")
    layout_q8 = write_gguf(out / "tiny", out / "tiny_q8.gguf", "Q8_0", "tiny-llama-q8_0")

    g_f32 = common.load_model(out / "tiny.gguf")
    rec, gguf_logits = forward_record(g_f32, ids, out / "golden" / "tiny_gguf_logits.bin", "golden/tiny_gguf_logits.bin")
    diff = float((gguf_logits - tied_logits).abs().max())
    common.log(f"tiny.gguf via transformers vs safetensors: max abs logit diff = {diff:.3e}")
    # the F32 GGUF must reproduce the safetensors model; do not store a duplicate .bin
    (out / "golden" / "tiny_gguf_logits.bin").unlink()
    golden["gguf_f32"] = {
        "file": "tiny.gguf",
        "source": "tiny",
        "tensors": layout_f32,
        "max_abs_logit_diff_vs_safetensors": diff,
        "loss": rec["loss"],
        "transformers_config": _cfg_summary(g_f32.config),
        "note": "loaded with AutoModelForCausalLM.from_pretrained(Resources, gguf_file='tiny.gguf'); "
                "logits are those of models.tiny up to max_abs_logit_diff_vs_safetensors",
    }
    # weight-level check: transformers' un-permute recovers the HF weights exactly
    wdiff = max(float((a - b).abs().max()) for a, b in zip(g_f32.state_dict().values(), tied_re.state_dict().values()))
    golden["gguf_f32"]["max_abs_weight_diff_vs_safetensors"] = wdiff

    g_q8 = common.load_model(out / "tiny_q8.gguf")
    rec, q8_logits = forward_record(g_q8, ids, out / "golden" / "tiny_q8_logits.bin", "golden/tiny_q8_logits.bin")
    rec.update({"file": "tiny_q8.gguf", "source": "tiny", "tensors": layout_q8,
                "max_abs_logit_diff_vs_f32": float((q8_logits - tied_logits).abs().max()),
                "transformers_config": _cfg_summary(g_q8.config),
                "note": "transformers dequantizes Q8_0 with gguf-py (d * q, d stored as fp16) and runs the fp32 "
                        "forward; these are its logits"})
    golden["models"]["tiny_q8_gguf"] = rec

    # tokenizer from GGUF (informational)
    try:
        tok = common.load_tokenizer(out / "tiny.gguf")
        enc = tok("Hi!", add_special_tokens=True)["input_ids"]
        golden["gguf_f32"]["tokenizer_check"] = {"class": type(tok).__name__, "encode_Hi!": enc,
                                                 "bos_token_id": tok.bos_token_id}
    except Exception as e:  # noqa: BLE001
        golden["gguf_f32"]["tokenizer_check"] = {"error": f"{type(e).__name__}: {e}"[:300]}

    (out / "tiny_golden.json").write_text(dumps_compact(golden) + "\n")

    sizes = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    total = sum(sizes.values())
    print(json.dumps({"out": str(out), "sizes": sizes, "total_bytes": total,
                      "gguf_f32_max_abs_logit_diff": diff, "gguf_f32_max_abs_weight_diff": wdiff,
                      "q8_max_abs_logit_diff_vs_f32": golden["models"]["tiny_q8_gguf"]["max_abs_logit_diff_vs_f32"],
                      "losses": {k: v["loss"] for k, v in golden["models"].items()},
                      "tied_safetensors_keys": tied_keys,
                      "tokenizer_check": golden["gguf_f32"]["tokenizer_check"]}, indent=1))


def dumps_compact(obj):
    """json.dumps(indent=1), but lists of numbers on one line."""
    import re
    text = json.dumps(obj, indent=1)
    num_list = re.compile(r"\[\s*(-?[0-9][-0-9.eE+]*(?:,\s*-?[0-9][-0-9.eE+]*)*)\s*\]")
    return num_list.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)


def _cfg_summary(c):
    keys = ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "head_dim", "intermediate_size", "rms_norm_eps", "max_position_embeddings", "tie_word_embeddings",
            "bos_token_id", "eos_token_id"]
    d = {k: getattr(c, k, None) for k in keys}
    rp = getattr(c, "rope_parameters", None)
    d["rope_theta"] = (rp or {}).get("rope_theta", getattr(c, "rope_theta", None)) if isinstance(rp, dict) else getattr(c, "rope_theta", None)
    return d


def _pkg_version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:  # noqa: BLE001
        return None


if __name__ == "__main__":
    sys.exit(main())
