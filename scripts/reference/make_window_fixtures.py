#!/usr/bin/env python3
"""Golden fixtures for sliding-window attention: a tiny random Mistral (transformers MistralForCausalLM, fp32,
sliding_window 5 over sequences of 17 tokens, so the window cuts every row past position 4).

Output (default Tests/LlamaModelTests/Resources/):
  tiny_mistral_swa/          config.json, model.safetensors (tied, 2 layers, GQA 4/2, head_dim 16)
  golden/tiny_mistral_swa_logits.bin   float32 logits [2, 17, 256], C order
  golden/tiny_mistral_swa_grads.bin    float32 ∂loss/∂W of every linear weight, in the index's order
  tiny_mistral_swa.json      input ids, loss (model(ids, labels=ids).loss), the gradient index (name, shape, offset)

Run: scripts/reference/run.sh make_window_fixtures.py [--out DIR]
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

import common

SEED, IDS_SEED = 0, 1234
BATCH, SEQ, WINDOW = 2, 17, 5
CONFIG = dict(vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              head_dim=16, intermediate_size=96, rms_norm_eps=1e-5, rope_theta=10000.0, max_position_embeddings=256,
              tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, hidden_act="silu", sliding_window=WINDOW)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(common.REPO_ROOT / "Tests" / "LlamaModelTests" / "Resources"))
    common.add_threads_arg(ap)
    args = ap.parse_args()
    common.set_threads(args.threads)
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    out = Path(args.out)
    config = MistralConfig(**CONFIG)
    config._attn_implementation = "eager"
    torch.manual_seed(SEED)
    model = MistralForCausalLM(config)
    with torch.no_grad():   # the scales of make_tiny_fixtures.py: logits with std ~1-2
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif "embed_tokens" in name:
                p.copy_(0.25 * torch.randn_like(p))
            else:
                p.copy_(0.08 * torch.randn_like(p))
    model.eval()
    d = out / "tiny_mistral_swa"
    if d.exists():
        shutil.rmtree(d)
    model.save_pretrained(str(d))

    g = torch.Generator().manual_seed(IDS_SEED)
    ids = torch.randint(3, CONFIG["vocab_size"], (BATCH, SEQ), generator=g)
    res = model(input_ids=ids, labels=ids)
    res.loss.backward()
    (out / "golden").mkdir(exist_ok=True)
    res.logits.detach().to(torch.float32).numpy().astype("<f4").tofile(out / "golden" / "tiny_mistral_swa_logits.bin")

    index, chunks, offset = [], [], 0
    for name, p in model.named_parameters():
        if not name.endswith("proj.weight"):
            continue
        grad = p.grad.detach().to(torch.float32).contiguous().numpy().astype("<f4").ravel()
        index.append({"name": name, "shape": list(p.shape), "offset": offset})
        chunks.append(grad)
        offset += grad.size
    import numpy as np
    np.concatenate(chunks).tofile(out / "golden" / "tiny_mistral_swa_grads.bin")

    # The window must matter for the test to mean anything: the same weights with full attention.
    full_cfg = MistralConfig(**{**CONFIG, "sliding_window": None})
    full_cfg._attn_implementation = "eager"
    full = MistralForCausalLM(full_cfg)
    full.load_state_dict(model.state_dict())
    full.eval()
    with torch.no_grad():
        full_loss = full(input_ids=ids, labels=ids).loss.item()

    meta = {"input_ids": ids.tolist(), "loss": res.loss.item(), "loss_without_window": full_loss,
            "window": WINDOW, "grads": index, "torch": torch.__version__,
            "transformers": __import__("transformers").__version__}
    (out / "tiny_mistral_swa.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"loss {res.loss.item():.6f} (full attention {full_loss:.6f}); {offset} gradient values", file=sys.stderr)


if __name__ == "__main__":
    main()
