#!/usr/bin/env python3
"""Golden fixtures for attention variants of the Llama family, tiny random models in fp32 over sequences of 17 tokens:
  tiny_mistral_swa  transformers MistralForCausalLM, sliding_window 5 (the window cuts every row past position 4)
  tiny_smollm3      SmolLM3ForCausalLM, 4 layers: layer 3 without RoPE (no_rope_layer_interval 4), and with
                    use_sliding_window the NoPE layer attends within a window of 5

Output for each NAME (default Tests/LlamaModelTests/Resources/):
  NAME/                      config.json, model.safetensors (tied, GQA 4/2, head_dim 16)
  golden/NAME_logits.bin     float32 logits [2, 17, 256], C order
  golden/NAME_grads.bin      float32 ∂loss/∂W of every linear weight, in the index's order
  NAME.json                  input ids, loss (model(ids, labels=ids).loss), loss with full causal attention and RoPE
                             everywhere (the variant must matter), the gradient index (name, shape, offset)

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
BASE = dict(vocab_size=256, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
            intermediate_size=96, rms_norm_eps=1e-5, rope_theta=10000.0, max_position_embeddings=256,
            tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, hidden_act="silu")


def variants():
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, SmolLM3Config, SmolLM3ForCausalLM
    # (name, model class, config, the same weights as plain Llama math: full causal attention, RoPE in every layer)
    yield ("tiny_mistral_swa", MistralForCausalLM, MistralConfig(**BASE, num_hidden_layers=2, sliding_window=WINDOW),
           MistralForCausalLM, MistralConfig(**BASE, num_hidden_layers=2, sliding_window=None))
    yield ("tiny_smollm3", SmolLM3ForCausalLM,
           SmolLM3Config(**BASE, num_hidden_layers=4, no_rope_layer_interval=4, use_sliding_window=True,
                         sliding_window=WINDOW, pad_token_id=0),
           LlamaForCausalLM, LlamaConfig(**BASE, num_hidden_layers=4))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(common.REPO_ROOT / "Tests" / "LlamaModelTests" / "Resources"))
    common.add_threads_arg(ap)
    args = ap.parse_args()
    common.set_threads(args.threads)

    out = Path(args.out)
    for name, cls, config, plain_cls, plain_config in variants():
        make(out, name, cls, config, plain_cls, plain_config)


def make(out, name, cls, config, plain_cls, plain_config):
    import numpy as np
    import torch
    config._attn_implementation = "eager"
    torch.manual_seed(SEED)
    from make_tiny_fixtures import scale_weights
    model = scale_weights(cls(config))
    d = out / name
    if d.exists():
        shutil.rmtree(d)
    model.save_pretrained(str(d))

    g = torch.Generator().manual_seed(IDS_SEED)
    ids = torch.randint(3, config.vocab_size, (BATCH, SEQ), generator=g)
    res = model(input_ids=ids, labels=ids)
    res.loss.backward()
    (out / "golden").mkdir(exist_ok=True)
    res.logits.detach().to(torch.float32).numpy().astype("<f4").tofile(out / "golden" / f"{name}_logits.bin")

    index, chunks, offset = [], [], 0
    for pname, p in model.named_parameters():
        if not pname.endswith("proj.weight"):
            continue
        grad = p.grad.detach().to(torch.float32).contiguous().numpy().astype("<f4").ravel()
        index.append({"name": pname, "shape": list(p.shape), "offset": offset})
        chunks.append(grad)
        offset += grad.size
    np.concatenate(chunks).tofile(out / "golden" / f"{name}_grads.bin")

    # The variant must matter for the test to mean anything: the same weights as plain Llama math.
    plain_config._attn_implementation = "eager"
    plain = plain_cls(plain_config)
    plain.load_state_dict(model.state_dict())
    plain.eval()
    with torch.no_grad():
        plain_loss = plain(input_ids=ids, labels=ids).loss.item()

    meta = {"input_ids": ids.tolist(), "loss": res.loss.item(), "loss_without_variant": plain_loss,
            "window": WINDOW, "grads": index, "torch": torch.__version__,
            "transformers": __import__("transformers").__version__}
    (out / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{name}: loss {res.loss.item():.6f} (plain {plain_loss:.6f}); {offset} gradient values", file=sys.stderr)


if __name__ == "__main__":
    main()
