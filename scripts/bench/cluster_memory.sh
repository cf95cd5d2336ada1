#!/usr/bin/env bash
# Peak memory of layer sharding: the single-process prune of SmolLM2 (`llmprune prune`) against
# `mpiexec -n 3 llmprune cluster prune --shard layers`, same settings, in one run. Prints every rank's peak RSS
# (VmHWM) and the bar of issue 5: each rank ≤ single-process peak / 3 + 30%.
#   scripts/bench/cluster_memory.sh [--model PATH] [--ranks 3] [--threads 1] [--ratio 0.25]
set -euo pipefail
model="" ranks=3 threads=1 ratio=0.25
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --ranks) ranks="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --ratio) ratio="$2"; shift 2 ;;
        *) echo "cluster_memory.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
source "$(dirname "$0")/common.sh"

echo "== single process: llmprune prune" >&2
$bin prune --model "$model" --out "$out/single" --ratio "$ratio" --threads "$threads" --json > "$out/single.json"
echo "== $ranks ranks: mpiexec -n $ranks llmprune cluster prune --shard layers" >&2
mpiexec -n "$ranks" $bin cluster prune --model "$model" --out "$out/layers" --shard layers --ratio "$ratio" \
    --threads "$threads" --json > "$out/layers.json"
python3 - "$out" "$ranks" <<'PY'
import json, sys
d, n = sys.argv[1], int(sys.argv[2])
single = json.load(open(f"{d}/single.json"))
layers = json.load(open(f"{d}/layers.json"))
peak1 = single["peakRSSMB"] * 1024 * 1024          # ru_maxrss (KiB) → bytes
bar = peak1 / n * 1.3
MiB = 1024 * 1024
print(f"single-process peak RSS        {peak1 / MiB:8.1f} MiB   (llmprune prune)")
print(f"bar: single / {n} + 30%          {bar / MiB:8.1f} MiB")
print("rank  layers      weights MiB  activations MiB  peak RSS MiB  ≤ bar")
ok = True
for r in layers["perRank"]:
    fits = r["peakRSSBytes"] <= bar
    ok &= fits
    print(f"{r['rank']:4d}  {r['layers'][0]:3d}..<{r['layers'][-1] + 1:<3d}  {r['weightBytes'] / MiB:11.1f}  "
          f"{r['peakActivationBytes'] / MiB:15.1f}  {r['peakRSSBytes'] / MiB:12.1f}  {'yes' if fits else 'NO'}")
print(f"largest rank / single          {max(r['peakRSSBytes'] for r in layers['perRank']) / peak1:8.3f}")
print(f"same parameters after pruning  {single['parametersAfter'] == layers['parametersAfter']} "
      f"({single['parametersAfter']} vs {layers['parametersAfter']})")
sys.exit(0 if ok else 1)
PY
