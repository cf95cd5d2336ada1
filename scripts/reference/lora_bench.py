#!/usr/bin/env python3
"""Time LoRA training steps with torch + peft on the same examples, order and padding as `llmprune tune`.

Examples: the Alpaca file tokenized as post_training.py does (make_lora_fixtures.tokenize_record); no validation
split; step k takes permutation[k*batch:(k+1)*batch] of numpy default_rng(seed) (llmprune's epoch-0 order),
in micro-batches right-padded to their longest example. Each step: forward + backward per micro-batch (loss =
sum NLL / the step's scored predictions), clip_grad_norm_(1.0), AdamW, as HF Trainer. peft LoRA r 8, alpha 16,
dropout 0.05, targets q,k,v,o,gate,up,down; fp32 weights; model in train mode. With --autocast bf16 the forward
runs under torch.autocast("cpu", dtype=torch.bfloat16) (torch's own mixed precision on CPU: linear layers in bf16
through oneDNN, their outputs in bf16; the loss in fp32), the backward follows it; adapters and AdamW stay fp32.
Prints one JSON object: tokens (padded, run forward), seconds, tokens_per_s, losses, autocast.
"""
import argparse
import json
import time

import common
from make_lora_fixtures import tokenize_record, ALPACA


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(common.DEFAULT_MODEL))
    ap.add_argument("--data", default=str(ALPACA))
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--cutoff", type=int, default=256)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--autocast", choices=["none", "bf16"], default="none")
    common.add_threads_arg(ap)
    args = ap.parse_args()
    common.set_threads(args.threads)
    import numpy as np
    import torch
    from peft import LoraConfig, get_peft_model

    tok = common.load_tokenizer(args.model)
    data = json.loads(open(args.data).read())
    order = np.random.default_rng(args.seed).permutation(len(data))
    model = common.load_model(args.model)
    for p in model.parameters():
        p.requires_grad_(False)
    pm = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, bias="none", task_type="CAUSAL_LM",
                                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                          "up_proj", "down_proj"]))
    pm.train()
    params = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    tokens, losses, seconds = 0, [], 0.0
    for k in range(args.steps):
        exs = [tokenize_record(tok, data[i], args.cutoff) for i in order[k * args.batch:(k + 1) * args.batch]]
        n_items = sum(sum(1 for y in e["labels"][1:] if y != -100) for e in exs)
        t0 = time.perf_counter()
        total = 0.0
        for s in range(0, len(exs), args.micro_batch):
            mb = exs[s:s + args.micro_batch]
            T = max(len(e["input_ids"]) for e in mb)
            ids = torch.tensor([e["input_ids"] + [0] * (T - len(e["input_ids"])) for e in mb])
            labels = torch.tensor([e["labels"] + [-100] * (T - len(e["labels"])) for e in mb])
            mask = torch.tensor([[1] * len(e["input_ids"]) + [0] * (T - len(e["input_ids"])) for e in mb])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.autocast == "bf16"):
                logits = pm(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()
            V = logits.shape[-1]
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1),
                                                     ignore_index=-100, reduction="sum") / n_items
            loss.backward()
            total += float(loss.detach())
            tokens += len(mb) * T
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad()
        seconds += time.perf_counter() - t0
        losses.append(total)
        common.log(f"step {k + 1}: loss {total:.4f}")
    print(json.dumps({"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds, "losses": losses,
                      "threads": args.threads, "torch_version": torch.__version__, "autocast": args.autocast}))


if __name__ == "__main__":
    main()
