#!/usr/bin/env bash
# Pruned variants load in transformers as what they are: for synthetic bf16 models of each variant (tiny-llama3:
# tied, GQA, llama3 RoPE scaling; tiny-mistral: sliding window 8 — windows of 128 tokens, so the window matters),
# prune every layer alike (a uniform output, which stock transformers loads), then compare llmprune's perplexity
# with transformers' (scripts/reference/ppl.py, LLM-Pruner's protocol) on the same directory.
#   scripts/bench/variants_vs_transformers.sh [--windows 16]
set -euo pipefail
windows=16
while [ $# -gt 0 ]; do
    case "$1" in
        --windows) windows="$2"; shift 2 ;;
        *) echo "variants_vs_transformers.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
source "$(dirname "$0")/common.sh"
for shape in tiny-llama3 tiny-mistral; do
    "$bin" synth --shape "$shape" --dtype bf16 --seed 5 --out "$out/$shape" --tokenizer "$model" --quiet --force
    "$bin" prune --model "$out/$shape" --out "$out/$shape-pruned" --layers 0:6 --ratio 0.25 --calib-samples 4 \
        --calib-len 32 --quiet --force > /dev/null
    ours="$("$bin" eval --model "$out/$shape-pruned" --dataset wikitext2 --max-windows "$windows" --json)"
    scripts/reference/run.sh ppl.py --model "$out/$shape-pruned" --dataset wikitext2 --max-windows "$windows" \
        --out "$out/$shape-torch.json" > /dev/null 2>&1
    python3 - "$shape" "$ours" "$out/$shape-torch.json" "$out/$shape-pruned/config.json" <<'PY'
import json, sys
shape, ours, theirs, cfg = sys.argv[1], json.loads(sys.argv[2]), json.load(open(sys.argv[3])), json.load(open(sys.argv[4]))
a, b = ours["result"]["perplexity"], theirs["ppl"]
same_ids = ours["idsSHA256"] == theirs["ids_sha256"]
keys = {k: cfg[k] for k in ("model_type", "rope_scaling", "sliding_window") if k in cfg}
print(f"{shape:13s} llmprune {a:12.4f}  transformers {b:12.4f}  relative {abs(a - b) / b:.2e}  same ids {same_ids}  config {keys}")
PY
done
