#!/usr/bin/env python3
"""Golden fixtures for llmprune's least-squares reconstruction after the cut (`--reconstruct lstsq|lstsq-seq`).

Model: the tiny tied GQA Llama in Tests/LlamaModelTests/Resources/tiny (3 layers, 4 heads, 2 KV heads,
head_dim 16, hidden 64, intermediate 96), run by transformers in float64 (eager attention).
Tokens: B x T ids uniform in [3, 256) from torch.Generator(IDS_SEED). Plan: PLAN below (layers 0 and 1 cut).

Per pruned layer and projection p in {o_proj, down_proj} with weight W [d x in], kept input columns K:
  X [N x in]  p's input in the unpruned model (forward pre-hook), over all N = B*T tokens
  P [N x |K|] p's input in the pruned model:  lstsq: X[:, K];  lstsq-seq: the pruned model's own input, the
              earlier pruned layers (and this layer's o, for down) already refit
  lambda = ridge * mean(diag(P^T P));  W' = (W X^T P + lambda W_K) (P^T P + lambda I)^-1   (numpy float64 solve)
  errors ||W_K P^T - W X^T||^2 / ||W X^T||^2 (cut) and with W' (refit), from the activations themselves.
  With a bias refit (`--bias-compensation`, methods "lstsq+bias" and "lstsq-seq+bias"): the same with P and X
  given a constant column of ones and W a zero bias column; the ridge (and its mean diagonal) covers the weight
  columns only, so the bias b' is unregularised; W' [d x |K|] and b' [d].

Writes (default Tests/PruningTests/Resources/recon/):
  index.json   tokens, plan, ridge, errors, and the layout of every .bin
  {method}.layer{i}.{o,down}.bin  float32 W' [d x |K|], C order, little-endian
  {method}.layer{i}.{o,down}.bias.bin  float32 b' [d] (bias methods)
Run: LLMPRUNE_VENV=... scripts/reference/run.sh make_recon_fixtures.py [--out DIR]
"""
import argparse
import copy
import json
from pathlib import Path

import numpy as np

import common

IDS_SEED = 20261207
B, T = 6, 16
RIDGE = 0.05
TINY = common.REPO_ROOT / "Tests" / "LlamaModelTests" / "Resources" / "tiny"
OUT = common.REPO_ROOT / "Tests" / "PruningTests" / "Resources" / "recon"
HD = 16
PLAN = [
    {"layer": 0, "keptKVHeads": [1], "keptQueryHeads": [2, 3],
     "keptMLPChannels": sorted(np.random.default_rng(1).choice(96, 72, replace=False).tolist())},
    {"layer": 1, "keptKVHeads": [0, 1], "keptQueryHeads": [0, 3],
     "keptMLPChannels": sorted(np.random.default_rng(2).choice(96, 60, replace=False).tolist())},
]


def o_columns(heads):
    return [h * HD + t for h in heads for t in range(HD)]


capture = common.projection_input


def refit(W, X, P, kept, ridge, bias=False):
    """W' (and b', or None) of the ridge least squares above."""
    k = len(kept)
    if bias:
        X = np.hstack([X, np.ones((X.shape[0], 1))])
        P = np.hstack([P, np.ones((P.shape[0], 1))])
        W = np.hstack([W, np.zeros((W.shape[0], 1))])
        kept = list(kept) + [W.shape[1] - 1]
    WK = W[:, kept]
    gpp = P.T @ P
    lam = ridge * np.mean(np.diag(gpp)[:k])
    pen = np.zeros(len(kept))
    pen[:k] = lam
    A = gpp + np.diag(pen)
    rhs = W @ (X.T @ P) + WK * pen
    Wn = np.linalg.solve(A, rhs.T).T          # A symmetric
    target = X @ W.T
    def err(V):
        return float(np.sum((P @ V.T - target) ** 2) / np.sum(target ** 2))
    if bias:
        return Wn[:, :k], Wn[:, k], err(WK), err(Wn)
    return Wn, None, err(WK), err(Wn)


