#!/usr/bin/env bash
# Forward throughput, llmprune vs PyTorch (transformers, fp32, inference_mode), same model, machine and
# thread count, in one run. Prints both, the ratio, llmprune's share of time in sgemm and its achieved
# GFLOP/s against OpenBLAS' own peak here.
#   scripts/bench/forward.sh [--model PATH] [--threads 2] [--batch 8] [--seq-len 128] [--iters 5]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
model="" threads=2 batch=8 seq=128 iters=5
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --batch) batch="$2"; shift 2 ;;
        --seq-len) seq="$2"; shift 2 ;;
        --iters) iters="$2"; shift 2 ;;
        *) echo "forward.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
default_model="$(scripts/setup.sh | tail -n 1)"
model="${model:-$default_model}"
swift build -c release --product llmprune 2>&1 | grep -v "prohibited flag" | tail -n 1 >&2
out="$(mktemp -d)"; trap 'rm -rf "$out"' EXIT

echo "== llmprune ($threads threads)" >&2
OPENBLAS_NUM_THREADS="$threads" .build/release/llmprune bench --model "$model" --batch "$batch" --seq-len "$seq" \
    --iters "$iters" --threads "$threads" --json > "$out/ours.json"
echo "== PyTorch ($threads threads)" >&2
scripts/reference/run.sh forward_bench.py --model "$model" --batch "$batch" --seq-len "$seq" --iters "$iters" \
    --threads "$threads" 2>/dev/null | tail -n 1 > "$out/torch.json"

python3 - "$out/ours.json" "$out/torch.json" <<'PY'
import json, sys
ours, torch = (json.load(open(p)) for p in sys.argv[1:3])
print(f"model            {ours['model']}")
print(f"geometry         batch {ours['batch']} x {ours['seqLen']} tokens, {ours['threads']} threads (OpenBLAS {ours['blasCore']}, torch {torch['torch_version']})")
print(f"llmprune         {ours['tokensPerSecond']:8.1f} tok/s")
print(f"pytorch          {torch['tokens_per_s']:8.1f} tok/s")
print(f"ratio            {ours['tokensPerSecond'] / torch['tokens_per_s']:8.2f}x  (llmprune / pytorch)")
print(f"sgemm share      {100 * ours['sgemmShare']:8.1f} %  (+ attention {100 * ours['attentionShare']:.1f} %)")
print(f"sgemm GFLOP/s    {ours['sgemmGFLOPs']:8.1f}  vs OpenBLAS peak here {ours['blasPeakGFLOPs']:.1f} ({100 * ours['sgemmGFLOPs'] / ours['blasPeakGFLOPs']:.0f}%)")
print(f"model GFLOP/s    {ours['modelGFLOPs']:8.1f}")
PY
