#!/usr/bin/env python3
"""LLM-Pruner importance scores (block-wise, Llama/GQA), PyTorch reference for llmprune.

Follows LLM-Pruner's TaylorImportance / MagnitudeImportance (LLMPruner/pruner/hf_llama_pruner.py, block-wise
as hf_prune.py and llama3.py run them), except the GQA q/o fold: this script uses the CORRECT mapping (query
head h belongs to KV group h // n_rep), not the repo's modulo fold (imp.view(len // min, min).sum(0)).

Gradients (reference behaviour, the speed baseline): every parameter keeps requires_grad=True, as
LLM-Pruner does (grads for embeddings, norms, un-pruned layers too).
  g = d(loss)/dW, ONE backward on the whole batch; loss = model(ids, labels=ids).loss
      (mean next-token CE over N x (L-1) predictions).
  F = (1/N) sum_j g_j^2 (empirical Fisher diagonal; g_j = gradient of sample j's own mean loss,
      one forward/backward per sample with batch 1), accumulated in fp32 as
      acc += g_j * g_j / N for every parameter (as hf_prune.py does). Computed BEFORE the batch
      pass, only when a second-order criterion (element2, param_second) is requested.

Element salience S (elementwise, W = weight [out, in] in HF layout):
  element1      S = W*g                       (LLM-Pruner --taylor param_first)
  element2      S = W*g - 0.5*W*F*W           (param_mix)
  param_second  S = W*F*W                     (param_second)
  vector        S = W*g, abs taken AFTER the sum (vectorize)
  l1            S = |W|                       (MagnitudeImportance p=1)
  l2            S = W^2  (no sqrt)            (MagnitudeImportance p=2)
Per-channel member score: rows of q,k,v,gate,up: sum_in |S[c,:]|; columns of o,down:
sum_out |S[:,c]|.  vector: |sum S[c,:]| / |sum S[:,c]|.  (l1/l2: S >= 0 already.)

Group reduction -- THE REFERENCE ORDER (TaylorImportance.__call__ / _reduce, then
MetaPruner.prune_local's head sum):
  1. per member, per-channel score vector (above);
  2. align lengths: q (rows) and o (columns) have n_q*hd channels, k/v have n_kv*hd. With the
     correct mapping, KV channel i = k*hd + d receives
        qf[k*hd + d] = sum_{j < n_rep} q[(k*n_rep + j)*hd + d]      (same for o)
     i.e. q.view(n_kv, n_rep, hd).sum(1).flatten();
  3. stack the members per channel and reduce ELEMENTWISE across members:
        sum: a+b+..., mean: (a+b+...)/n_members, max, prod, first = root member only;
  4. attention: sum the hd consecutive reduced channel scores of each unit
        unit_k = sum_{d < hd} R[k*hd + d].
     MLP: no head sum (unit = channel).
  For `sum` the order does not matter; for mean/max/prod it does.
Units:
  attention_kv     k < n_kv: members [k_proj rows, v_proj rows, q_proj rows folded, o_proj cols
                   folded] (root/first = k_proj), channels k*hd .. (k+1)*hd-1 after folding.
                   Equivalent to KV head k + query heads k*n_rep .. (k+1)*n_rep-1.
  attention_qhead  (finer mode, not in LLM-Pruner) h < n_q: members [q_proj rows, o_proj cols]
                   (first = q_proj), no fold, unit_h = sum_{d<hd} R[h*hd + d]. K/V not included.
  mlp              c < I: members [gate rows, up rows, down cols] (first = gate_proj).
Random criterion: not computed here (not golden-testable).

Scores are computed in float64 from the fp32 W, g, F (so `prod` of tiny param_second values does
not underflow); --score-dtype float32 gives LLM-Pruner's precision.

Output: the LAST stdout line is one JSON object (see README "Importance scores").
Run: scripts/reference/run.sh importance.py --model M --ids-json F --layers 4 28 --criteria element1
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import common

CRITERIA = ["element1", "element2", "param_second", "vector", "l1", "l2"]
REDUCTIONS = ["sum", "mean", "max", "prod", "first"]
SECOND_ORDER = {"element2", "param_second"}
NEEDS_GRAD = {"element1", "element2", "param_second", "vector"}
MATS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ROW_MATS = {"q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"}   # out channels = rows
COL_MATS = {"o_proj", "down_proj"}                                   # in channels = columns


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # Linux: KiB


def layer_mats(model, i):
    layer = model.model.layers[i]
    a, m = layer.self_attn, layer.mlp
    return {"q_proj": a.q_proj, "k_proj": a.k_proj, "v_proj": a.v_proj, "o_proj": a.o_proj,
            "gate_proj": m.gate_proj, "up_proj": m.up_proj, "down_proj": m.down_proj}


def geometry(model):
    c = model.config
    n_q = c.num_attention_heads
    n_kv = getattr(c, "num_key_value_heads", None) or n_q
    hd = getattr(c, "head_dim", None) or c.hidden_size // n_q
    return n_q, n_kv, hd, c.num_hidden_layers, c.intermediate_size


# ----------------------------------------------------------------------------------------------
# gradients

def batch_loss(model, ids):
    return model(ids, labels=ids).loss


def fisher_pass(model, ids):
    """LLM-Pruner's per-sample loop: acc_grad += g_j*g_j/N for every parameter (fp32).
    Returns ({param: F}, per_sample_losses)."""
    import torch
    n = ids.shape[0]
    acc = {}
    losses = []
    for j in range(n):
        model.zero_grad(set_to_none=True)
        x = ids[j:j + 1]
        loss = batch_loss(model, x)
        loss.backward()
        losses.append(float(loss.detach()))
        with torch.no_grad():
            for p in model.parameters():
                if p.grad is None:
                    continue
                sq = p.grad * p.grad / n
                if p in acc:
                    acc[p] += sq
                else:
                    acc[p] = sq.clone()
    model.zero_grad(set_to_none=True)
    return acc, losses


def gradient_pass(model, ids):
    model.zero_grad(set_to_none=True)
    loss = batch_loss(model, ids)
    loss.backward()
    return float(loss.detach())


# ----------------------------------------------------------------------------------------------
# scoring

def member_channel_scores(W, g, F, criterion, kind):
    """Per-channel score of one member matrix. kind 'row' (out channels) or 'col' (in channels)."""
    if criterion == "element1":
        S = W * g
    elif criterion == "element2":
        S = W * g - 0.5 * W * F * W
    elif criterion == "param_second":
        S = W * F * W
    elif criterion == "vector":
        S = W * g
    elif criterion == "l1":
        S = W.abs()
    elif criterion == "l2":
        S = W * W
    else:
        raise ValueError(criterion)
    dim = 1 if kind == "row" else 0
    if criterion == "vector":
        return S.sum(dim).abs()
    return S.abs().sum(dim)


def reduce_members(stack, reduction):
    """stack: [n_members, channels]; elementwise across members. Member 0 is the root."""
    if reduction == "sum":
        return stack.sum(0)
    if reduction == "mean":
        return stack.mean(0)
    if reduction == "max":
        return stack.max(0).values
    if reduction == "prod":
        return stack.prod(0)
    if reduction == "first":
        return stack[0]
    raise ValueError(reduction)


def layer_member_scores(tensors, criterion):
    """tensors: {mat: (W, g, F)} (g/F may be None if not needed). -> {mat: channel vector}."""
    out = {}
    for name in MATS:
        W, g, F = tensors[name]
        out[name] = member_channel_scores(W, g, F, criterion, "row" if name in ROW_MATS else "col")
    return out


def unit_scores(member, reduction, n_q, n_kv, hd):
    """member: {mat: per-channel vector}. Returns {attention_kv, attention_qhead, mlp} tensors."""
    import torch
    n_rep = n_q // n_kv

    def fold(v):   # correct GQA mapping: KV channel k*hd+d <- q channels (k*n_rep+j)*hd+d
        return v.view(n_kv, n_rep, hd).sum(1).reshape(n_kv * hd)

    kv = torch.stack([member["k_proj"], member["v_proj"], fold(member["q_proj"]),
                      fold(member["o_proj"])])
    kv = reduce_members(kv, reduction).view(n_kv, hd).sum(1)
    qh = torch.stack([member["q_proj"], member["o_proj"]])
    qh = reduce_members(qh, reduction).view(n_q, hd).sum(1)
    mlp = torch.stack([member["gate_proj"], member["up_proj"], member["down_proj"]])
    mlp = reduce_members(mlp, reduction)
    return {"attention_kv": kv, "attention_qhead": qh, "mlp": mlp}


def score_layers(model, layers, criteria, reductions, fisher, dtype):
    """-> {layer: {criterion: {reduction: {kind: [floats]}}}}"""
    import torch
    n_q, n_kv, hd, _, _ = geometry(model)
    res = {}
    with torch.no_grad():
        for i in layers:
            mats = layer_mats(model, i)
            tensors = {}
            for name, lin in mats.items():
                W = lin.weight.detach().to(dtype)
                g = lin.weight.grad.detach().to(dtype) if lin.weight.grad is not None else None
                F = fisher[lin.weight].to(dtype) if fisher is not None and lin.weight in fisher else None
                if lin.bias is not None and name in ROW_MATS:
                    # A row's bias element belongs to its channel: one more column of the row's sum.
                    def col(t):
                        return t.detach().to(dtype).reshape(-1, 1)
                    W = torch.cat([W, col(lin.bias)], 1)
                    g = torch.cat([g, col(lin.bias.grad)], 1) if g is not None else None
                    F = torch.cat([F, col(fisher[lin.bias])], 1) if F is not None else None
                tensors[name] = (W, g, F)
            per_crit = {}
            for crit in criteria:
                member = layer_member_scores(tensors, crit)
                per_crit[crit] = {r: {k: v.tolist() for k, v in
                                      unit_scores(member, r, n_q, n_kv, hd).items()}
                                  for r in reductions}
            res[str(i)] = per_crit
    return res


# ----------------------------------------------------------------------------------------------
# ids

def load_ids(args):
    if args.ids_json:
        ids = json.loads(Path(args.ids_json).read_text())["ids"]
    else:
        tok = common.load_tokenizer(args.tokenizer or args.model)
        stream = common.tokenize_dataset(tok, args.dataset)
        stride = args.stride or args.seq_len
        ids = [stream[k * stride:k * stride + args.seq_len] for k in range(args.n)]
        assert all(len(r) == args.seq_len for r in ids), "dataset too short"
    if args.save_ids:
        Path(args.save_ids).write_text(json.dumps({"ids": ids}) + "\n")
    lens = {len(r) for r in ids}
    assert len(lens) == 1, "all calibration samples must have the same length"
    return ids


def dump_grads(model, layers, fisher, out_dir):
    """DIR/layer{i}.{mat}.grad.bin (+ .fisher.bin), float32 LE, C order [out, in]; DIR/index.json."""
    import numpy as np
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    index = {}
    for i in layers:
        for name, lin in layer_mats(model, i).items():
            shape = list(lin.weight.shape)
            e = {"shape": shape}
            f = f"layer{i}.{name}.grad.bin"
            lin.weight.grad.detach().float().numpy().astype("<f4").tofile(d / f)
            e["grad"] = f
            if fisher is not None:
                f = f"layer{i}.{name}.fisher.bin"
                fisher[lin.weight].float().numpy().astype("<f4").tofile(d / f)
                e["fisher"] = f
            index[f"layer{i}.{name}"] = e
    (d / "index.json").write_text(json.dumps(index, indent=1) + "\n")


# ----------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(common.DEFAULT_MODEL))
    ap.add_argument("--ids-json", help='calibration ids: {"ids": [[...], ...]} (N x L)')
    ap.add_argument("--dataset", default="ptb-valid",
                    help="if no --ids-json: tokenize this dataset (project protocol) and take "
                         "--n windows of --seq-len at offsets k*stride")
    ap.add_argument("--tokenizer", help="tokenizer path (default: --model)")
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--stride", type=int, default=0, help="offset step (default: seq-len)")
    ap.add_argument("--save-ids", help="write the ids used as JSON")
    ap.add_argument("--layers", type=int, nargs=2, metavar=("START", "END"),
                    help="score layers [START, END) (default: all)")
    ap.add_argument("--criteria", default="all", help="all | comma list of " + ",".join(CRITERIA))
    ap.add_argument("--reductions", default="sum", help="all | comma list of " + ",".join(REDUCTIONS))
    ap.add_argument("--score-dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--out", help="write the full JSON here")
    ap.add_argument("--dump-grads", metavar="DIR", help="write g (and F) of the scored layers as .bin")
    ap.add_argument("--time-only", action="store_true",
                    help="run the whole pass (grads + scoring) but emit no scores")
    common.add_threads_arg(ap)
    args = ap.parse_args(argv)
    common.set_threads(args.threads)

    import torch

    criteria = CRITERIA if args.criteria == "all" else args.criteria.split(",")
    reductions = REDUCTIONS if args.reductions == "all" else args.reductions.split(",")
    for c in criteria:
        assert c in CRITERIA, f"unknown criterion {c}"
    for r in reductions:
        assert r in REDUCTIONS, f"unknown reduction {r}"

    ids_list = load_ids(args)
    ids = torch.tensor(ids_list, dtype=torch.long)

    t0 = time.perf_counter()
    model = common.load_model(args.model)
    t_load = time.perf_counter() - t0
    n_q, n_kv, hd, n_layers, inter = geometry(model)
    layers = list(range(*(args.layers or (0, n_layers))))

    need_grad = any(c in NEEDS_GRAD for c in criteria)
    need_fisher = any(c in SECOND_ORDER for c in criteria)
    # Reference behaviour: requires_grad stays True on every parameter (from_pretrained default).
    n_params_grad = sum(p.numel() for p in model.parameters() if p.requires_grad)

    t1 = time.perf_counter()
    fisher, per_sample = (None, None)
    if need_fisher:
        fisher, per_sample = fisher_pass(model, ids)
    t2 = time.perf_counter()
    loss = gradient_pass(model, ids) if need_grad else None
    t3 = time.perf_counter()
    dtype = torch.float64 if args.score_dtype == "float64" else torch.float32
    scores = score_layers(model, layers, criteria, reductions, fisher, dtype)
    t4 = time.perf_counter()

    if args.dump_grads and need_grad:
        dump_grads(model, layers, fisher, args.dump_grads)

    result = {
        "model": str(args.model),
        "geometry": {"n_layers": n_layers, "n_heads": n_q, "n_kv_heads": n_kv, "head_dim": hd,
                     "n_rep": n_q // n_kv, "intermediate": inter, "hidden": model.config.hidden_size},
        "calibration": {"n": len(ids_list), "seq_len": len(ids_list[0]),
                        "ids_sha256": common.ids_sha256(ids_list)},
        "layers": [layers[0], layers[-1] + 1] if layers else [0, 0],
        "criteria": criteria,
        "reductions": reductions,
        "score_dtype": args.score_dtype,
        "loss": loss,
        "per_sample_losses": per_sample,
        "gqa_mapping": "correct (query head h -> KV group h // n_rep)",
        "reference_mode": ("LLM-Pruner behaviour: requires_grad on all parameters "
                           f"({n_params_grad} elements), grads kept for all; Fisher (if any) "
                           "accumulated for all parameters"),
        "threads": args.threads,
        "timing": {"load_seconds": t_load, "fisher_seconds": t2 - t1,
                   "forward_backward_seconds": t3 - t2, "scoring_seconds": t4 - t3,
                   "total_seconds": t4 - t1},
        "peak_rss_mb": peak_rss_mb(),
    }
    summary = dict(result)
    if not args.time_only:
        result["scores"] = scores
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result) + "\n")
        summary["out"] = str(args.out)
    last = summary if (args.out or args.time_only) else result
    common.log(f"loss {loss}  total {result['timing']['total_seconds']:.2f}s  "
               f"peak RSS {result['peak_rss_mb']:.0f} MB")
    sys.stdout.write(json.dumps(last) + "\n")
    sys.stdout.flush()
    return result, scores, model


if __name__ == "__main__":
    main()
