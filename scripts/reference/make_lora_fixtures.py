#!/usr/bin/env python3
"""Golden fixtures for llmprune's LoRA recovery (Sources/LoRA), from torch + peft.

Model: a tiny random tied GQA Llama with heterogeneous layers (llmprune's `layer_widths`), loaded with
common.load_heterogeneous_model and wrapped with peft LoRA (r 8, alpha 16, dropout 0 for exactness, all of
q,k,v,o,gate,up,down). A and B start random (B nonzero, so every gradient is nonzero).

Training follows HF Trainer (transformers 5): per optimizer step the examples go through in micro-batches of
MICRO; each micro-batch's loss is sum(NLL over labels[..., 1:] != -100) / num_items_in_batch, where
num_items_in_batch counts the scored predictions of the whole step; then clip_grad_norm_(MAX_NORM),
torch.optim.AdamW(lr, betas 0.9/0.999, eps 1e-8, weight_decay WD), get_linear_schedule_with_warmup(WARMUP, TOTAL).
Padding is on the right with label -100 and attention_mask 0; the script checks that left padding (the
reference collator's) gives the same loss.

Writes (default Tests/LoRATests/Resources/):
  model/                    config.json (+ layer_widths), model.safetensors
  adapter_init/             peft save_pretrained of the initial adapters (adapter_config.json, adapter_model.safetensors)
  grads_step1.safetensors   d(step-1 loss)/d(A, B) before clipping, peft tensor names
  adapter_step{1,2,3}.safetensors   adapters after each optimizer step
  lora_golden.json          examples, hyper-parameters, per-step loss / grad norm / lr
  alpaca_tokens.json        SmolLM2 tokenization of a few Alpaca records as post_training.py does it, and
                            numpy default_rng(seed).permutation(n) (datasets.train_test_split's shuffle)
With --bias (default out Tests/LoRATests/Resources/bias/, no tokenization fixture): the same model with
attention_bias and mlp_bias true (q/k/v/o and gate/up/down biases, drawn after every other tensor), frozen under
peft's bias="none" like the weights: the base biases enter the forward and get no gradient.

Run: LLMPRUNE_VENV=... scripts/reference/run.sh make_lora_fixtures.py [--out DIR] [--no-tokens] [--bias]
"""
import argparse
import json
import shutil
from pathlib import Path

import common

OUT = common.REPO_ROOT / "Tests" / "LoRATests" / "Resources"
ALPACA = common.DATA_ROOT / "alpaca" / "alpaca_data_1k.json"
SEED = 7
VOCAB, HIDDEN, HEAD_DIM = 96, 32, 8
WIDTHS = [dict(num_attention_heads=4, num_key_value_heads=2, intermediate_size=48),
          dict(num_attention_heads=2, num_key_value_heads=1, intermediate_size=40)]
RANK, ALPHA = 8, 16
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LR, WD, MAX_NORM, WARMUP, TOTAL = 1e-2, 0.1, 6.0, 2, 5
MICRO = 2
# (length, masked prompt tokens) of the examples; steps 1 and 3 take examples 0-3, step 2 takes 4-5.
EXAMPLES = [(9, 3), (12, 5), (7, 2), (12, 4), (10, 6), (5, 1)]
STEPS = [[0, 1, 2, 3], [4, 5], [0, 1, 2, 3]]


def build_model(out_dir: Path, bias=False):
    import torch
    from safetensors.torch import save_file
    g = torch.Generator().manual_seed(SEED)

    def randn(*shape, std):
        return (torch.randn(*shape, generator=g) * std).float()

    sd = {"model.embed_tokens.weight": randn(VOCAB, HIDDEN, std=0.3)}
    for i, w in enumerate(WIDTHS):
        nq, nkv, inter = w["num_attention_heads"] * HEAD_DIM, w["num_key_value_heads"] * HEAD_DIM, w["intermediate_size"]
        p = f"model.layers.{i}."
        sd[p + "input_layernorm.weight"] = 1 + randn(HIDDEN, std=0.1)
        sd[p + "post_attention_layernorm.weight"] = 1 + randn(HIDDEN, std=0.1)
        sd[p + "self_attn.q_proj.weight"] = randn(nq, HIDDEN, std=0.2)
        sd[p + "self_attn.k_proj.weight"] = randn(nkv, HIDDEN, std=0.2)
        sd[p + "self_attn.v_proj.weight"] = randn(nkv, HIDDEN, std=0.2)
        sd[p + "self_attn.o_proj.weight"] = randn(HIDDEN, nq, std=0.2)
        sd[p + "mlp.gate_proj.weight"] = randn(inter, HIDDEN, std=0.2)
        sd[p + "mlp.up_proj.weight"] = randn(inter, HIDDEN, std=0.2)
        sd[p + "mlp.down_proj.weight"] = randn(HIDDEN, inter, std=0.2)
    sd["model.norm.weight"] = 1 + randn(HIDDEN, std=0.1)
    if bias:
        for i, w in enumerate(WIDTHS):
            nq, nkv, inter = w["num_attention_heads"] * HEAD_DIM, w["num_key_value_heads"] * HEAD_DIM, w["intermediate_size"]
            p = f"model.layers.{i}."
            for name, n in [("self_attn.q_proj", nq), ("self_attn.k_proj", nkv), ("self_attn.v_proj", nkv),
                            ("self_attn.o_proj", HIDDEN), ("mlp.gate_proj", inter), ("mlp.up_proj", inter),
                            ("mlp.down_proj", HIDDEN)]:
                sd[p + name + ".bias"] = randn(n, std=0.2)
    cfg = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=VOCAB, hidden_size=HIDDEN,
               head_dim=HEAD_DIM, num_hidden_layers=len(WIDTHS),
               num_attention_heads=max(w["num_attention_heads"] for w in WIDTHS),
               num_key_value_heads=max(w["num_key_value_heads"] for w in WIDTHS),
               intermediate_size=max(w["intermediate_size"] for w in WIDTHS), layer_widths=WIDTHS,
               rms_norm_eps=1e-5, rope_theta=10000.0, max_position_embeddings=64, tie_word_embeddings=True,
               bos_token_id=1, eos_token_id=2, hidden_act="silu", attention_bias=bias, mlp_bias=bias,
               torch_dtype="float32")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    return common.load_heterogeneous_model(out_dir)


