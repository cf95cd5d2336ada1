#!/usr/bin/env python3
"""Golden fixtures for recovery by distillation (Sources/LoRA/Distillation.swift), from torch + peft.

Loss per scored prediction (Hinton et al. 2015, arXiv 1503.02531), student logits s, teacher logits t, label y:
    (1 - w) * CE(s, y) + w * T^2 * KL(softmax(t / T) || softmax(s / T))
summed over the predictions whose label is not -100 and divided by the step's count of them (num_items_in_batch),
as the CE of make_lora_fixtures.py. KL is torch.nn.functional.kl_div(log_softmax(s/T), log_softmax(t/T),
log_target=True, reduction="sum").

1. Row level (float64 in torch, stored as float32 inputs): random student and teacher logits [ROWS x VOCAB], labels,
   a divisor; for several (w, T): the CE sum, the T^2*KL sum, and d(loss / divisor)/d(student logits).
2. End to end: the LoRA fixture's student (Tests/LoRATests/Resources/model + adapter_init, dropout 0) and a
   different, untied, wider teacher with the same vocabulary (written here to kd/teacher/); the three optimizer
   steps of make_lora_fixtures.py with the KD loss (teacher forward under no_grad on the same padded batch).

Writes (default Tests/LoRATests/Resources/kd/):
  teacher/                 config.json (+ layer_widths), model.safetensors
  kd_rows.safetensors      student, teacher [ROWS x VOCAB], grad_<k> per setting k
  grads_step1.safetensors  d(step-1 KD loss)/d(A, B) before clipping (peft names)
  adapter_step{1,2,3}.safetensors
  kd_golden.json           row cases (targets, divisor, settings, sums) and per-step loss parts / grad norm / lr

Run: scripts/reference/run.sh make_kd_fixtures.py [--out DIR]
"""
import argparse
import json
import shutil
from pathlib import Path

import common
import make_lora_fixtures as lora

OUT = common.REPO_ROOT / "Tests" / "LoRATests" / "Resources" / "kd"
STUDENT = common.REPO_ROOT / "Tests" / "LoRATests" / "Resources"
ROWS = 7
ROW_SETTINGS = [(0.5, 1.0), (1.0, 2.0), (0.3, 4.0), (0.0, 3.0)]
STEP_W, STEP_T = 0.5, 2.0
TEACHER_HIDDEN, TEACHER_HEAD_DIM = 48, 8
TEACHER_WIDTHS = [dict(num_attention_heads=6, num_key_value_heads=2, intermediate_size=64)] * 3


def kd_sum(s, t, y, w, T):
    """(CE sum, T^2 * KL sum) over rows of s whose label is not -100."""
    import torch
    import torch.nn.functional as F
    keep = y != -100
    s, t, y = s[keep], t[keep], y[keep]
    ce = F.cross_entropy(s, y, reduction="sum")
    kl = F.kl_div(F.log_softmax(s / T, dim=-1), F.log_softmax(t / T, dim=-1), log_target=True, reduction="sum")
    return ce, T * T * kl


def make_rows(out: Path):
    import torch
    g = torch.Generator().manual_seed(lora.SEED + 10)
    s = (torch.randn(ROWS, lora.VOCAB, generator=g) * 3).float()
    t = (torch.randn(ROWS, lora.VOCAB, generator=g) * 3 + 0.5 * s).float()
    y = torch.randint(0, lora.VOCAB, (ROWS,), generator=g)
    divisor = 11.0
    tensors, cases = {"student": s, "teacher": t}, []
    for k, (w, T) in enumerate(ROW_SETTINGS):
        sd = s.double().clone().requires_grad_(True)
        ce, kd = kd_sum(sd, t.double(), y, w, T)
        loss = ((1 - w) * ce + w * kd) / divisor
        loss.backward()
        tensors[f"grad_{k}"] = sd.grad.float()
        cases.append(dict(weight=w, temperature=T, ce=float(ce), kd=float(kd), loss=float(loss)))
    lora.write_tensors(out / "kd_rows.safetensors", tensors)
    return dict(targets=y.tolist(), divisor=divisor, cases=cases)


