"""Shared helpers for the llmprune PyTorch reference scripts.

Everything is loaded from local files; nothing is ever fetched from a hub.
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO_ROOT / "models" / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
DATA_ROOT = Path(os.environ.get("LLMPRUNE_DATA", REPO_ROOT.parent / "shared" / "data"))

DATASETS = {
    "wikitext2": "wikitext-2-raw/wiki.test.raw",
    "ptb": "ptb/ptb.test.txt",
    "ptb-valid": "ptb/ptb.valid.txt",
}

# Never talk to the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def add_threads_arg(parser):
    parser.add_argument("--threads", type=int, default=int(os.environ.get("THREADS", "2")),
                        help="torch intra-op threads (default: $THREADS or 2)")


def set_threads(n: int):
    import torch
    os.environ["OMP_NUM_THREADS"] = str(n)
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass


def _split(path):
    p = Path(path)
    if p.is_dir():
        return str(p), {}
    if p.suffix == ".gguf":
        return str(p.parent), {"gguf_file": p.name}
    raise ValueError(f"model path must be a directory (config.json + safetensors) or a .gguf file: {path}")


def _config_json(path):
    import json
    p = Path(path)
    if not p.is_dir() or not (p / "config.json").is_file():
        return {}
    return json.loads((p / "config.json").read_text())


def read_layer_widths(path):
    """The `layer_widths` list of a model directory's config.json (llmprune's per-layer widths), or None."""
    return _config_json(path).get("layer_widths")


def is_remote_code(path):
    """Whether a model directory is one of llmprune's trust_remote_code outputs (model_type "llmprune",
    configuration_llmprune.py + modeling_llmprune.py beside config.json)."""
    return _config_json(path).get("model_type") == "llmprune"


def load_model(path, dtype=None):
    """Directory -> from_pretrained(dir); .gguf file -> from_pretrained(dirname, gguf_file=basename). fp32, eval.

    llmprune's remote-code directories load with trust_remote_code=True (the python files they carry). An
    older heterogeneous directory (plain model_type with `layer_widths`) is loaded by
    `load_heterogeneous_model` instead.
    """
    import torch
    from transformers import AutoModelForCausalLM
    d, kw = _split(path)
    if not kw and is_remote_code(d):
        kw["trust_remote_code"] = True
    elif not kw and read_layer_widths(d) is not None:
        return load_heterogeneous_model(d, dtype=dtype)
    model = AutoModelForCausalLM.from_pretrained(d, dtype=dtype or torch.float32, local_files_only=True, **kw)
    model.eval()
    return model


def _zero_attention(hidden, bias=False):
    """Stand-in for a self_attn whose every head was pruned: contributes nothing to the residual.
    Keeps empty q/k/v/o Linears so a state dict with [0, H] / [H, 0] tensors still loads strictly."""
    from torch import nn

    class ZeroAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj = nn.Linear(hidden, 0, bias=bias)
            self.k_proj = nn.Linear(hidden, 0, bias=bias)
            self.v_proj = nn.Linear(hidden, 0, bias=bias)
            self.o_proj = nn.Linear(0, hidden, bias=bias)

        def forward(self, hidden_states, *args, **kwargs):
            return hidden_states.new_zeros(hidden_states.shape), None

    return ZeroAttention()


def load_heterogeneous_model(d, dtype=None):
    """Load an llmprune directory whose config.json has per-layer `layer_widths`.

    Built for transformers 5.24 `modeling_llama.py`. What is patched, per layer i, with
    (nq, nkv, inter) = layer_widths[i] and hd = config.head_dim, H = config.hidden_size:
      * self_attn.q_proj = Linear(H, nq*hd), k_proj/v_proj = Linear(H, nkv*hd),
        o_proj = Linear(nq*hd, H) (bias=config.attention_bias, i.e. none);
      * self_attn.num_key_value_groups = nq // nkv — the only count LlamaAttention.forward and
        the eager/sdpa attention functions read (repeat_kv / enable_gqa); the q/k/v reshape is
        `view(*input_shape, -1, head_dim)` and the output reshape `reshape(*input_shape, -1)`,
        so the head counts themselves come from the weight shapes. head_dim and scaling are global.
        For information only, self_attn.num_heads / num_key_value_heads are also set.
      * mlp.gate_proj/up_proj = Linear(H, inter), down_proj = Linear(inter, H) (bias=config.mlp_bias);
        mlp.intermediate_size = inter (informational; forward only calls the Linears).
      * nq == 0: self_attn is replaced by a module returning zeros (view(..., -1, hd) cannot infer
        a dimension of an empty tensor); it holds empty q/k/v/o Linears so [0, H]-shaped tensors in
        the file still load strictly. inter == 0 needs nothing (Linear(H, 0) works, output 0).
        (llmprune's own LlamaConfig rejects 0 widths; this is for hand-made/other tools' files.)
    The config object stays shared (not copied per layer): after construction LlamaAttention only
    reads config._attn_implementation, and LlamaMLP reads nothing. The top-level counts in
    config.json (the widest layer) are used only to build the model before the layers are replaced.
    Then the safetensors state dict is loaded with strict=True (for tied embeddings, a missing
    lm_head.weight is the only key allowed to be absent; the weight stays tied to embed_tokens).
    """
    import torch
    from torch import nn
    from safetensors.torch import load_file
    from transformers import AutoConfig, LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM

    dtype = dtype or torch.float32
    if is_remote_code(d):
        # An llmprune remote-code directory, built here without its python: the base family's config class
        # (the top-level counts are the widest layer's).
        from transformers import CONFIG_MAPPING
        raw = _config_json(d)
        for k in ("model_type", "auto_map", "architectures", "base_model_type", "layer_widths"):
            raw.pop(k, None)
        config = CONFIG_MAPPING[_config_json(d)["base_model_type"]](**raw)
    else:
        config = AutoConfig.from_pretrained(d, local_files_only=True)
    widths = read_layer_widths(d)
    if len(widths) != config.num_hidden_layers:
        raise ValueError(f"layer_widths has {len(widths)} entries, num_hidden_layers is {config.num_hidden_layers}")
    hd = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    H = config.hidden_size
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        # The model_type's own class (Qwen2: q/k/v biases, no o or MLP bias; Mistral: its window); the Linears
        # replaced below are the same in all three.
        qwen2 = config.model_type == "qwen2"
        cls = {"qwen2": Qwen2ForCausalLM, "mistral": MistralForCausalLM}.get(config.model_type, LlamaForCausalLM)
        model = cls(config)
        for i, (layer, w) in enumerate(zip(model.model.layers, widths)):
            nq, nkv, inter = int(w["num_attention_heads"]), int(w["num_key_value_heads"]), int(w["intermediate_size"])
            if nq == 0:
                if nkv != 0:
                    raise ValueError(f"layer {i}: 0 query heads but {nkv} KV heads")
                layer.self_attn = _zero_attention(H, bool(getattr(config, "attention_bias", False)))
            else:
                if nkv <= 0 or nq % nkv:
                    raise ValueError(f"layer {i}: num_attention_heads {nq} not a multiple of num_key_value_heads {nkv}")
                a = layer.self_attn
                ab = bool(getattr(config, "attention_bias", False))
                a.q_proj = nn.Linear(H, nq * hd, bias=ab or qwen2)
                a.k_proj = nn.Linear(H, nkv * hd, bias=ab or qwen2)
                a.v_proj = nn.Linear(H, nkv * hd, bias=ab or qwen2)
                a.o_proj = nn.Linear(nq * hd, H, bias=ab and not qwen2)
                a.num_key_value_groups = nq // nkv
                a.num_heads, a.num_key_value_heads = nq, nkv
            m = layer.mlp
            mb = bool(getattr(config, "mlp_bias", False)) and not qwen2
            m.gate_proj = nn.Linear(H, inter, bias=mb)
            m.up_proj = nn.Linear(H, inter, bias=mb)
            m.down_proj = nn.Linear(inter, H, bias=mb)
            m.intermediate_size = inter
    finally:
        torch.set_default_dtype(prev)

    sd = {}
    for f in sorted(Path(d).glob("*.safetensors")):
        sd.update(load_file(str(f)))
    sd = {k: v.to(dtype) for k, v in sd.items()}
    tied = bool(getattr(config, "tie_word_embeddings", False))
    if tied and "lm_head.weight" not in sd:
        sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    model.load_state_dict(sd, strict=True)
    if tied:
        model.lm_head.weight = model.model.embed_tokens.weight
    model.to(dtype)
    model.eval()
    return model


def load_tokenizer(path):
    from transformers import AutoTokenizer
    d, kw = _split(path)
    if not kw and is_remote_code(d):
        kw["trust_remote_code"] = True   # AutoTokenizer reads config.json first (and would ask)
    return AutoTokenizer.from_pretrained(d, local_files_only=True, **kw)


def dataset_path(name_or_path) -> Path:
    if name_or_path in DATASETS:
        return DATA_ROOT / DATASETS[name_or_path]
    return Path(name_or_path)


def dataset_text(name_or_path) -> str:
    """THE PROJECT PROTOCOL: split the file on '\\n', drop empty lines, join with '\\n\\n'."""
    text = dataset_path(name_or_path).read_text(encoding="utf-8")
    lines = [l for l in text.split("\n") if l != ""]
    return "\n\n".join(lines)


def tokenize_dataset(tokenizer, name_or_path):
    """Tokenize the whole protocol text ONCE with add_special_tokens=True. Returns a list of ints."""
    text = dataset_text(name_or_path)
    return tokenizer(text, add_special_tokens=True)["input_ids"]


def ids_sha256(ids) -> str:
    import numpy as np
    return hashlib.sha256(np.asarray(ids, dtype="<i4").tobytes()).hexdigest()


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def perplexity(model, ids, seq_len=128, max_windows=0, batch=8, progress=0):
    """The ppl.py protocol as a function (same loop, same arithmetic): non-overlapping seq_len windows
    (remainder dropped, at most max_windows if > 0), fp32 per-token NLL of logits[:, :-1] vs ids[:, 1:],
    float64 accumulation. Returns dict(ppl, nll_mean, nll_sum, windows, scored, seconds, window_nll_sums_first8)."""
    import math
    import time
    import torch
    L = seq_len
    nwin = len(ids) // L
    if max_windows:
        nwin = min(nwin, max_windows)
    windows = torch.tensor(ids[: nwin * L], dtype=torch.long).view(nwin, L)
    nll_sum = 0.0
    scored = 0
    per_window = []
    t0 = time.time()
    with torch.inference_mode():
        for bi, s in enumerate(range(0, nwin, batch)):
            x = windows[s: s + batch]
            logits = model(input_ids=x, use_cache=False).logits.float()
            lp = torch.log_softmax(logits[:, :-1], dim=-1)
            nll = -lp.gather(-1, x[:, 1:, None]).squeeze(-1)
            w = nll.double().sum(dim=1)
            per_window.extend(w.tolist())
            nll_sum += float(w.sum())
            scored += nll.numel()
            if progress and (bi + 1) % progress == 0:
                log(f"  {s + len(x)}/{nwin} windows, running ppl {math.exp(nll_sum / scored):.4f}")
    secs = time.time() - t0
    nll_mean = nll_sum / scored if scored else float("nan")
    return {"ppl": math.exp(nll_mean), "nll_mean": nll_mean, "nll_sum": nll_sum, "windows": nwin,
            "scored": scored, "seconds": secs, "tokens_per_s": nwin * L / secs if secs > 0 else None,
            "window_nll_sums_first8": per_window[:8]}


def float64_model_and_ids(path, seed, batch, seq_len):
    """A model in float64 with eager attention (the goldens' reference arithmetic) and [batch x seq_len] token ids
    uniform in [3, 256) from torch.Generator(seed)."""
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64, attn_implementation="eager",
                                                 local_files_only=True).eval()
    g = torch.Generator().manual_seed(seed)
    return model, torch.randint(3, 256, (batch, seq_len), generator=g)


def projection_input(model, ids, layer, name):
    """Input rows [N x in] (float64 numpy) of layer `layer`'s o_proj (name "o") or down_proj for the batch `ids`."""
    import numpy as np
    import torch
    mod = model.model.layers[layer].self_attn.o_proj if name == "o" else model.model.layers[layer].mlp.down_proj
    got = {}
    h = mod.register_forward_pre_hook(lambda m, a: got.__setitem__("x", a[0].detach().reshape(-1, a[0].shape[-1])))
    with torch.no_grad():
        model(ids)
    h.remove()
    return got["x"].numpy().astype(np.float64)

