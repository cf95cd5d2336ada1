#!/usr/bin/env python3
"""Golden fixtures for llmprune's depth (layer-wise) and channel-wise pruning.

Model: the tiny tied GQA Llama in Tests/LlamaModelTests/Resources/tiny (3 layers, hidden 64, 4 heads, 2 KV heads,
head_dim 16, intermediate 96, vocab 256), fp32. Calibration: N=4 samples x L=12 ids, uniform in [3, 256),
torch.Generator seed IDS_SEED; loss = model(ids, labels=ids).loss, one backward over the batch.

Scores (float64 from the fp32 W and g; element1 S = |W*g|):
  taylor[i]     sum over layer i's q,k,v,o,gate,up,down weights of |W*g|
  influence[i]  ShortGPT (arXiv 2403.03853) 1 - mean over the N*L tokens of cos(x_in, x_out), x_in/x_out the
                residual stream entering/leaving decoder layer i (forward hooks; before the final norm)
  channel[j]    sum over layers of sum_rows |S| of q,k,v,gate,up column j + sum_cols |S| of o,down row j
                + |w*g| of input_layernorm[j] and post_attention_layernorm[j] (autograd's norm gradients)
                (llmprune's channel-wise score: LLM-Pruner's hidden-channel group without the embedding,
                final-norm and LM-head members)
Cuts (torch, physically, then logits of `ids`):
  depth_taylor     remove the K_DEPTH blocks of lowest taylor score (ties: lower index)
  depth_influence  remove the K_DEPTH blocks of lowest influence
  channel          keep the int(64 * (1 - CHANNEL_RATIO)) highest channel scores (ties: lower index goes first):
                   embedding columns, every norm, q/k/v/gate/up columns, o/down rows, tied head; hidden_size
                   shrinks (RMSNorm's mean runs over the kept channels), head_dim stays 16.
Writes (default Tests/PruningTests/Resources/strategy/): index.json (ids, loss, scores, removed/kept),
logits_{depth_taylor,depth_influence,channel}.bin float32 [N, L, V] little-endian.
Run: scripts/reference/run.sh make_strategy_fixtures.py [--out DIR]
"""
import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

import common

IDS_SEED = 20261207
N, L = 4, 12
K_DEPTH = 1
CHANNEL_RATIO = 0.25
TINY = common.REPO_ROOT / "Tests" / "LlamaModelTests" / "Resources" / "tiny"
OUT = common.REPO_ROOT / "Tests" / "PruningTests" / "Resources" / "strategy"
IN_MATS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj"]
OUT_MATS = ["self_attn.o_proj", "mlp.down_proj"]


