#!/usr/bin/env python3
"""Golden fixtures for the variant matrix: every Llama-family variant llmprune computes, each checked the same ways.

For each tiny random model fixture already in the repository (saved by transformers 5 in the layout its family's real
checkpoints use; see VARIANTS), on one batch of ids (2 x 20, so the dynamic-RoPE model runs past its 16 positions and
the sliding windows of 5 cut every row past position 4):
  logits [2, 20, V] and the loss of model(ids, labels=ids) (transformers, fp32);
  the gradient of every decoder-layer weight and bias of that loss;
  element1 unit scores (sum reduction) of every layer: LLM-Pruner's Taylor first-order salience |W * dW| summed per
    channel, KV groups (GQA fold), query heads and MLP channels, with a row's bias element counted in its row
    (importance.py's score_layers, the PyTorch implementation the pruning goldens use);
  one LoRA optimizer step under peft (r 8, alpha 16, dropout 0, all seven projections, random A and nonzero B, base
    weights and biases frozen): 4 examples with masked prompts in 2 right-padded micro-batches, HF Trainer's loss
    (sum of NLL over labels != -100 / items in the step), clip_grad_norm_(1.0), AdamW (lr 1e-3, weight decay 0.01).

Writes (default Tests/VariantTests/Resources/), for each NAME:
  NAME/golden.safetensors     "logits", "model.layers.L.*.weight|bias" gradients, "lora.grad.<peft name>" (step
                              gradients before clipping) and "lora.step.<peft name>" (adapters after the step)
  NAME/adapter_init/          peft save_pretrained of the initial adapters
  NAME/golden.json            model path (relative to the repository), what the variant is, ids, loss, scores,
                              the LoRA examples, hyper-parameters and the step's loss, gradient norm and lr

Run: scripts/reference/run.sh make_variant_matrix.py [--out DIR] [--only NAME ...]
"""
import argparse
import json
import shutil
from pathlib import Path

import common
import importance as imp

MODELS = common.REPO_ROOT / "Tests" / "LlamaModelTests" / "Resources"
OUT = common.REPO_ROOT / "Tests" / "VariantTests" / "Resources"
IDS_SEED, LORA_SEED = 20261206, 11
BATCH, SEQ = 2, 20
RANK, ALPHA, LR, WD, MAX_NORM, MICRO = 8, 16, 1e-3, 0.01, 1.0, 2
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# (length, masked prompt tokens): micro-batches of 20 and 18 positions, past the dynamic model's 16.
EXAMPLES = [(20, 6), (13, 4), (18, 5), (9, 2)]

# name: (model directory under Tests/LlamaModelTests/Resources, what it is)
VARIANTS = {
    "llama": ("tiny", "Llama, tied, GQA 4/2 (SmolLM2's layout)"),
    "llama_untied": ("tiny_untied", "Llama, untied lm_head (LLaMA-1/2, TinyLlama, Mistral layout)"),
    "rope_linear": ("rope/linear", "rope_parameters linear x4 (v5), head_dim 32 != hidden/heads"),
    "rope_linear_v4": ("rope/linear_v4", "rope_scaling {type: linear} + top-level rope_theta (v4 configs)"),
    "rope_dynamic": ("rope/dynamic", "dynamic NTK x2, sequence 20 > max_position_embeddings 16"),
    "rope_yarn": ("rope/yarn", "yarn x4, beta_fast 16"),
    "rope_yarn_mscale": ("rope/yarn_mscale", "yarn x8, truncate false, mscale / mscale_all_dim"),
    "llama3_2": ("rope/llama3", "Llama-3.2 layout: llama3 RoPE x8 + tied + GQA + head_dim 32"),
    "qwen2_5": ("tiny_qwen2_bias", "Qwen2.5 layout: q/k/v biases + tied + yarn off, window on layer 1 only"),
    "llama_bias": ("tiny_llama_bias", "Llama attention_bias + mlp_bias (q/k/v/o, gate/up/down), untied"),
    "mistral": ("tiny_mistral_swa", "Mistral sliding_window 5 < sequence"),
    "smollm3": ("tiny_smollm3", "SmolLM3: NoPE on layer 3 (no_rope_layers), windowed layer"),
}


def layer_param_names(model):
    return [n for n, _ in model.named_parameters() if n.startswith("model.layers.") and "norm" not in n]


def ids_for(vocab):
    import torch
    g = torch.Generator().manual_seed(IDS_SEED)
    return torch.randint(3, vocab, (BATCH, SEQ), generator=g)


def forward_and_grads(model, ids):
    model.zero_grad(set_to_none=True)
    res = model(input_ids=ids, labels=ids)
    res.loss.backward()
    params = dict(model.named_parameters())
    grads = {n: params[n].grad.detach().clone() for n in layer_param_names(model)}
    return res.logits.detach().float(), float(res.loss.detach()), grads


def examples(vocab):
    import torch
    g = torch.Generator().manual_seed(LORA_SEED + 1)
    out = []
    for length, masked in EXAMPLES:
        ids = torch.randint(3, vocab, (length,), generator=g).tolist()
        out.append((ids, [-100] * masked + ids[masked:]))
    return out


