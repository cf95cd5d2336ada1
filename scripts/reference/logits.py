#!/usr/bin/env python3
"""Logits (first K positions) and loss for given token ids -- a debugging aid.

--ids-json F: a JSON list of ints (one sequence), a list of lists (a batch of equal length),
or an object with an "input_ids" key holding either.
Output JSON: input_ids, shape, loss (= model(ids, labels=ids).loss), per-token NLL,
logits[:, :K] (rows = positions), argmax per position, optionally hidden states.
"""
import argparse
import json
from pathlib import Path

import common


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(common.DEFAULT_MODEL))
    ap.add_argument("--ids-json", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rows", "-k", type=int, default=4, help="K: number of leading positions whose logits are written (0 = all)")
    ap.add_argument("--hidden", action="store_true", help="also write the hidden states (all layers) of the first K positions")
    ap.add_argument("--bin", help="also write the full logits as little-endian float32 [B,S,V] to this file")
    common.add_threads_arg(ap)
    args = ap.parse_args()
    common.set_threads(args.threads)

    import numpy as np
    import torch

    data = json.loads(Path(args.ids_json).read_text())
    if isinstance(data, dict):
        data = data["input_ids"]
    if data and isinstance(data[0], int):
        data = [data]
    ids = torch.tensor(data, dtype=torch.long)

    model = common.load_model(args.model)
    with torch.inference_mode():
        out = model(input_ids=ids, labels=ids if ids.shape[1] > 1 else None,
                    output_hidden_states=args.hidden, use_cache=False)
    logits = out.logits.float()
    k = logits.shape[1] if args.rows <= 0 else min(args.rows, logits.shape[1])
    res = {
        "model": str(args.model),
        "input_ids": ids.tolist(),
        "shape": list(logits.shape),
        "loss": float(out.loss) if out.loss is not None else None,
        "rows": k,
        "logits": [[[float(x) for x in row] for row in b[:k]] for b in logits],
        "argmax": logits.argmax(-1).tolist(),
        "torch_version": torch.__version__,
    }
    if ids.shape[1] > 1:
        lp = torch.log_softmax(logits[:, :-1], dim=-1)
        nll = -lp.gather(-1, ids[:, 1:, None]).squeeze(-1)
        res["per_token_nll"] = nll.tolist()
        res["nll_sum"] = [float(x) for x in nll.double().sum(1)]
    if args.hidden:
        res["hidden_states"] = [[[[float(x) for x in row] for row in b[:k]] for b in h.float()]
                                for h in out.hidden_states]
    if args.bin:
        Path(args.bin).write_bytes(logits.numpy().astype("<f4").tobytes())
        res["logits_bin"] = args.bin
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res) + "\n")
    common.log(f"wrote {args.out}: shape {res['shape']} loss {res['loss']}")


if __name__ == "__main__":
    main()