def examples():
    import torch
    g = torch.Generator().manual_seed(SEED + 1)
    out = []
    for length, masked in EXAMPLES:
        ids = torch.randint(3, VOCAB, (length,), generator=g).tolist()
        labels = [-100] * masked + ids[masked:]
        out.append((ids, labels))
    return out


def pad(batch, left=False):
    import torch
    T = max(len(i) for i, _ in batch)
    ids, labels, mask = [], [], []
    for i, l in batch:
        p = T - len(i)
        if left:
            ids.append([0] * p + i); labels.append([-100] * p + l); mask.append([0] * p + [1] * len(i))
        else:
            ids.append(i + [0] * p); labels.append(l + [-100] * p); mask.append([1] * len(i) + [0] * p)
    return torch.tensor(ids), torch.tensor(labels), torch.tensor(mask)


def nll_sum(model, ids, labels, mask):
    import torch
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()
    V = logits.shape[-1]
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1),
                                             ignore_index=-100, reduction="sum")


def lora_params(pm):
    """name (peft save format) -> parameter, for every lora_A / lora_B."""
    out = {}
    for name, p in pm.named_parameters():
        if "lora_" in name:
            out[name.replace(".default", "")] = p
    return out


def write_tensors(path: Path, tensors):
    from safetensors.torch import save_file
    save_file({k: v.detach().contiguous().clone() for k, v in tensors.items()}, str(path), metadata={"format": "pt"})


def make_lora(out: Path, bias=False):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import get_linear_schedule_with_warmup

    model = build_model(out / "model", bias)
    for p in model.parameters():
        p.requires_grad_(False)
    pm = get_peft_model(model, LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=TARGETS,
                                          bias="none", task_type="CAUSAL_LM"))
    g = torch.Generator().manual_seed(SEED + 2)
    with torch.no_grad():
        for name, p in lora_params(pm).items():
            if "lora_A" in name:
                bound = 1 / p.shape[1] ** 0.5
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * bound)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    init_dir = out / "adapter_init"
    if init_dir.exists():
        shutil.rmtree(init_dir)
    pm.save_pretrained(str(init_dir))
    (init_dir / "README.md").unlink(missing_ok=True)
    cfg_path = init_dir / "adapter_config.json"     # peft lists target_modules in set order: sort for stable files
    cfg = json.loads(cfg_path.read_text())
    cfg["target_modules"] = sorted(cfg["target_modules"])
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    pm.train()    # dropout is 0: train mode changes nothing, as in the Trainer

    exs = examples()
    params = lora_params(pm)
    opt = torch.optim.AdamW(list(params.values()), lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=WD)
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=WARMUP, num_training_steps=TOTAL)
    steps = []
    for si, idx in enumerate(STEPS):
        batch = [exs[i] for i in idx]
        micro = [batch[i:i + MICRO] for i in range(0, len(batch), MICRO)]
        n_items = sum(sum(1 for y in l[1:] if y != -100) for _, l in batch)
        total = 0.0
        for mb in micro:
            ids, labels, mask = pad(mb)
            loss = nll_sum(pm, ids, labels, mask) / n_items
            # HF's own loss path gives the same number
            ref = pm(input_ids=ids, attention_mask=mask, labels=labels, num_items_in_batch=n_items, use_cache=False).loss
            assert abs(float(ref) - float(loss)) <= 1e-6 * abs(float(loss)), (float(ref), float(loss))
            with torch.no_grad():
                lids, llabels, lmask = pad(mb, left=True)
                left = float(nll_sum(pm, lids, llabels, lmask) / n_items)
            assert abs(left - float(loss)) <= 1e-5 * abs(float(loss)), ("left padding differs", left, float(loss))
            loss.backward()
            total += float(loss)
        if si == 0:
            write_tensors(out / "grads_step1.safetensors", {k: p.grad for k, p in params.items()})
        lr = sched.get_last_lr()[0]
        norm = float(torch.nn.utils.clip_grad_norm_(list(params.values()), MAX_NORM))
        opt.step()
        sched.step()
        opt.zero_grad()
        write_tensors(out / f"adapter_step{si + 1}.safetensors", {k: p for k, p in params.items()})
        steps.append(dict(examples=idx, loss=total, num_items_in_batch=n_items, grad_norm=norm, lr=lr,
                          clipped=norm > MAX_NORM))
        common.log(f"step {si + 1}: loss {total:.6f} over {n_items} predictions, grad norm {norm:.5f}, lr {lr}")
    assert any(s["clipped"] for s in steps) and not all(s["clipped"] for s in steps), "want clipped and unclipped steps"

    golden = dict(
        format="llmprune-lora-fixtures/1", generator="scripts/reference/make_lora_fixtures.py",
        seed=SEED, rank=RANK, alpha=ALPHA, dropout=0.0, targets=TARGETS,
        lr=LR, weight_decay=WD, max_grad_norm=MAX_NORM, warmup_steps=WARMUP, total_steps=TOTAL,
        micro_batch_size=MICRO, pad_id=0,
        examples=[dict(ids=i, labels=l) for i, l in exs], steps=steps,
        loss_definition="per step: sum over micro-batches of sum(NLL of labels[..., 1:] != -100) / num_items_in_batch",
        torch=torch.__version__, peft=__import__("peft").__version__,
        transformers=__import__("transformers").__version__)
    (out / "lora_golden.json").write_text(json.dumps(golden, indent=1) + "\n")


