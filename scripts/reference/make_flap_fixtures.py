#!/usr/bin/env python3
"""Golden fixtures for llmprune's FLAP ingredients: the `fluctuation` criterion and `standardized` global allocation.

FLAP (arXiv 2312.11983; github.com/CASIA-IVA-Lab/FLAP, lib/prune.py `prune_flap`, `metrics['WIFV']`):
  o_proj input channel c:    (Var(x_c) * sum_r W_o[r, c]^2) ** 2      (FLAP squares the attention metric)
  down_proj input channel c:  Var(x_c) * sum_r W_down[r, c]^2
  Var = population variance over all calibration tokens (torch.var(unbiased=False)).
  unit scores: KV group = sum over its n_rep heads' o channels; query head = sum over its hd channels.
  standardized (AL-AM): per layer, z = (x - mean) / std (torch.std, unbiased) over that module's channels;
  a unit's key = mean of its channels' z; all units ranked ascending by key; parameters only count toward the target.

Model: Tests/LlamaModelTests/Resources/tiny (3 layers, 4 heads, 2 KV heads, hd 16, hidden 64, inter 96), fp32.
Calibration: N=4 x L=12 ids uniform in [3, 256), torch.Generator seed IDS_SEED.
Writes Tests/PruningTests/Resources/flap/flap.json.
Run: scripts/reference/run.sh make_flap_fixtures.py
"""
import json

import torch

import common

IDS_SEED = 20261207
N, L = 4, 12
KEEP = 0.6
TINY = common.REPO_ROOT / "Tests" / "LlamaModelTests" / "Resources" / "tiny"
OUT = common.REPO_ROOT / "Tests" / "PruningTests" / "Resources" / "flap" / "flap.json"


def main():
    common.set_threads(2)
    gen = torch.Generator().manual_seed(IDS_SEED)
    ids = torch.randint(3, 256, (N, L), generator=gen, dtype=torch.long)
    model = common.load_model(TINY)
    cfg = model.config
    nq, nkv, hd, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.hidden_size
    inter, n_layers = cfg.intermediate_size, cfg.num_hidden_layers
    n_rep = nq // nkv
    inputs = {}

    def hook(name):
        def f(_mod, inp, _out):
            inputs[name] = inp[0].detach().reshape(-1, inp[0].shape[-1]).to(torch.float64)
        return f

    for i, layer in enumerate(model.model.layers):
        layer.self_attn.o_proj.register_forward_hook(hook(f"o{i}"))
        layer.mlp.down_proj.register_forward_hook(hook(f"down{i}"))
    with torch.no_grad():
        model(ids)

    std = lambda x: (x - x.mean()) / x.std()
    layers = []
    total = sum(p.numel() for p in model.parameters())
    units = []  # (key, slot, order, index, cost, kind)
    for i, layer in enumerate(model.model.layers):
        wo = layer.self_attn.o_proj.weight.detach().to(torch.float64)
        wd = layer.mlp.down_proj.weight.detach().to(torch.float64)
        var_o = inputs[f"o{i}"].var(dim=0, unbiased=False)
        var_d = inputs[f"down{i}"].var(dim=0, unbiased=False)
        att_ch = (var_o * wo.pow(2).sum(0)) ** 2
        mlp = var_d * wd.pow(2).sum(0)
        kv = att_ch.reshape(nkv, n_rep * hd).sum(1)
        qh = att_ch.reshape(nq, hd).sum(1)
        z_att = std(att_ch).reshape(nkv, n_rep * hd).mean(1)
        z_mlp = std(mlp)
        layers.append({"layer": i, "o_input_variance": var_o.tolist(), "down_input_variance": var_d.tolist(),
                       "attention_kv": kv.tolist(), "attention_qhead": qh.tolist(), "mlp": mlp.tolist(),
                       "attention_channels": att_ch.tolist(), "key_kv": z_att.tolist(), "key_mlp": z_mlp.tolist()})
        for g in range(nkv):
            units.append((z_att[g].item(), i, 0, g, (2 * n_rep + 2) * hd * d, "kv"))
        for c in range(inter):
            units.append((z_mlp[c].item(), i, 1, c, 3 * d, "mlp"))

    # Global selection: ascending key (ties: lower layer, attention first, lower index), never the last unit.
    target = int(total * KEEP)
    units.sort(key=lambda u: (u[0], u[1], u[2], u[3]))
    removed = {(i, k): [] for i in range(n_layers) for k in ("kv", "mlp")}
    current = total
    for key, slot, _order, idx, cost, kind in units:
        if current <= target:
            break
        limit = nkv if kind == "kv" else inter
        if len(removed[(slot, kind)]) >= limit - 1:
            continue
        removed[(slot, kind)].append(idx)
        current -= cost
    kept = [{"layer": i,
             "kv": sorted(set(range(nkv)) - set(removed[(i, "kv")])),
             "mlp": sorted(set(range(inter)) - set(removed[(i, "mlp")]))} for i in range(n_layers)]
    out = {
        "source": "scripts/reference/make_flap_fixtures.py",
        "model": "Tests/LlamaModelTests/Resources/tiny",
        "ids": ids.tolist(), "ids_seed": IDS_SEED,
        "layers": layers,
        "standardized_global": {"keep_fraction": KEEP, "target_parameters": target, "parameters_total": total,
                                "parameters_after": current, "layers": [0, n_layers], "kept": kept},
        "torch": torch.__version__,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {OUT}: target {target}, after {current}, kept kv {[k['kv'] for k in kept]}, "
          f"mlp widths {[len(k['mlp']) for k in kept]}")


if __name__ == "__main__":
    main()
