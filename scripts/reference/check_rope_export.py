#!/usr/bin/env python3
"""Loads config.json files llmprune wrote back for the rope fixtures (DIR/<fixture>[_gguf]/config.json, e.g. from
LlamaConfig.configJSON() of each Tests/LlamaModelTests/Resources/rope model) with transformers, with the fixture's
weights, and prints the max |logit diff| and loss diff against the golden values (0 when transformers computes
the same rotary embedding).  Run: scripts/reference/run.sh check_rope_export.py DIR
"""
import json, shutil, sys, numpy as np, torch
from pathlib import Path
import common
R = common.REPO_ROOT / "Tests/LlamaModelTests/Resources/rope"
g = json.loads((R / "rope_golden.json").read_text())
for d in sorted(Path(sys.argv[1]).iterdir()):
    name = d.name.replace("_gguf", "")
    shutil.copy(R / name / "model.safetensors", d / "model.safetensors")
    m = common.load_model(d)
    rec = g["models"][name]
    ids = torch.tensor(g["input_ids"])
    with torch.inference_mode():
        out = m(input_ids=ids, labels=ids, use_cache=False)
    ref = np.frombuffer((R / rec["logits_file"]).read_bytes(), dtype="<f4").reshape(out.logits.shape)
    print(d.name, m.config.rope_parameters, "max|diff|", float(np.abs(out.logits.numpy() - ref).max()), "loss diff", abs(float(out.loss) - rec["loss"]))