def lowest(scores, k):
    """Indices of the k lowest scores, ties to the lower index, ascending."""
    order = sorted(range(len(scores)), key=lambda i: (scores[i], i))
    return sorted(order[:k])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    common.set_threads(args.threads)
    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(IDS_SEED)
    ids = torch.randint(3, 256, (N, L), generator=gen, dtype=torch.long)

    model = common.load_model(TINY)
    cfg = model.config
    layers = model.model.layers
    n_layers, d = cfg.num_hidden_layers, cfg.hidden_size

    # Residual stream around each block (forward hooks), in the same pass as the gradient's forward.
    streams = {}

    def hook(i):
        def f(mod, a, kw, o):
            x = a[0] if a else kw["hidden_states"]
            y = o[0] if isinstance(o, tuple) else o
            streams[i] = (x.detach().double().reshape(-1, d), y.detach().double().reshape(-1, d))
        return f

    handles = [layers[i].register_forward_hook(hook(i), with_kwargs=True) for i in range(n_layers)]
    loss = model(ids, labels=ids).loss
    loss.backward()
    for h in handles:
        h.remove()

    def sal(m):
        return (m.weight.detach().double() * m.weight.grad.detach().double()).abs()

    def mod(i, name):
        m = layers[i]
        for p in name.split("."):
            m = getattr(m, p)
        return m

    taylor = [float(sum(sal(mod(i, n)).sum() for n in IN_MATS + OUT_MATS)) for i in range(n_layers)]
    influence = []
    for i in range(n_layers):
        x, y = streams[i]
        cos = torch.nn.functional.cosine_similarity(x, y, dim=-1, eps=1e-8)
        influence.append(float(1 - cos.mean()))
    channel = torch.zeros(d, dtype=torch.float64)
    for i in range(n_layers):
        for n in IN_MATS:
            channel += sal(mod(i, n)).sum(0)
        for n in OUT_MATS:
            channel += sal(mod(i, n)).sum(1)
        for n in ["input_layernorm", "post_attention_layernorm"]:
            channel += sal(mod(i, n))
    channel = channel.tolist()

    # Brute-force cross-check of the vectorised sums (plain loops over one layer).
    s0 = 0.0
    for n in IN_MATS + OUT_MATS:
        w = mod(0, n).weight.detach().double().numpy()
        g = mod(0, n).weight.grad.detach().double().numpy()
        for r in range(w.shape[0]):
            s0 += float(np.abs(w[r] * g[r]).sum())
    assert abs(s0 - taylor[0]) <= 1e-12 * abs(s0), (s0, taylor[0])

    removed_taylor = lowest(taylor, K_DEPTH)
    removed_influence = lowest(influence, K_DEPTH)
    kept_width = int(d * (1 - CHANNEL_RATIO))
    kept = sorted(sorted(range(d), key=lambda j: (channel[j], j))[d - kept_width:])

    files = {}

    def write_logits(name, m):
        with torch.no_grad():
            logits = m(ids).logits.float().numpy()
        b = np.ascontiguousarray(logits, dtype="<f4").tobytes()
        (out / f"logits_{name}.bin").write_bytes(b)
        files[name] = {"file": f"logits_{name}.bin", "shape": list(logits.shape),
                       "sha256": hashlib.sha256(b).hexdigest()}

    def depth_cut(removed):
        m = common.load_model(TINY)
        keep = [i for i in range(n_layers) if i not in removed]
        m.model.layers = torch.nn.ModuleList([m.model.layers[i] for i in keep])
        for j, layer in enumerate(m.model.layers):      # cache bookkeeping indexes layers by position
            layer.self_attn.layer_idx = j
        m.config.num_hidden_layers = len(keep)
        if getattr(m.config, "layer_types", None):
            m.config.layer_types = [m.config.layer_types[i] for i in keep]
        return m

    write_logits("depth_taylor", depth_cut(removed_taylor))
    write_logits("depth_influence", depth_cut(removed_influence))

    # Channel cut: a fresh model of hidden_size = kept_width, head_dim explicit, loaded with the sliced tensors.
    from transformers import LlamaConfig, LlamaForCausalLM
    sd = common.load_model(TINY).state_dict()
    idx = torch.tensor(kept)
    new_sd = {}
    for k, v in sd.items():
        if k.endswith("embed_tokens.weight") or k == "lm_head.weight":
            new_sd[k] = v[:, idx]
        elif k.endswith("norm.weight"):
            new_sd[k] = v[idx]
        elif any(k.endswith(n + ".weight") for n in IN_MATS):
            new_sd[k] = v[:, idx]
        elif any(k.endswith(n + ".weight") for n in OUT_MATS):
            new_sd[k] = v[idx, :]
        else:
            new_sd[k] = v
    c2 = LlamaConfig.from_dict(cfg.to_dict())
    c2.hidden_size = kept_width
    c2.head_dim = cfg.head_dim
    pruned = LlamaForCausalLM(c2).float().eval()
    missing, unexpected = pruned.load_state_dict(new_sd, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    pruned.tie_weights()
    assert pruned.lm_head.weight.shape == (cfg.vocab_size, kept_width)
    write_logits("channel", pruned)

    index = {
        "format": "llmprune-strategy-fixtures/1",
        "generator": "scripts/reference/make_strategy_fixtures.py",
        "model": "Tests/LlamaModelTests/Resources/tiny",
        "ids_seed": IDS_SEED,
        "ids": ids.tolist(),
        "loss": loss.item(),
        "scores": {"taylor": taylor, "influence": influence, "channel": channel},
        "depth": {"k": K_DEPTH, "removed_taylor": removed_taylor, "removed_influence": removed_influence},
        "channel": {"ratio": CHANNEL_RATIO, "kept_width": kept_width, "kept": kept},
        "logits": files,
        "torch": torch.__version__,
    }
    (out / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    common.log(f"loss {loss.item():.6f}; taylor {taylor}; influence {influence}; removed {removed_taylor} / "
               f"{removed_influence}; channel width {kept_width}")


if __name__ == "__main__":
    main()