def cut_layer(layer, lp, bias=False):
    """Slices one HF decoder layer in place as llmprune's Pruner.cut does (kept heads/channels, original order);
    with `bias`, o_proj and down_proj get a zero bias (the refit sets it)."""
    import torch
    from torch import nn
    a, m = layer.self_attn, layer.mlp
    q = o_columns(lp["keptQueryHeads"])
    kv = o_columns(lp["keptKVHeads"])
    ch = lp["keptMLPChannels"]
    def lin(w, b=False):
        l = nn.Linear(w.shape[1], w.shape[0], bias=b, dtype=w.dtype)
        l.weight = nn.Parameter(w.clone())
        if b:
            l.bias = nn.Parameter(torch.zeros(w.shape[0], dtype=w.dtype))
        return l
    with torch.no_grad():
        a.q_proj = lin(a.q_proj.weight[q])
        a.k_proj = lin(a.k_proj.weight[kv])
        a.v_proj = lin(a.v_proj.weight[kv])
        a.o_proj = lin(a.o_proj.weight[:, q], bias)
        a.num_key_value_groups = len(lp["keptQueryHeads"]) // len(lp["keptKVHeads"])
        m.gate_proj = lin(m.gate_proj.weight[ch])
        m.up_proj = lin(m.up_proj.weight[ch])
        m.down_proj = lin(m.down_proj.weight[:, ch], bias)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=OUT)
    common.add_threads_arg(ap)
    args = ap.parse_args()
    common.set_threads(args.threads)
    import torch
    dense, ids = common.float64_model_and_ids(TINY, IDS_SEED, B, T)
    args.out.mkdir(parents=True, exist_ok=True)
    index = {"model": "Tests/LlamaModelTests/Resources/tiny", "batch": B, "seqLen": T, "ridge": RIDGE,
             "tokens": ids.flatten().tolist(), "plan": PLAN, "methods": {}}

    for method in ("lstsq", "lstsq-seq", "lstsq+bias", "lstsq-seq+bias"):
        bias = method.endswith("+bias")
        pruned = copy.deepcopy(dense)
        for lp in PLAN:
            cut_layer(pruned.model.layers[lp["layer"]], lp, bias)
        layers = []
        for lp in PLAN:
            l = lp["layer"]
            entry = {"layer": l}
            for name, kept in (("o", o_columns(lp["keptQueryHeads"])), ("down", lp["keptMLPChannels"])):
                full = dense.model.layers[l].self_attn.o_proj if name == "o" else dense.model.layers[l].mlp.down_proj
                W = full.weight.detach().numpy().astype(np.float64)
                X = capture(dense, ids, l, name)
                P = X[:, kept] if method.startswith("lstsq+") or method == "lstsq" else capture(pruned, ids, l, name)
                Wn, bn, e_cut, e_refit = refit(W, X, P, kept, RIDGE, bias)
                target = pruned.model.layers[l].self_attn.o_proj if name == "o" else pruned.model.layers[l].mlp.down_proj
                with torch.no_grad():
                    target.weight.copy_(torch.from_numpy(Wn))   # the sequential refit's later inputs see it
                    if bias:
                        target.bias.copy_(torch.from_numpy(bn))
                fname = f"{method}.layer{l}.{name}.bin"
                Wn.astype("<f4").tofile(args.out / fname)
                entry[name] = {"file": fname, "shape": list(Wn.shape), "errorCut": e_cut, "errorRefit": e_refit}
                if bias:
                    bname = f"{method}.layer{l}.{name}.bias.bin"
                    bn.astype("<f4").tofile(args.out / bname)
                    entry[name]["bias"] = bname
                print(f"{method} layer {l} {name}: error {e_cut:.5f} -> {e_refit:.5f}")
            layers.append(entry)
        index["methods"][method] = layers
    (args.out / "index.json").write_text(json.dumps(index, indent=1) + "\n")


if __name__ == "__main__":
    main()