def build_teacher(out_dir: Path):
    import torch
    from safetensors.torch import save_file
    g = torch.Generator().manual_seed(lora.SEED + 20)

    def randn(*shape, std):
        return (torch.randn(*shape, generator=g) * std).float()

    H, hd = TEACHER_HIDDEN, TEACHER_HEAD_DIM
    sd = {"model.embed_tokens.weight": randn(lora.VOCAB, H, std=0.3)}
    for i, w in enumerate(TEACHER_WIDTHS):
        nq, nkv, inter = w["num_attention_heads"] * hd, w["num_key_value_heads"] * hd, w["intermediate_size"]
        p = f"model.layers.{i}."
        sd[p + "input_layernorm.weight"] = 1 + randn(H, std=0.1)
        sd[p + "post_attention_layernorm.weight"] = 1 + randn(H, std=0.1)
        sd[p + "self_attn.q_proj.weight"] = randn(nq, H, std=0.2)
        sd[p + "self_attn.k_proj.weight"] = randn(nkv, H, std=0.2)
        sd[p + "self_attn.v_proj.weight"] = randn(nkv, H, std=0.2)
        sd[p + "self_attn.o_proj.weight"] = randn(H, nq, std=0.2)
        sd[p + "mlp.gate_proj.weight"] = randn(inter, H, std=0.2)
        sd[p + "mlp.up_proj.weight"] = randn(inter, H, std=0.2)
        sd[p + "mlp.down_proj.weight"] = randn(H, inter, std=0.2)
    sd["model.norm.weight"] = 1 + randn(H, std=0.1)
    sd["lm_head.weight"] = randn(lora.VOCAB, H, std=0.3)
    w0 = TEACHER_WIDTHS[0]
    cfg = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=lora.VOCAB, hidden_size=H,
               head_dim=hd, num_hidden_layers=len(TEACHER_WIDTHS), num_attention_heads=w0["num_attention_heads"],
               num_key_value_heads=w0["num_key_value_heads"], intermediate_size=w0["intermediate_size"],
               layer_widths=TEACHER_WIDTHS, rms_norm_eps=1e-5, rope_theta=10000.0, max_position_embeddings=64,
               tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, hidden_act="silu", attention_bias=False,
               mlp_bias=False, torch_dtype="float32")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    return common.load_heterogeneous_model(out_dir)


def make_steps(out: Path):
    import torch
    from peft import PeftModel
    from transformers import get_linear_schedule_with_warmup

    teacher = build_teacher(out / "teacher").eval()
    student = common.load_heterogeneous_model(STUDENT / "model")
    for p in student.parameters():
        p.requires_grad_(False)
    pm = PeftModel.from_pretrained(student, str(STUDENT / "adapter_init"), is_trainable=True)
    pm.train()    # dropout is 0
    exs = lora.examples()
    params = lora.lora_params(pm)
    opt = torch.optim.AdamW(list(params.values()), lr=lora.LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=lora.WD)
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=lora.WARMUP, num_training_steps=lora.TOTAL)
    steps = []
    for si, idx in enumerate(lora.STEPS):
        batch = [exs[i] for i in idx]
        micro = [batch[i:i + lora.MICRO] for i in range(0, len(batch), lora.MICRO)]
        n_items = sum(sum(1 for y in l[1:] if y != -100) for _, l in batch)
        ce_total = kd_total = loss_total = 0.0
        for mb in micro:
            ids, labels, mask = lora.pad(mb)
            V = lora.VOCAB
            s = pm(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()[:, :-1].reshape(-1, V)
            with torch.no_grad():
                t = teacher(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()[:, :-1].reshape(-1, V)
            ce, kd = kd_sum(s, t, labels[:, 1:].reshape(-1), STEP_W, STEP_T)
            loss = ((1 - STEP_W) * ce + STEP_W * kd) / n_items
            loss.backward()
            ce_total += float(ce)
            kd_total += float(kd)
            loss_total += float(loss)
        if si == 0:
            lora.write_tensors(out / "grads_step1.safetensors", {k: p.grad for k, p in params.items()})
        lr = sched.get_last_lr()[0]
        norm = float(torch.nn.utils.clip_grad_norm_(list(params.values()), lora.MAX_NORM))
        opt.step()
        sched.step()
        opt.zero_grad()
        lora.write_tensors(out / f"adapter_step{si + 1}.safetensors", {k: p for k, p in params.items()})
        steps.append(dict(examples=idx, loss=loss_total, ce_sum=ce_total, kd_sum=kd_total, num_items_in_batch=n_items,
                          grad_norm=norm, lr=lr, clipped=norm > lora.MAX_NORM))
        common.log(f"step {si + 1}: loss {loss_total:.6f} (CE {ce_total / n_items:.5f}, KD {kd_total / n_items:.5f}), "
                   f"grad norm {norm:.5f}, lr {lr}")
    return steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(OUT))
    common.add_threads_arg(ap)
    args = ap.parse_args()
    common.set_threads(args.threads)
    import torch
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = make_rows(out)
    steps = make_steps(out)
    golden = dict(
        format="llmprune-kd-fixtures/1", generator="scripts/reference/make_kd_fixtures.py",
        loss_definition="per prediction (label != -100): (1-w)*CE + w*T^2*KL(softmax(t/T) || softmax(s/T)); "
                        "summed and divided by the step's scored predictions",
        rows=rows, weight=STEP_W, temperature=STEP_T, lr=lora.LR, weight_decay=lora.WD, max_grad_norm=lora.MAX_NORM,
        warmup_steps=lora.WARMUP, total_steps=lora.TOTAL, micro_batch_size=lora.MICRO,
        examples=[dict(ids=i, labels=l) for i, l in lora.examples()], steps=steps,
        torch=torch.__version__, peft=__import__("peft").__version__, transformers=__import__("transformers").__version__)
    (out / "kd_golden.json").write_text(json.dumps(golden, indent=1) + "\n")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    common.log(f"wrote {total} bytes to {out}")
    assert total < 400_000, total


if __name__ == "__main__":
    main()
