#!/usr/bin/env python3
"""Perplexity of an llmprune-written pruned model directory, computed by PyTorch/transformers.

  run.sh pruned_model_check.py --dir D [--dataset wikitext2,ptb] [--max-windows N] [--seq-len 128]
                               [--batch 8] [--threads T] [--json]
  run.sh pruned_model_check.py --self-test [--threads T] [--json]

D is loaded with common.load_model (per-layer `layer_widths` supported) and its own tokenizer.json
via common.load_tokenizer(D). The protocol is ppl.py's (common.tokenize_dataset + common.perplexity).
Per dataset it prints ppl, tokens, ids sha256; and whether config.json had `layer_widths`.
With --json the last stdout line is one JSON object.

--self-test: builds a heterogeneous model by slicing Tests/LlamaModelTests/Resources/tiny by hand,
loads it with common.load_model, and compares its logits with those of the original tiny model whose
removed units are masked (o_proj / down_proj columns zeroed). Also a variant with a layer pruned to
0 heads and 0 channels. Fails (exit 1) if the max abs diff exceeds 1e-5.
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

import common

TINY = common.REPO_ROOT / "Tests" / "LlamaModelTests" / "Resources" / "tiny"


def _slice_tiny(out_dir, spec, seed=0):
    """spec: {layer: (kv_heads_kept, channels_kept[, query_heads_kept])} (sorted index lists; query heads
    default to all heads of the kept KV groups; given explicitly, every kept KV group must keep the same
    number of them, e.g. one each -> n_rep 1 in that layer). Writes a layer_widths model
    to out_dir and returns the masked state dict of the original tiny model (same function)."""
    import torch
    from safetensors.torch import load_file, save_file
    cfg = json.loads((TINY / "config.json").read_text())
    n_q, n_kv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    n_rep = n_q // n_kv
    sd = load_file(str(TINY / "model.safetensors"))
    sliced = dict(sd)
    masked = {k: v.clone() for k, v in sd.items()}
    widths = []
    for i in range(cfg["num_hidden_layers"]):
        kv_keep, ch_keep, *qh = spec.get(i, (list(range(n_kv)), list(range(cfg["intermediate_size"]))))
        q_heads = [k * n_rep + j for k in kv_keep for j in range(n_rep)]  # KV head k owns query heads k*n_rep..
        if qh:
            q_heads = qh[0]
            assert all(h // n_rep in kv_keep for h in q_heads)
            assert all(sum(h // n_rep == k for h in q_heads) == len(q_heads) // len(kv_keep) for k in kv_keep)
        q_rows = torch.tensor([h * hd + d for h in q_heads for d in range(hd)], dtype=torch.long)
        kv_rows = torch.tensor([k * hd + d for k in kv_keep for d in range(hd)], dtype=torch.long)
        ch = torch.tensor(ch_keep, dtype=torch.long)
        p = f"model.layers.{i}."
        a, m = p + "self_attn.", p + "mlp."
        sliced[a + "q_proj.weight"] = sd[a + "q_proj.weight"][q_rows].contiguous()
        sliced[a + "k_proj.weight"] = sd[a + "k_proj.weight"][kv_rows].contiguous()
        sliced[a + "v_proj.weight"] = sd[a + "v_proj.weight"][kv_rows].contiguous()
        sliced[a + "o_proj.weight"] = sd[a + "o_proj.weight"][:, q_rows].contiguous()
        sliced[m + "gate_proj.weight"] = sd[m + "gate_proj.weight"][ch].contiguous()
        sliced[m + "up_proj.weight"] = sd[m + "up_proj.weight"][ch].contiguous()
        sliced[m + "down_proj.weight"] = sd[m + "down_proj.weight"][:, ch].contiguous()
        o_keep = torch.zeros(n_q * hd, dtype=torch.bool)
        o_keep[q_rows] = True
        masked[a + "o_proj.weight"][:, ~o_keep] = 0
        d_keep = torch.zeros(cfg["intermediate_size"], dtype=torch.bool)
        d_keep[ch] = True
        masked[m + "down_proj.weight"][:, ~d_keep] = 0
        widths.append({"num_attention_heads": len(q_heads), "num_key_value_heads": len(kv_keep),
                       "intermediate_size": len(ch_keep)})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg["layer_widths"] = widths  # top-level counts stay those of the widest layer (layer 0: full)
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    (out / "generation_config.json").write_text((TINY / "generation_config.json").read_text())
    save_file(sliced, str(out / "model.safetensors"), metadata={"format": "pt"})
    return masked, widths


def self_test(args):
    import torch
    from transformers import AutoModelForCausalLM
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, 256, (2, 17), generator=g)
    cases = {
        # layer 1: keep KV head 1 (query heads 2, 3) and 50 random channels; layer 2: all heads, 40 channels
        "hetero": {1: ([1], sorted(torch.randperm(96, generator=g)[:50].tolist())),
                   2: ([0, 1], sorted(torch.randperm(96, generator=g)[:40].tolist()))},
        # per-layer GQA group size: layer 1 keeps both KV heads but one query head each (1, 3) -> n_rep 1;
        # layer 2 keeps KV head 1 with query heads 2, 3 (n_rep 2) and 70 channels
        "qhead": {1: ([0, 1], list(range(96)), [1, 3]),
                  2: ([1], sorted(torch.randperm(96, generator=g)[:70].tolist()), [2, 3])},
        # layer 1 pruned away entirely (0 heads, 0 channels)
        "empty_layer": {1: ([], [])},
    }
    results = {}
    ok = True
    for name, spec in cases.items():
        with tempfile.TemporaryDirectory() as td:
            masked, widths = _slice_tiny(td, spec)
            m = common.load_model(td)
            ref = AutoModelForCausalLM.from_pretrained(str(TINY), dtype=torch.float32, local_files_only=True)
            missing, unexpected = ref.load_state_dict(masked, strict=False)
            assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
            ref.eval()
            with torch.inference_mode():
                a = m(input_ids=ids, use_cache=False).logits
                b = ref(input_ids=ids, use_cache=False).logits
                c = AutoModelForCausalLM.from_pretrained(str(TINY), dtype=torch.float32, local_files_only=True)(
                    input_ids=ids, use_cache=False).logits
            diff = float((a - b).abs().max())
            vs_unpruned = float((a - c).abs().max())
            shapes = {f"layer{i}": {"q": tuple(l.self_attn.q_proj.weight.shape) if hasattr(l.self_attn, "q_proj") else None,
                                    "down": tuple(l.mlp.down_proj.weight.shape),
                                    "num_key_value_groups": getattr(l.self_attn, "num_key_value_groups", None)}
                      for i, l in enumerate(m.model.layers)}
            results[name] = {"layer_widths": widths, "max_abs_diff_vs_masked": diff,
                             "max_abs_diff_vs_unpruned": vs_unpruned, "shapes": shapes}
            ok &= diff <= 1e-5 and vs_unpruned > 1e-3
            print(f"{name}: widths {[tuple(w.values()) for w in widths]}  max|logits - masked original| = {diff:.3e}  "
                  f"(vs unpruned original {vs_unpruned:.3e})")
    res = {"self_test": results, "ok": ok}
    if args.json:
        print(json.dumps(res))
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", help="llmprune output directory (config.json, model.safetensors, tokenizer.json)")
    ap.add_argument("--dataset", default="wikitext2,ptb", help="comma list: wikitext2 | ptb | ptb-valid | FILE")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--max-windows", type=int, default=0, help="0 = all windows")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--progress", type=int, default=0, help="log progress every N batches (0 = never)")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last stdout line")
    ap.add_argument("--self-test", action="store_true", help="tiny heterogeneous-model loader check")
    common.add_threads_arg(ap)
    args = ap.parse_args()
    common.set_threads(args.threads)
    if args.self_test:
        return self_test(args)
    if not args.dir:
        ap.error("--dir is required (or --self-test)")

    import torch
    import transformers
    widths = common.read_layer_widths(args.dir)
    tok = common.load_tokenizer(args.dir)
    model = common.load_model(args.dir)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"dir {args.dir}  layer_widths {'yes' if widths is not None else 'no'}  params {n_params}  "
          f"tokenizer {type(tok).__name__}")
    res = {"dir": str(args.dir), "layer_widths": widths is not None, "params": n_params,
           "seq_len": args.seq_len, "batch": args.batch, "threads": args.threads,
           "max_windows": args.max_windows, "torch_version": torch.__version__,
           "transformers_version": transformers.__version__, "datasets": {}}
    if widths is not None:
        res["layer_widths_summary"] = [[w["num_attention_heads"], w["num_key_value_heads"], w["intermediate_size"]]
                                       for w in widths]
    for ds in [s for s in args.dataset.split(",") if s]:
        ids = common.tokenize_dataset(tok, ds)
        r = common.perplexity(model, ids, seq_len=args.seq_len, max_windows=args.max_windows,
                              batch=args.batch, progress=args.progress)
        bos = tok.bos_token_id
        r.update({"dataset_path": str(common.dataset_path(ds)), "tokens": len(ids),
                  "ids_sha256": common.ids_sha256(ids), "first_ids": ids[:8],
                  "first_is_bos": bos is not None and len(ids) > 0 and ids[0] == bos})
        res["datasets"][ds] = r
        print(f"{ds}: ppl {r['ppl']:.6f}  nll_mean {r['nll_mean']:.8f}  tokens {len(ids)}  windows {r['windows']}  "
              f"scored {r['scored']}  ids_sha256 {r['ids_sha256']}  ({r['seconds']:.1f}s)", flush=True)
    if args.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