# MARK: Alpaca tokenization (post_training.py / alpaca-lora) and the validation split

def generate_prompt(instruction, input=None, label=None):
    if input:
        res = ("Below is an instruction that describes a task, paired with an input that provides further context. "
               "Write a response that appropriately completes the request.\n\n"
               f"### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n")
    else:
        res = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
               f"request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")
    if label:
        res = f"{res}{label}"
    return res


def tokenize_record(tokenizer, r, cutoff_len, train_on_inputs=False, add_eos_token=False):
    def tokenize(prompt, add_eos=True):
        result = tokenizer(prompt, truncation=True, max_length=cutoff_len, padding=False, return_tensors=None)
        if result["input_ids"][-1] != tokenizer.eos_token_id and len(result["input_ids"]) < cutoff_len and add_eos:
            result["input_ids"].append(tokenizer.eos_token_id)
            result["attention_mask"].append(1)
        result["labels"] = result["input_ids"].copy()
        return result

    full = tokenize(generate_prompt(r["instruction"], r["input"], r["output"]))
    if not train_on_inputs:
        user = tokenize(generate_prompt(r["instruction"], r["input"]), add_eos=add_eos_token)
        n = len(user["input_ids"])
        if add_eos_token:
            n -= 1
        full["labels"] = [-100] * n + full["labels"][n:]
    return full


def make_tokens(out: Path):
    import numpy as np
    tok = common.load_tokenizer(common.DEFAULT_MODEL)
    data = json.loads(ALPACA.read_text())
    with_input = next(i for i, r in enumerate(data) if r["input"])
    longest = max(range(len(data)), key=lambda i: len(data[i]["output"]))
    picks = [0, with_input, longest]
    records = []
    for cutoff in (256, 66, 40):
        for i in picks:
            t = tokenize_record(tok, data[i], cutoff)
            assert len(t["labels"]) == len(t["input_ids"])
            records.append(dict(index=i, cutoff=cutoff, ids=t["input_ids"], labels=t["labels"]))
    perms = [dict(seed=s, n=n, permutation=np.random.default_rng(s).permutation(n).tolist())
             for s, n in ((42, 1000), (42, 10), (0, 7), (12345, 300))]
    doc = dict(source="alpaca/alpaca_data_1k.json", tokenizer=str(common.DEFAULT_MODEL.relative_to(common.REPO_ROOT)),
               eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id, records=records, permutations=perms,
               numpy=np.__version__,
               split="datasets.train_test_split(test_size=k, shuffle=True, seed=s): p = default_rng(s).permutation(n); "
                     "test = p[:k], train = p[k:]")
    (out / "alpaca_tokens.json").write_text(json.dumps(doc) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--no-tokens", action="store_true", help="skip the SmolLM2 tokenization fixture")
    ap.add_argument("--bias", action="store_true", help="the model with attention_bias and mlp_bias (into bias/)")
    common.add_threads_arg(ap)
    args = ap.parse_args()
    common.set_threads(args.threads)
    out = Path(args.out) / ("bias" if args.bias else "")
    out.mkdir(parents=True, exist_ok=True)
    make_lora(out, args.bias)
    if not args.no_tokens and not args.bias:
        make_tokens(out)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    common.log(f"wrote {total} bytes to {out}")
    assert total < 400_000, total


if __name__ == "__main__":
    main()
