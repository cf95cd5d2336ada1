#!/usr/bin/env python3
"""Load an llmprune remote-code directory the way a user would, and measure it.

  run.sh check_remote_code.py --dir D [--dataset wikitext2,ptb] [--max-windows N] [--adapter A
                              [--adapter-max-windows N]] [--generate N] [--prompt TEXT] [--no-independent] [--json]

D is a heterogeneous output of `llmprune prune|apply|cluster prune|merge` (config.json with model_type
"llmprune", auto_map, configuration_llmprune.py, modeling_llmprune.py). It is loaded with
AutoModelForCausalLM.from_pretrained(D, trust_remote_code=True) and AutoTokenizer (the same flag), nothing else.
Checks and numbers, one JSON object last on stdout:
  - class / model_type / base_model_type, and that loading without trust_remote_code is refused;
  - max abs logit difference against `common.load_heterogeneous_model` (an independent loader: the family's
    stock class with its Linears resized), on 2 × 48 random ids; skipped for smollm3 (NoPE layers) and with
    --no-independent;
  - --generate N: model.generate (greedy, KV cache) for N tokens, and whether it equals the argmax loop
    without cache; the text;
  - per --dataset: perplexity under LLM-Pruner's protocol (common.tokenize_dataset + common.perplexity, as
    ppl.py), all windows unless --max-windows; with --adapter, also with PeftModel.from_pretrained(model, A)
    (on --adapter-max-windows windows if given).
"""
import argparse
import json

import common


def greedy(model, ids, n):
    """n argmax tokens after ids, each from a full forward without cache."""
    import torch
    seq = ids
    with torch.inference_mode():
        for _ in range(n):
            nxt = model(input_ids=seq, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], dim=1)
    return seq


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--dataset", default="", help="comma-separated: wikitext2, ptb, ptb-valid or files")
    ap.add_argument("--max-windows", type=int, default=0, help="0 = all windows")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--adapter", help="a peft LoRA adapter directory (llmprune tune output)")
    ap.add_argument("--adapter-max-windows", type=int, help="windows for the adapter's perplexity (default --max-windows)")
    ap.add_argument("--generate", type=int, default=0, help="greedy tokens to generate")
    ap.add_argument("--prompt", default="The capital of France is")
    ap.add_argument("--no-independent", action="store_true", help="skip the independent-loader logits check")
    ap.add_argument("--json", action="store_true", help="only the JSON object on stdout")
    common.add_threads_arg(ap)
    args = ap.parse_args()
    common.set_threads(args.threads)

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = args.dir
    out = {"dir": d, "transformers_version": transformers.__version__, "torch_version": torch.__version__}
    try:
        AutoModelForCausalLM.from_pretrained(d, trust_remote_code=False, local_files_only=True)
        out["refused_without_trust_remote_code"] = False
    except ValueError:
        out["refused_without_trust_remote_code"] = True
    model = AutoModelForCausalLM.from_pretrained(d, trust_remote_code=True, dtype=torch.float32, local_files_only=True)
    model.eval()
    tok = AutoTokenizer.from_pretrained(d, trust_remote_code=True, local_files_only=True)
    cfg = model.config
    out.update(cls=type(model).__name__, model_type=cfg.model_type, base_model_type=cfg.base_model_type,
               parameters=sum(p.numel() for p in model.parameters()),
               widths=[[w["num_attention_heads"], w["num_key_value_heads"], w["intermediate_size"]]
                       for w in cfg.layer_widths],
               tied=model.lm_head.weight is model.model.embed_tokens.weight)
    common.log(f"{d}: {out['cls']} ({cfg.base_model_type}), {out['parameters']} parameters")

    if not args.no_independent and cfg.base_model_type != "smollm3":
        ref = common.load_heterogeneous_model(d)
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(0, cfg.vocab_size, (2, 48), generator=g)
        with torch.inference_mode():
            out["independent_logits_max_abs"] = float((model(input_ids=ids).logits - ref(input_ids=ids).logits)
                                                      .abs().max())
        del ref

    if args.generate:
        x = tok(args.prompt, return_tensors="pt")
        with torch.inference_mode():
            gen = model.generate(**x, max_new_tokens=args.generate, do_sample=False)
        out["generate"] = {"prompt": args.prompt, "text": tok.decode(gen[0][x["input_ids"].shape[1]:]),
                           "equals_uncached_greedy": bool(torch.equal(gen, greedy(model, x["input_ids"],
                                                                                  gen.shape[1] - x["input_ids"].shape[1])))}
        common.log(f"  generate: {out['generate']}")

    datasets = [s for s in args.dataset.split(",") if s]
    ids = {name: common.tokenize_dataset(tok, name) for name in datasets}
    out["ppl"] = {}
    for name in datasets:
        r = common.perplexity(model, ids[name], seq_len=args.seq_len, max_windows=args.max_windows, batch=args.batch)
        out["ppl"][name] = {"tokens": len(ids[name]), "ids_sha256": common.ids_sha256(ids[name]), "ppl": r["ppl"],
                            "windows": r["windows"], "scored": r["scored"]}
        common.log(f"  {name}: {out['ppl'][name]}")
    if args.adapter and datasets:
        from peft import PeftModel
        peft_model = PeftModel.from_pretrained(model, args.adapter)
        peft_model.eval()
        limit = args.max_windows if args.adapter_max_windows is None else args.adapter_max_windows
        for name in datasets:
            r = common.perplexity(peft_model, ids[name], seq_len=args.seq_len, max_windows=limit, batch=args.batch)
            out["ppl"][name].update(ppl_adapter=r["ppl"], windows_adapter=r["windows"])
            common.log(f"  {name} with the adapter ({r['windows']} windows): {r['ppl']}")
    print(json.dumps(out) if args.json else json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
