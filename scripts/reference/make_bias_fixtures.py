#!/usr/bin/env python3
"""Golden fixtures for linear-layer biases: a tiny random Qwen2 (q/k/v biases, tied, sliding window on layer 1 only
through use_sliding_window + max_window_layers) and a tiny random Llama with attention_bias and mlp_bias (q/k/v/o and
gate/up/down biases, untied). fp32, eager attention.

Output (default Tests/LlamaModelTests/Resources/), for NAME in tiny_qwen2_bias, tiny_llama_bias:
  NAME/                      config.json, model.safetensors
  golden/NAME_logits.bin     float32 logits [2, 17, 256], C order
  golden/NAME_grads.bin      float32 ∂loss/∂p of every linear weight and bias, in the index's order
  NAME.json                  input ids, loss, the gradient index (name, shape, offset), and Taylor unit scores
                             (importance.py with the bias element counted in its row: element1, vector, param_second;
                             reductions sum and max; Fisher from LLM-Pruner's per-sample loop)

Run: scripts/reference/run.sh make_bias_fixtures.py [--out DIR]
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

import common
import importance as imp

SEED, IDS_SEED = 0, 4321
BATCH, SEQ = 2, 17
BASE = dict(vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, intermediate_size=96, rms_norm_eps=1e-5, max_position_embeddings=256, bos_token_id=1,
            eos_token_id=2, hidden_act="silu")
MODELS = {
    "tiny_qwen2_bias": ("qwen2", dict(BASE, tie_word_embeddings=True, rope_theta=1000000.0, use_sliding_window=True,
                                      sliding_window=5, max_window_layers=1)),
    "tiny_llama_bias": ("llama", dict(BASE, tie_word_embeddings=False, rope_theta=10000.0, attention_bias=True,
                                      mlp_bias=True)),
}


def build(kind, cfg):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
    config = Qwen2Config(**cfg) if kind == "qwen2" else LlamaConfig(**cfg)
    config._attn_implementation = "eager"
    torch.manual_seed(SEED)
    model = (Qwen2ForCausalLM if kind == "qwen2" else LlamaForCausalLM)(config)
    with torch.no_grad():   # the scales of make_tiny_fixtures.py; biases large enough to matter
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif "embed_tokens" in name:
                p.copy_(0.25 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.2 * torch.randn_like(p))
            else:
                p.copy_(0.08 * torch.randn_like(p))
    model.eval()
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(common.REPO_ROOT / "Tests" / "LlamaModelTests" / "Resources"))
    common.add_threads_arg(ap)
    args = ap.parse_args()
    common.set_threads(args.threads)
    import numpy as np
    import torch

    out = Path(args.out)
    (out / "golden").mkdir(exist_ok=True)
    for name, (kind, cfg) in MODELS.items():
        model = build(kind, cfg)
        d = out / name
        if d.exists():
            shutil.rmtree(d)
        model.save_pretrained(str(d))
        g = torch.Generator().manual_seed(IDS_SEED)
        ids = torch.randint(3, cfg["vocab_size"], (BATCH, SEQ), generator=g)

        fisher, _ = imp.fisher_pass(model, ids)
        model.zero_grad(set_to_none=True)
        res = model(input_ids=ids, labels=ids)
        res.loss.backward()
        res.logits.detach().to(torch.float32).numpy().astype("<f4").tofile(out / "golden" / f"{name}_logits.bin")
        index, chunks, offset = [], [], 0
        for pname, p in model.named_parameters():
            if not (pname.endswith("proj.weight") or pname.endswith("proj.bias")):
                continue
            grad = p.grad.detach().to(torch.float32).contiguous().numpy().astype("<f4").ravel()
            index.append({"name": pname, "shape": list(p.shape), "offset": offset})
            chunks.append(grad)
            offset += grad.size
        np.concatenate(chunks).tofile(out / "golden" / f"{name}_grads.bin")

        scores = imp.score_layers(model, range(cfg["num_hidden_layers"]), ["element1", "vector", "param_second"],
                                  ["sum", "max"], fisher, torch.float64)
        # The biases must matter: the same model with them zeroed gives another loss.
        with torch.no_grad():
            saved = {n: p.clone() for n, p in model.named_parameters() if n.endswith(".bias")}
            for n, p in model.named_parameters():
                if n.endswith(".bias"):
                    p.zero_()
            no_bias_loss = model(input_ids=ids, labels=ids).loss.item()
            for n, p in model.named_parameters():
                if n in saved:
                    p.copy_(saved[n])
        meta = {"input_ids": ids.tolist(), "loss": res.loss.item(), "loss_without_biases": no_bias_loss,
                "grads": index, "scores": scores, "torch": torch.__version__,
                "transformers": __import__("transformers").__version__}
        (out / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
        print(f"{name}: loss {res.loss.item():.6f} (biases zeroed {no_bias_loss:.6f}); {offset} gradient values",
              file=sys.stderr)


if __name__ == "__main__":
    main()
