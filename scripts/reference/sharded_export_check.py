#!/usr/bin/env python3
"""A sharded llmprune export against the single-file export of the same pruned model, loaded by transformers.

  LLMPRUNE_SHARDED_EXPORT_DIR=ROOT swift test --filter ShardedExportSmolLM2   # writes the four directories
  run.sh sharded_export_check.py ROOT

ROOT holds {uniform,hetero}-{single,sharded} (see ShardedExportSmolLM2 in Tests/PruningTests). Per model:
the index's weight_map must equal the shards' contents (each tensor once) and total_size their data bytes;
the uniform one is loaded by AutoModelForCausalLM.from_pretrained (which resolves the index itself, no missing
or unexpected keys), the heterogeneous one by common.load_model (strict); then state dicts and logits are
compared with the single-file export (expected: identical, max diff 0).
"""
import json, sys
from pathlib import Path
import torch
import common
from safetensors import safe_open
from transformers import AutoModelForCausalLM

root = Path(sys.argv[1])
ids = torch.randint(0, 49152, (2, 64), generator=torch.Generator().manual_seed(0))
for name in ["uniform", "hetero"]:
    single, sharded = root / f"{name}-single", root / f"{name}-sharded"
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    keys, nbytes = {}, 0
    for f in sorted(sharded.glob("model-*.safetensors")):
        with safe_open(str(f), "pt") as s:
            assert s.metadata() == {"format": "pt"}, s.metadata()
            for k in s.keys():
                assert k not in keys
                keys[k] = f.name
                t = s.get_tensor(k)
                nbytes += t.numel() * t.element_size()
    assert keys == index["weight_map"], "index does not match the shard contents"
    assert nbytes == index["metadata"]["total_size"], (nbytes, index["metadata"]["total_size"])
    if common.read_layer_widths(sharded) is None:
        # plain config: transformers itself resolves the index and the shards
        a, info = AutoModelForCausalLM.from_pretrained(str(sharded), dtype=torch.float32, local_files_only=True,
                                                      output_loading_info=True)
        bad = {k: v for k, v in info.items() if v}
        assert not bad, bad
        a.eval()
        how = "AutoModelForCausalLM.from_pretrained (index)"
    else:
        a = common.load_model(str(sharded))
        how = "common.load_model (layer_widths, strict)"
    b = common.load_model(str(single))
    sa, sb = a.state_dict(), b.state_dict()
    same = sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    with torch.inference_mode():
        la, lb = a(input_ids=ids, use_cache=False).logits, b(input_ids=ids, use_cache=False).logits
    params = sum(p.numel() for p in a.parameters())
    print(f"{name}: {len(index['weight_map'])} tensors in {len(set(keys.values()))} shards, total_size {nbytes}, "
          f"loaded by {how}, params {params}, state dicts identical {same}, "
          f"max|logits sharded - single| = {float((la - lb).abs().max()):.3e}")
