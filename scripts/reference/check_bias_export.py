#!/usr/bin/env python3
"""Checks llmprune's export of pruned biased models with transformers: loads each model the PruningTests test
`biasedCutEqualsMaskedOriginalAndExports` leaves under $TMPDIR/llmprune-bias-export (a tiny Qwen2 and a Llama with
attention_bias + mlp_bias, every layer cut the same) with AutoModelForCausalLM, and compares its logits on the same
ids with llmprune's. Prints the max |diff| per model; exit 1 if any exceeds 1e-4.

Run (after `swift test --filter biasedCut`): scripts/reference/run.sh check_bias_export.py [--dir DIR]
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

import common


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "llmprune-bias-export"))
    common.add_threads_arg(ap)
    args = ap.parse_args()
    common.set_threads(args.threads)
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    root, worst = Path(args.dir), 0.0
    for name in ["tiny_qwen2_bias", "tiny_llama_bias"]:
        meta = json.loads((root / f"{name}.json").read_text())
        ours = np.fromfile(root / f"{name}.logits.bin", dtype="<f4").reshape(meta["shape"])
        model = AutoModelForCausalLM.from_pretrained(str(root / name), dtype=torch.float32, attn_implementation="eager")
        model.eval()
        with torch.no_grad():
            ref = model(input_ids=torch.tensor(meta["input_ids"])).logits.numpy()
        diff = float(np.abs(ref - ours).max())
        worst = max(worst, diff)
        print(f"{name}: {type(model).__name__}, layer shapes "
              f"{model.config.num_attention_heads}/{model.config.num_key_value_heads}/{model.config.intermediate_size}, "
              f"max |logit diff| vs llmprune {diff:.3e}")
    sys.exit(0 if worst <= 1e-4 else 1)


if __name__ == "__main__":
    main()
