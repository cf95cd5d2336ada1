#!/usr/bin/env python3
"""Time the PyTorch forward pass (fp32, inference_mode) on random ids.

Prints one JSON object: {tokens_per_s, seconds, threads, torch_version, ...}.
seconds = mean wall time of one forward of [batch, seq_len] after --warmup untimed passes.
"""
import argparse
import json
import time

import common


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(common.DEFAULT_MODEL))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    common.add_threads_arg(ap)
    args = ap.parse_args()
    common.set_threads(args.threads)

    import torch

    model = common.load_model(args.model)
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(0, vocab, (args.batch, args.seq_len), generator=g)
    times = []
    with torch.inference_mode():
        for _ in range(args.warmup):
            model(input_ids=ids, use_cache=False)
        for _ in range(args.iters):
            t0 = time.perf_counter()
            model(input_ids=ids, use_cache=False)
            times.append(time.perf_counter() - t0)
    secs = sum(times) / len(times)
    tokens = args.batch * args.seq_len
    print(json.dumps({
        "tokens_per_s": tokens / secs,
        "seconds": secs,
        "seconds_min": min(times),
        "seconds_total": sum(times),
        "iters": args.iters,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "model": str(args.model),
    }))


if __name__ == "__main__":
    main()
