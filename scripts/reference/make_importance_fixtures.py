#!/usr/bin/env python3
"""Golden fixtures for llmprune's importance scoring (LLM-Pruner, correct GQA fold).

Model: the tiny tied GQA Llama in Tests/LlamaModelTests/Resources/tiny (3 layers, 4 heads,
2 KV heads, head_dim 16, hidden 64, intermediate 96, vocab 256), fp32.
Calibration: N=4 samples x L=12 ids, uniform in [3, 256), torch.Generator seed IDS_SEED.

Writes (default Tests/PruningTests/Resources/importance/), all .bin = little-endian, C order:
  index.json                       everything small + the layout of every .bin (README schema)
  layer{i}.{mat}.grad.bin  float32 g = d(batch loss)/dW, HF layout [out, in], i = 0,1,2
  layer0.{mat}.fisher.bin  float32 F = (1/N) sum_j g_j^2 (layer 0 only, size budget; per-matrix
                           statistics of F for every layer are in index.json)
  scores.bin               float64 [3 layers, 6 criteria, 5 reductions, 102]; the last axis is
                           attention_kv (2) ++ attention_qhead (4) ++ mlp (96)

The vectorised scores of importance.py are cross-checked here against a plain per-unit loop
(numpy float64) before anything is written.
Run: LLMPRUNE_VENV=... scripts/reference/run.sh make_importance_fixtures.py [--out DIR]
"""
import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

import common
import importance as imp

IDS_SEED = 20240607
N, L = 4, 12
TINY = common.REPO_ROOT / "Tests" / "LlamaModelTests" / "Resources" / "tiny"
OUT = common.REPO_ROOT / "Tests" / "PruningTests" / "Resources" / "importance"
FISHER_FULL_LAYERS = [0]


