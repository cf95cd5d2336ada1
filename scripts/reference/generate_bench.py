"""transformers' greedy generate speed (fp32, KV cache, inference_mode), for scripts/bench/generate.sh: one JSON line
with prefill and decode tokens/s, measured like `llmprune generate` (prefill: the prompt's forward and the first
token; decode: every later token), with transformers' streamer hook marking when the first new token is out.

  scripts/reference/run.sh generate_bench.py --model PATH --prompt TEXT --new-tokens 128 [--threads 2] [--repeat 2]
"""
import argparse
import json
import resource
import time

import common


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class FirstToken:
    """A streamer that records when generate puts out the prompt (put #1) and the first new token (put #2), in wall
    and processor time."""
    def __init__(self):
        self.times = []
        self.cpu = []

    def put(self, value):
        self.times.append(time.perf_counter())
        self.cpu.append(cpu_seconds())

    def end(self):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(common.DEFAULT_MODEL))
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=2, help="runs; the fastest is reported (the first warms up)")
    common.add_threads_arg(ap)
    a = ap.parse_args()
    common.set_threads(a.threads)
    import torch
    model = common.load_model(a.model)
    tok = common.load_tokenizer(a.model)
    ids = torch.tensor([tok(a.prompt)["input_ids"]])
    best = None
    for _ in range(a.repeat):
        s = FirstToken()
        with torch.inference_mode():
            t0 = time.perf_counter()
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=a.new_tokens,
                                 min_new_tokens=a.new_tokens, do_sample=False, streamer=s,
                                 temperature=None, top_p=None, top_k=None)
            t2 = time.perf_counter()
            c2 = cpu_seconds()
        n = out.shape[1] - ids.shape[1]
        t1 = s.times[1]
        r = {"prompt_tokens": ids.shape[1], "new_tokens": n, "prefill_s": t1 - t0, "decode_s": t2 - t1,
             "total_s": t2 - t0, "decode_cpu_s": c2 - s.cpu[1], "prefill_tok_s": ids.shape[1] / (t1 - t0), "decode_tok_s": (n - 1) / (t2 - t1),
             "tokens": out[0, ids.shape[1]:].tolist(), "threads": a.threads, "torch": torch.__version__}
        if best is None or r["total_s"] < best["total_s"]:
            best = r
    print(json.dumps(best))


if __name__ == "__main__":
    main()
