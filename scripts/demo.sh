#!/usr/bin/env bash
# The main job on the default model. For now: set up, then WikiText-2 and PTB perplexity of SmolLM2-135M
# (LLM-Pruner's 128-token protocol) on a subset of windows.
#   MODEL=path/to/model  WINDOWS=200  scripts/demo.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
default_model="$(scripts/setup.sh | tail -n 1)"
model="${MODEL:-$default_model}"
windows="${WINDOWS:-200}"
swift build -c release --product llmprune 2>&1 | grep -v "prohibited flag" | tail -n 1
bin="$root/.build/release/llmprune"
"$bin" info --model "$model" | head -n 5
for ds in wikitext2 ptb; do
    "$bin" eval --model "$model" --dataset "$ds" --max-windows "$windows"
done
