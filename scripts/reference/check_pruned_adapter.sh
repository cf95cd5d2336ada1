#!/usr/bin/env bash
# peft against llmprune on a pruned model: prune SmolLM2 (r = 0.25, local, element1), tune a LoRA for a few steps,
# then compute the loss of the adapted model on a fixed batch (the first W 128-token windows of WikiText-2) twice:
# `llmprune eval --adapter` (adapter folded into the weights) and transformers + PeftModel.from_pretrained on the
# pruned directory that transformers loads (adapter not merged). Prints both mean NLLs and their relative difference.
#   scripts/reference/check_pruned_adapter.sh [--windows 16] [--steps 3]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
windows=16 steps=3
while [ $# -gt 0 ]; do
    case "$1" in
        --windows) windows="$2"; shift 2 ;;
        --steps) steps="$2"; shift 2 ;;
        *) echo "check_pruned_adapter.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
model="$(scripts/setup.sh | tail -n 1)"
swift build -c release --product llmprune 2>&1 | grep -v "prohibited flag" | tail -n 1 >&2
bin=.build/release/llmprune
out="${KEEP:-$(mktemp -d)}"; [ -n "${KEEP:-}" ] || trap 'rm -rf "$out"' EXIT; mkdir -p "$out"
alpaca="$(cd "$root/.." && pwd)/shared/data/alpaca/alpaca_data_1k.json"
$bin prune --model "$model" --out "$out/pruned" --ratio 0.25 --quiet > /dev/null
$bin tune --model "$out/pruned" --data "$alpaca" --out "$out/adapter" --steps "$steps" --batch 8 --micro-batch 4 \
    --lr 1e-3 --warmup 0 --quiet > /dev/null
$bin eval --model "$out/pruned" --adapter "$out/adapter" --dataset wikitext2 --max-windows "$windows" --json > "$out/ours.json"
scripts/reference/run.sh ppl.py --model "$out/pruned" --adapter "$out/adapter" --dataset wikitext2 \
    --max-windows "$windows" --progress 0 --out "$out/peft.json" > /dev/null 2>&1
$bin eval --model "$out/pruned" --dataset wikitext2 --max-windows "$windows" --json > "$out/base.json"
python3 - "$out" <<'PY'
import json, sys
d = sys.argv[1]
ours, peft, base = (json.load(open(f"{d}/{n}.json")) for n in ("ours", "peft", "base"))
a, b = ours["result"]["nllMean"], peft["nll_mean"]
print(f"pruned model, no adapter   llmprune nll {base['result']['nllMean']:.6f}")
print(f"with the LoRA adapter      llmprune nll {a:.6f} (merged)   peft nll {b:.6f} (PeftModel, unmerged)")
print(f"relative difference        {abs(a - b) / abs(b):.2e}   ({ours['result']['scored']} scored tokens, ids equal: "
      f"{ours['idsSHA256'] == peft.get('ids_sha256', ours['idsSHA256'])})")
PY