def brute_force(W, G, F, crit, red, n_q, n_kv, hd, inter):
    """Unit scores by explicit loops (independent of importance.unit_scores)."""
    n_rep = n_q // n_kv

    def sal(name):
        w, g, f = W[name], G[name], F[name]
        return {"element1": w * g, "element2": w * g - 0.5 * w * f * w, "param_second": w * f * w,
                "vector": w * g, "l1": np.abs(w), "l2": w * w}[crit]

    def row(name, r):
        s = sal(name)[r, :]
        return abs(s.sum()) if crit == "vector" else np.abs(s).sum()

    def col(name, c):
        s = sal(name)[:, c]
        return abs(s.sum()) if crit == "vector" else np.abs(s).sum()

    def red_(vals):
        vals = np.array(vals)
        return {"sum": vals.sum(), "mean": vals.mean(), "max": vals.max(), "prod": vals.prod(),
                "first": vals[0]}[red]

    kv = []
    for k in range(n_kv):
        tot = 0.0
        for d in range(hd):
            i = k * hd + d
            q = sum(row("q_proj", (k * n_rep + j) * hd + d) for j in range(n_rep))
            o = sum(col("o_proj", (k * n_rep + j) * hd + d) for j in range(n_rep))
            tot += red_([row("k_proj", i), row("v_proj", i), q, o])
        kv.append(tot)
    qh = [sum(red_([row("q_proj", h * hd + d), col("o_proj", h * hd + d)]) for d in range(hd))
          for h in range(n_q)]
    mlp = [red_([row("gate_proj", c), row("up_proj", c), col("down_proj", c)]) for c in range(inter)]
    return {"attention_kv": kv, "attention_qhead": qh, "mlp": mlp}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    common.set_threads(args.threads)
    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for f in out.glob("*.bin"):
        f.unlink()

    gen = torch.Generator().manual_seed(IDS_SEED)
    ids = torch.randint(3, 256, (N, L), generator=gen, dtype=torch.long)

    model = common.load_model(TINY)
    n_q, n_kv, hd, n_layers, inter = imp.geometry(model)
    layers = list(range(n_layers))

    fisher, per_sample = imp.fisher_pass(model, ids)
    loss = imp.gradient_pass(model, ids)
    scores = imp.score_layers(model, layers, imp.CRITERIA, imp.REDUCTIONS, fisher, torch.float64)

    kinds = [("attention_kv", n_kv), ("attention_qhead", n_q), ("mlp", inter)]
    width = sum(n for _, n in kinds)
    arr = np.zeros((n_layers, len(imp.CRITERIA), len(imp.REDUCTIONS), width), dtype=np.float64)
    max_rel = 0.0
    for li in layers:
        mats = imp.layer_mats(model, li)
        W = {k: m.weight.detach().double().numpy() for k, m in mats.items()}
        G = {k: m.weight.grad.detach().double().numpy() for k, m in mats.items()}
        F = {k: fisher[m.weight].double().numpy() for k, m in mats.items()}
        for ci, crit in enumerate(imp.CRITERIA):
            for ri, red in enumerate(imp.REDUCTIONS):
                s = scores[str(li)][crit][red]
                bf = brute_force(W, G, F, crit, red, n_q, n_kv, hd, inter)
                pos = 0
                for kind, n in kinds:
                    v = np.array(s[kind])
                    assert v.shape == (n,)
                    rel = np.max(np.abs(v - np.array(bf[kind])) / np.maximum(np.abs(v), 1e-300))
                    max_rel = max(max_rel, rel)
                    arr[li, ci, ri, pos:pos + n] = v
                    pos += n
    assert max_rel < 1e-10, f"vectorised vs brute-force mismatch {max_rel}"
    common.log(f"loss {loss}; brute-force max rel diff {max_rel:.2e}")

    files = {}

    def write(name, a, dtype):
        b = np.ascontiguousarray(a, dtype=dtype).tobytes()
        (out / name).write_bytes(b)
        return {"file": name, "sha256": hashlib.sha256(b).hexdigest()}

    grads, fisher_idx = {}, {}
    for li in layers:
        for name, m in imp.layer_mats(model, li).items():
            key = f"layer{li}.{name}"
            g = m.weight.grad.detach().numpy()
            f = fisher[m.weight].numpy()
            e = write(f"{key}.grad.bin", g, "<f4")
            e["shape"] = list(g.shape)
            e["abs_max"] = float(np.abs(g).max())
            grads[key] = e
            fe = {"shape": list(f.shape), "sum": float(f.astype(np.float64).sum()),
                  "max": float(f.max()), "min": float(f.min()),
                  "first8": [float(x) for x in f.reshape(-1)[:8]]}
            if li in FISHER_FULL_LAYERS:
                fe.update(write(f"{key}.fisher.bin", f, "<f4"))
            fisher_idx[key] = fe
    sc = write("scores.bin", arr, "<f8")
    pos, seg = 0, {}
    for kind, n in kinds:
        seg[kind] = [pos, pos + n]
        pos += n
    sc.update({"dtype": "float64", "shape": list(arr.shape),
               "axes": ["layer", "criterion", "reduction", "unit"],
               "layers": layers, "criteria": imp.CRITERIA, "reductions": imp.REDUCTIONS,
               "unit_segments": seg})

    index = {
        "format": "llmprune-importance-fixtures/1",
        "generator": "scripts/reference/make_importance_fixtures.py",
        "model": "Tests/LlamaModelTests/Resources/tiny",
        "geometry": {"n_layers": n_layers, "n_heads": n_q, "n_kv_heads": n_kv, "head_dim": hd,
                     "n_rep": n_q // n_kv, "hidden": model.config.hidden_size,
                     "intermediate": inter, "vocab": model.config.vocab_size},
        "byte_order": "little-endian, C order; grad/fisher float32 [out, in] (HF layout)",
        "ids_seed": IDS_SEED,
        "ids": ids.tolist(),
        "loss": loss,
        "per_sample_losses": per_sample,
        "definitions": {
            "loss": "model(ids, labels=ids).loss: mean next-token CE over N*(L-1) predictions",
            "grad": "d loss / dW from one backward over the whole batch (fp32)",
            "fisher": "F = (1/N) sum_j g_j^2, g_j = grad of sample j's own mean loss (batch of 1), "
                      "accumulated in fp32 as acc += g_j*g_j/N in sample order",
            "criteria": {"element1": "S = W*g", "element2": "S = W*g - 0.5*W*F*W",
                         "param_second": "S = W*F*W", "vector": "S = W*g, abs after the sum",
                         "l1": "S = |W|", "l2": "S = W^2"},
            "channel": "rows of q,k,v,gate,up: sum_in |S|; cols of o,down: sum_out |S| "
                       "(vector: |sum S|)",
            "attention_kv": "members [k rows, v rows, fold(q rows), fold(o cols)], "
                            "fold(x)[k*hd+d] = sum_{j<n_rep} x[(k*n_rep+j)*hd+d]; reduce across "
                            "members per channel, then sum the hd channels of unit k",
            "attention_qhead": "members [q rows, o cols], no fold; reduce per channel, then sum "
                               "the hd channels of head h",
            "mlp": "members [gate rows, up rows, down cols]; reduce per channel",
            "reductions": "sum, mean (/n_members), max, prod, first (= member 0: k_proj, q_proj, "
                          "gate_proj)",
            "score_precision": "float64 from the fp32 W, g, F",
        },
        "grads": grads,
        "fisher": fisher_idx,
        "fisher_full_layers": FISHER_FULL_LAYERS,
        "scores": sc,
        "torch": torch.__version__,
    }
    (out / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    total = sum(p.stat().st_size for p in out.iterdir())
    common.log(f"wrote {len(list(out.iterdir()))} files, {total} bytes to {out}")
    assert total < 600_000, total


if __name__ == "__main__":
    main()
