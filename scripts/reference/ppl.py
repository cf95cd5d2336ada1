#!/usr/bin/env python3
"""LLM-Pruner perplexity protocol (PyTorch reference).

ids = tokenizer(protocol_text, add_special_tokens=True) (tokenized once),
cut into non-overlapping --seq-len windows (remainder dropped);
NLL of logits[:, :-1] vs ids[:, 1:] per token in fp32, accumulated in float64;
PPL = exp(mean NLL over all scored tokens).
"""
import argparse
import json
import math
import time

import common


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(common.DEFAULT_MODEL))
    ap.add_argument("--dataset", default="wikitext2", help="wikitext2 | ptb | ptb-valid | FILE")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--max-windows", type=int, default=0, help="0 = all windows")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--json", action="store_true", help="print a single JSON object on stdout")
    ap.add_argument("--out", help="also write the JSON result to this file")
    ap.add_argument("--adapter", help="a peft LoRA adapter directory, applied with PeftModel.from_pretrained (not merged)")
    ap.add_argument("--progress", type=int, default=20, help="log progress every N batches (0 = never)")
    common.add_threads_arg(ap)
    args = ap.parse_args()
    common.set_threads(args.threads)

    import numpy as np
    import torch

    tok = common.load_tokenizer(args.model)
    t0 = time.time()
    ids = common.tokenize_dataset(tok, args.dataset)
    tok_s = time.time() - t0
    bos = tok.bos_token_id
    first_is_bos = bos is not None and len(ids) > 0 and ids[0] == bos
    common.log(f"tokenized {len(ids)} ids in {tok_s:.1f}s; first ids {ids[:8]}; bos_token_id={bos} first_is_bos={first_is_bos}")

    model = common.load_model(args.model)
    if args.adapter:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, args.adapter)
        model.eval()
    r = common.perplexity(model, ids, seq_len=args.seq_len, max_windows=args.max_windows, batch=args.batch,
                          progress=args.progress)
    L, nwin, scored, nll_mean = args.seq_len, r["windows"], r["scored"], r["nll_mean"]
    res = {
        "model": str(args.model),
        "adapter": args.adapter,
        "dataset": args.dataset,
        "dataset_path": str(common.dataset_path(args.dataset)),
        "seq_len": L,
        "batch": args.batch,
        "threads": args.threads,
        "ppl": r["ppl"],
        "nll_mean": nll_mean,
        "nll_sum": r["nll_sum"],
        "tokens": len(ids),
        "windows": nwin,
        "scored": scored,
        "seconds": r["seconds"],
        "tokens_per_s": r["tokens_per_s"],
        "ids_sha256": common.ids_sha256(ids),
        "first_ids": ids[:8],
        "bos_token_id": bos,
        "first_is_bos": first_is_bos,
        "window_nll_sums_first8": r["window_nll_sums_first8"],
        "torch_version": torch.__version__,
    }
    import transformers
    res["transformers_version"] = transformers.__version__
    if args.out:
        from pathlib import Path
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"ppl {res['ppl']:.6f}  nll_mean {nll_mean:.6f}  tokens {len(ids)}  windows {nwin}  scored {scored}  "
              f"{res['tokens_per_s']:.0f} tok/s  ids_sha256 {res['ids_sha256']}")


if __name__ == "__main__":
    main()
