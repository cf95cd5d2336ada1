#!/usr/bin/env bash
# Pruning then LoRA recovery of SmolLM2, end to end: `mpiexec -n R llmprune cluster prune` at r = 0.25 (local,
# element1), then `mpiexec -n R llmprune tune` on the Alpaca sample for E epochs with perplexity on WikiText-2
# and PTB before and after tuning (first W windows of 128 tokens). Prints the table.
#   scripts/bench/recovery.sh [--model PATH] [--ranks 2] [--epochs 1] [--batch 16] [--lr 2e-4] [--windows 100]
set -euo pipefail
model="" ranks=2 epochs=1 batch=16 lr=2e-4 windows=100
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --ranks) ranks="$2"; shift 2 ;;
        --epochs) epochs="$2"; shift 2 ;;
        --batch) batch="$2"; shift 2 ;;
        --lr) lr="$2"; shift 2 ;;
        --windows) windows="$2"; shift 2 ;;
        *) echo "recovery.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
source "$(dirname "$0")/common.sh"
alpaca="$(cd "$root/.." && pwd)/shared/data/alpaca/alpaca_data_1k.json"
threads=$(( $(nproc) / ranks )); [ "$threads" -ge 1 ] || threads=1
echo "== prune: mpiexec -n $ranks llmprune cluster prune --ratio 0.25" >&2
mpiexec -n "$ranks" $bin cluster prune --model "$model" --out "$out/pruned" --ratio 0.25 --threads "$threads" \
    --json > "$out/prune.json"
echo "== tune: mpiexec -n $ranks llmprune tune, $epochs epoch(s), batch $batch, lr $lr" >&2
mpiexec -n "$ranks" $bin tune --model "$out/pruned" --data "$alpaca" --out "$out/adapter" --epochs "$epochs" \
    --batch "$batch" --micro-batch 4 --lr "$lr" --warmup 5 --threads "$threads" --eval wikitext2,ptb \
    --eval-windows "$windows" --json > "$out/tune.json"
python3 - "$out" <<'PY'
import json, sys
d = sys.argv[1]
p, t = json.load(open(f"{d}/prune.json")), json.load(open(f"{d}/tune.json"))
print(f"pruned: {p['parametersBefore']:,} → {p['parametersAfter']:,} parameters on {p['ranks']} rank(s)")
print(f"tuned:  {t['steps']} steps ({t['epochs']} epoch(s)) over {t['trainExamples']} examples on {t['ranks']} rank(s), "
      f"{t['tokens']:,} tokens in {t['seconds']:.0f} s ({t['tokensPerSecond']:.1f} tok/s)")
print(f"train loss {t['firstLoss']:.4f} → {t['lastLoss']:.4f}; validation loss "
      f"{t['validationLossBefore']:.4f} → {t['validationLoss']:.4f} ({t['validationExamples']} held-out examples)")
print("dataset     pruned, before tuning   after tuning")
for ds in sorted(t["perplexityBefore"]):
    print(f"{ds:10s}  {t['perplexityBefore'][ds]:21.3f}   {t['perplexityAfter'][ds]:12.3f}")
PY
