#!/usr/bin/env bash
# The memory planner against the measured peak RSS (VmHWM) of every rank, on synthetic bf16 models of real shapes.
#   scripts/bench/memory_planner.sh [--shapes "smollm2-135m tinyllama-1.1b"] [--ranks "1 2 4"] [--modes "low fp32"]
#                                   [--models DIR] [--budget 6G] [--extra "flags for cluster prune"]
# For each shape (synthesised once into --models, default /tmp/llmprune-synth), each rank count and each mode
# (low: --low-memory, fp32: fp32 layers), runs `mpiexec -n N llmprune cluster prune --shard layers --ratio 0.2`
# (each rank under cluster/mem-budget.sh when --budget is given) and prints, per rank, the predicted peak, the
# measured VmHWM, and their ratio. Exits non-zero if any rank is off by more than 15 %.
set -euo pipefail
shapes="smollm2-135m tinyllama-1.1b"; ranks="1 2 4"; modes="low fp32"; models=/tmp/llmprune-synth; budget=""; extra=""
while [ $# -gt 0 ]; do
    case "$1" in
        --shapes) shapes="$2"; shift 2 ;;
        --ranks) ranks="$2"; shift 2 ;;
        --modes) modes="$2"; shift 2 ;;
        --models) models="$2"; shift 2 ;;
        --budget) budget="$2"; shift 2 ;;
        --extra) extra="$2"; shift 2 ;;
        *) echo "memory_planner.sh: unknown flag $1" >&2; exit 2 ;;
    esac
done
source "$(dirname "$0")/common.sh"
mkdir -p "$models"
launch=("$root/$bin")
: > "$out/ratios"
[ -n "$budget" ] && launch=("$root/cluster/mem-budget.sh" -q "$budget" -- "$root/$bin")
printf "%-16s %-5s %2s %4s %-9s %12s %12s %7s  %s\n" shape mode N rank layers "predicted MB" "measured MB" ratio "peak phase (predicted)"
for shape in $shapes; do
    dir="$models/$shape"
    [ -f "$dir/config.json" ] || "$bin" synth --shape "$shape" --dtype bf16 --seed 7 --out "$dir" --quiet >&2
    for n in $ranks; do
        for mode in $modes; do
            flags=(--shard layers --ratio 0.2 --quiet --force)
            [ "$mode" = low ] && flags+=(--low-memory)
            # shellcheck disable=SC2086
            mpiexec -n "$n" "${launch[@]}" cluster prune --model "$dir" --out "$out/o" "${flags[@]}" $extra >/dev/null
            # One row per rank: predicted and measured peak; the ratios go to a file for the verdict.
            python3 - "$out/o.job/report.json" "$shape" "$mode" "$n" "$out/ratios" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
plan = {p["rank"]: p for p in r["memoryPlan"]["ranks"]}
with open(sys.argv[5], "a") as ratios:
    for k in r["perRank"]:
        p = plan[k["rank"]]
        ratio = p["peakBytes"] / k["peakRSSBytes"]
        print("%-16s %-5s %2s %4d %3d..<%-3d %12.1f %12.1f %7.3f  %s" % (sys.argv[2], sys.argv[3], sys.argv[4], k["rank"],
              p["layerStart"], p["layerEnd"], p["peakBytes"] / 1e6, k["peakRSSBytes"] / 1e6, ratio, p["peakPhase"]))
        print(ratio, file=ratios)
PY
            rm -rf "$out/o" "$out/o.job"
        done
    done
done
python3 - "$out/ratios" <<'PY'
import sys
v = [float(x) for x in open(sys.argv[1])]
worst = max(abs(x - 1) for x in v)
print("ranks measured: %d; worst |predicted/measured − 1| = %.1f %% (bar: 15 %%)" % (len(v), 100 * worst))
sys.exit(0 if worst <= 0.15 else 1)
PY
