#!/usr/bin/env python3
"""Golden fixtures for llmprune's `--criterion obs` (Sources/Pruning/OBSCriterion.swift): greedy structured OBS
scores of the tiny Llama's o_proj input units (KV groups and query heads) and down_proj input channels.

Model: Tests/LlamaModelTests/Resources/tiny (3 layers, 4 heads, 2 KV heads, head_dim 16, hidden 64,
intermediate 96) in float64 (eager attention). Tokens: B x T ids uniform in [3, 256) from torch.Generator(IDS_SEED).
Per layer and projection with weight W [d x n] and inputs X [N x n] (forward pre-hook):
  H = X^T X + 0.1 * mean(diag(X^T X)) * I;  Hinv = H^-1
  repeat over the units (column blocks of size s): e(S) = tr(W_S (Hinv_SS)^-1 W_S^T) for every remaining unit;
  remove the smallest; W -= W_S M Hinv_S,: and Hinv -= Hinv_:,S M Hinv_S,: with M = (Hinv_SS)^-1;
  a unit's score: the running maximum of e along the removal order times (1 + 1e-12 * step).
Writes Tests/PruningTests/Resources/obs/index.json: tokens and, per layer, the scores for units of 32 columns
(KV groups), 16 (query heads) and 1 (down_proj channels).
Run: scripts/reference/run.sh make_obs_fixtures.py
"""
import argparse
import json
from pathlib import Path

import numpy as np

import common

IDS_SEED = 20261208
B, T = 4, 24
DAMP = 0.1
TINY = common.REPO_ROOT / "Tests" / "LlamaModelTests" / "Resources" / "tiny"
OUT = common.REPO_ROOT / "Tests" / "PruningTests" / "Resources" / "obs"


capture = common.projection_input


def greedy(W, X, s):
    W = W.copy()
    n = W.shape[1]
    G = X.T @ X
    H = G + DAMP * np.mean(np.diag(G)) * np.eye(n)
    Hinv = np.linalg.inv(H)
    units = n // s
    alive = list(range(units))
    scores = np.zeros(units)
    running = 0.0
    for step in range(units):
        best, best_e, best_m = None, np.inf, None
        for u in alive:
            S = slice(u * s, (u + 1) * s)
            M = np.linalg.inv(Hinv[S, S])
            e = float(np.trace(W[:, S] @ M @ W[:, S].T))
            if e < best_e:
                best, best_e, best_m = u, e, M
        running = max(running, best_e)
        scores[best] = running * (1 + 1e-12 * step)
        alive.remove(best)
        S = slice(best * s, (best + 1) * s)
        K = best_m @ Hinv[S, :]
        W = W - W[:, S] @ K
        Hinv = Hinv - Hinv[:, S] @ K
    return scores.tolist()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=OUT)
    common.add_threads_arg(ap)
    args = ap.parse_args()
    common.set_threads(args.threads)
    model, ids = common.float64_model_and_ids(TINY, IDS_SEED, B, T)
    layers = []
    for l in range(len(model.model.layers)):
        Wo = model.model.layers[l].self_attn.o_proj.weight.detach().numpy().astype(np.float64)
        Wd = model.model.layers[l].mlp.down_proj.weight.detach().numpy().astype(np.float64)
        Xo, Xd = capture(model, ids, l, "o"), capture(model, ids, l, "down")
        layers.append({"layer": l, "kvGroup": greedy(Wo, Xo, 32), "queryHead": greedy(Wo, Xo, 16),
                       "mlp": greedy(Wd, Xd, 1)})
        print(f"layer {l}: kv groups {np.argsort(layers[-1]['kvGroup']).tolist()}, "
              f"heads {np.argsort(layers[-1]['queryHead']).tolist()}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "index.json").write_text(json.dumps({"batch": B, "seqLen": T, "dampening": DAMP,
                                                     "tokens": ids.flatten().tolist(), "layers": layers}) + "\n")


if __name__ == "__main__":
    main()
