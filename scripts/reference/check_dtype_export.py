#!/usr/bin/env python3
"""llmprune's `--dtype bf16|f16` outputs against transformers' own save_pretrained of the same model in that dtype.

  check_dtype_export.py --f32 DIR [--bf16 DIR] [--f16 DIR]

DIR_F32 is an llmprune output written with `--dtype f32`; DIR_BF16 / DIR_F16 are the same model written with
`--dtype bf16` / `--dtype f16`. The fp32 model is loaded with transformers, cast with `model.to(torch.bfloat16)` /
`model.to(torch.float16)` and saved with `save_pretrained`. Every tensor llmprune wrote must have the safetensors
dtype and the bits of the tensor transformers saved (norm weights and biases included), the tensor names must be the
same, and config.json's `dtype` (and `torch_dtype`) must name the dtype transformers wrote. Prints one JSON object;
exits 1 on any difference. Uniform-width models only (transformers' own classes).
"""
import argparse
import copy
import glob
import json
import os
import sys
import tempfile

import common


def tensors(d):
    from safetensors import safe_open
    out = {}
    for f in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
        with safe_open(f, framework="pt") as s:
            for k in s.keys():
                out[k] = s.get_tensor(k)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--f32", required=True)
    ap.add_argument("--bf16")
    ap.add_argument("--f16")
    args = ap.parse_args()
    import torch

    base = common.load_model(args.f32)
    report, ok = {}, True
    for name, ours_dir, dtype in [("bf16", args.bf16, torch.bfloat16), ("f16", args.f16, torch.float16)]:
        if not ours_dir:
            continue
        model = copy.deepcopy(base).to(dtype)
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            ref, ours = tensors(tmp), tensors(ours_dir)
            ref_config = json.load(open(os.path.join(tmp, "config.json")))
        config = json.load(open(os.path.join(ours_dir, "config.json")))
        wrong_dtype = sorted(k for k in ours if k in ref and ours[k].dtype != ref[k].dtype)
        differ = sorted(k for k in ours if k in ref and ours[k].dtype == ref[k].dtype
                        and not torch.equal(ours[k].view(torch.int16), ref[k].view(torch.int16)))
        r = {
            "tensors": len(ours),
            "names_equal": sorted(ours) == sorted(ref),
            "dtypes": sorted({str(t.dtype) for t in ours.values()}),
            "transformers_dtypes": sorted({str(t.dtype) for t in ref.values()}),
            "norms_and_biases": sorted({str(t.dtype) for k, t in ours.items() if "norm" in k or k.endswith(".bias")}),
            "wrong_dtype": wrong_dtype,
            "bits_differ": differ,
            "config_dtype": [config.get("dtype"), config.get("torch_dtype")],
            "transformers_config_dtype": ref_config.get("dtype", ref_config.get("torch_dtype")),
        }
        r["ok"] = (r["names_equal"] and not wrong_dtype and not differ
                   and config.get("dtype") == r["transformers_config_dtype"] == config.get("torch_dtype"))
        ok = ok and r["ok"]
        report[name] = r
    print(json.dumps(report, indent=1))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
