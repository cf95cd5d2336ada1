#!/usr/bin/env bash
# The main job on the default model: set up, then prune SmolLM2-135M with LLM-Pruner's Taylor importance
# (element1, 10×64 calibration tokens from ptb.valid, ratio 0.25, local allocation), and print WikiText-2
# and PTB perplexity before and after (128-token protocol, first WINDOWS windows) with the per-layer widths.
#   MODEL=path/to/model  RATIO=0.25  WINDOWS=100  OUT=out/demo  scripts/demo.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
default_model="$(scripts/setup.sh | tail -n 1)"
model="${MODEL:-$default_model}"
ratio="${RATIO:-0.25}"
windows="${WINDOWS:-100}"
out="${OUT:-$root/out/demo}"
swift build -c release --product llmprune 2>&1 | grep -v "prohibited flag" | tail -n 1
bin="$root/.build/release/llmprune"
"$bin" info --model "$model" | head -n 5
mkdir -p "$(dirname "$out")"
"$bin" prune --model "$model" --ratio "$ratio" --out "$out" --force --eval wikitext2,ptb --eval-windows "$windows"
echo "pruned model: $out (Hugging Face directory), plan: $out.plan.json"
