#!/usr/bin/env python3
"""Check an adapter written by `llmprune tune` against peft, and a model written by `llmprune merge`.

  check_lora_adapter.py --model BASE --adapter DIR [--merged DIR]

Loads BASE (.gguf or HF dir) with PeftModel.from_pretrained(BASE, DIR) (peft's own loader: strict about
tensor names and shapes), runs a fixed Alpaca prompt, and prints the logits' change from the base model.
With --merged (the output of `llmprune merge`), compares its logits with the peft model's and its weights
with peft's merge_and_unload(). Prints one JSON object.
"""
import argparse
import json

import common

PROMPT = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
          "request.\n\n### Instruction:\nGive three tips for staying healthy.\n\n### Response:\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--merged")
    common.add_threads_arg(ap)
    args = ap.parse_args()
    common.set_threads(args.threads)
    import torch
    from peft import PeftModel

    tok = common.load_tokenizer(args.model)
    ids = torch.tensor([tok(PROMPT)["input_ids"]])
    base = common.load_model(args.model)
    with torch.no_grad():
        base_logits = base(input_ids=ids).logits.float()
    pm = PeftModel.from_pretrained(base, args.adapter)
    pm.eval()
    with torch.no_grad():
        peft_logits = pm(input_ids=ids).logits.float()
    scale = float(peft_logits.abs().max())
    out = {"tokens": ids.shape[1], "adapter_effect_max_abs": float((peft_logits - base_logits).abs().max()),
           "logit_scale": scale}
    if args.merged:
        merged = common.load_model(args.merged)
        with torch.no_grad():
            merged_logits = merged(input_ids=ids).logits.float()
        out["merged_vs_peft_max_abs"] = float((merged_logits - peft_logits).abs().max())
        out["merged_vs_peft_rel"] = out["merged_vs_peft_max_abs"] / scale
        ref = pm.merge_and_unload().state_dict()
        worst = 0.0
        for k, v in merged.state_dict().items():
            if k in ref and "proj" in k:
                worst = max(worst, float((v - ref[k]).abs().max() / ref[k].abs().max()))
        out["merged_weights_vs_peft_merge_max_rel"] = worst
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