def pad_right(batch):
    import torch
    T = max(len(i) for i, _ in batch)
    ids = [i + [0] * (T - len(i)) for i, _ in batch]
    labels = [l + [-100] * (T - len(l)) for _, l in batch]
    mask = [[1] * len(i) + [0] * (T - len(i)) for i, _ in batch]
    return torch.tensor(ids), torch.tensor(labels), torch.tensor(mask)


def forget_dynamic_rope(model):
    """transformers' dynamic RoPE keeps the frequencies of the longest sequence it has run (dynamic_rope_update
    grows them and resets only below the original length), so a batch's result depends on the batches before it.
    llmprune computes each batch as a freshly loaded model does: the tables of that batch's own length. Resetting
    the cache before each forward makes transformers compute the same, stateless thing."""
    r = model.get_decoder().rotary_emb
    if "dynamic" in str(r.rope_type):
        r.register_buffer("inv_freq", r.original_inv_freq.clone(), persistent=False)
        r.max_seq_len_cached = r.original_max_seq_len


def lora_step(model, out_dir):
    """One optimizer step under peft; writes adapter_init/ and returns (tensors, record)."""
    import torch
    from peft import LoraConfig, get_peft_model
    for p in model.parameters():
        p.requires_grad_(False)
    pm = get_peft_model(model, LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=TARGETS,
                                          bias="none", task_type="CAUSAL_LM"))
    params = {n.replace(".default", ""): p for n, p in pm.named_parameters() if "lora_" in n}
    g = torch.Generator().manual_seed(LORA_SEED)
    with torch.no_grad():
        for n, p in params.items():
            if "lora_A" in n:
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) / p.shape[1] ** 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    init = out_dir / "adapter_init"
    pm.save_pretrained(str(init))
    (init / "README.md").unlink(missing_ok=True)
    cfg_path = init / "adapter_config.json"   # peft writes target_modules in set order: sorted for stable files
    cfg = json.loads(cfg_path.read_text())
    cfg["target_modules"] = sorted(cfg["target_modules"])
    cfg["base_model_name_or_path"] = None
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")

    exs = examples(model.config.vocab_size)
    n_items = sum(sum(1 for y in l[1:] if y != -100) for _, l in exs)
    opt = torch.optim.AdamW(list(params.values()), lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=WD)
    pm.train()   # dropout 0: train mode changes nothing, as under the Trainer
    total = 0.0
    for k in range(0, len(exs), MICRO):
        ids, labels, mask = pad_right(exs[k:k + MICRO])
        forget_dynamic_rope(pm)
        loss = pm(input_ids=ids, attention_mask=mask, labels=labels, num_items_in_batch=n_items, use_cache=False).loss
        loss.backward()
        total += float(loss)
    tensors = {"lora.grad." + n: p.grad.detach().clone() for n, p in params.items()}
    norm = float(torch.nn.utils.clip_grad_norm_(list(params.values()), MAX_NORM))
    opt.step()
    tensors.update({"lora.step." + n: p.detach().clone() for n, p in params.items()})
    record = dict(rank=RANK, alpha=ALPHA, lr=LR, weight_decay=WD, max_grad_norm=MAX_NORM, micro_batch_size=MICRO,
                  warmup_steps=0, total_steps=1, pad_id=0,
                  examples=[dict(ids=i, labels=l) for i, l in exs],
                  loss=total, num_items_in_batch=n_items, grad_norm=norm, clipped=norm > MAX_NORM)
    return tensors, record


def make(name, out_root):
    import torch
    from safetensors.torch import save_file
    rel, what = VARIANTS[name]
    model_dir = MODELS / rel
    model = common.load_model(model_dir)
    ids = ids_for(model.config.vocab_size)
    logits, loss, grads = forward_and_grads(model, ids)
    scores = imp.score_layers(model, range(model.config.num_hidden_layers), ["element1"], ["sum"], None, torch.float64)
    scores = {l: s["element1"]["sum"] for l, s in scores.items()}
    out = out_root / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    lora_tensors, lora = lora_step(model, out)
    tensors = {"logits": logits, **grads, **lora_tensors}
    save_file({k: v.float().contiguous() for k, v in tensors.items()}, str(out / "golden.safetensors"),
              metadata={"format": "pt"})
    golden = dict(format="llmprune-variant-matrix/1", generator="scripts/reference/make_variant_matrix.py",
                  variant=name, description=what, model=str(model_dir.relative_to(common.REPO_ROOT)),
                  model_type=model.config.model_type, input_ids=ids.tolist(), loss=loss,
                  gradients=sorted(grads), element1_sum=scores, lora=lora,
                  torch=torch.__version__, transformers=__import__("transformers").__version__,
                  peft=__import__("peft").__version__)
    (out / "golden.json").write_text(json.dumps(golden, indent=1) + "\n")
    common.log(f"{name}: loss {loss:.6f}, {len(grads)} gradients, LoRA step loss {lora['loss']:.6f} "
               f"norm {lora['grad_norm']:.4f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--only", nargs="*", choices=sorted(VARIANTS))
    common.add_threads_arg(ap)
    args = ap.parse_args()
    common.set_threads(args.threads)
    for name in args.only or VARIANTS:
        make(name, Path(args.out))


if __name__ == "__main__":
    main()
