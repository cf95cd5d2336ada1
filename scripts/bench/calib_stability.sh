#!/usr/bin/env bash
# How stable a plan is across calibration seeds as the calibration grows: for each sample count N, `llmprune plan`
# with seeds 1..S (ptb-valid by default, 64-token samples, the batch run in micro-batches of 10 samples so
# activation memory stays that of 10), then the mean pairwise Jaccard of the kept sets and of the removed sets
# (units = (layer, KV head | query head | MLP channel)), and the peak RSS / activation bytes of the runs.
#   scripts/bench/calib_stability.sh [--bin BIN] [--samples "10 40 160"] [--seeds 4] [--calib SOURCE]
#                                    [--out DIR] [-- extra plan flags]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="$root/.build/release/llmprune" counts="10 40 160" seeds=4 calib=ptb-valid outdir="" threads=2
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) bin="$2"; shift 2 ;;
        --samples) counts="$2"; shift 2 ;;
        --seeds) seeds="$2"; shift 2 ;;
        --calib) calib="$2"; shift 2 ;;
        --out) outdir="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --) shift; break ;;
        *) echo "calib_stability.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
model="$root/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -n "$outdir" ] || outdir="$(mktemp -d)"
mkdir -p "$outdir"
for n in $counts; do
    mb=$(( (n + 9) / 10 ))
    for s in $(seq "$seeds"); do
        echo "== samples $n seed $s (micro-batches $mb)" >&2
        "$bin" plan --model "$model" --plan "$outdir/plan-n$n-s$s.json" --force --calib "$calib" --calib-samples "$n" \
            --seed "$s" --micro-batches "$mb" --threads "$threads" --json "$@" > "$outdir/report-n$n-s$s.json"
    done
done
python3 - "$outdir" "$counts" "$seeds" <<'PY'
import itertools, json, sys
out, counts, seeds = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])

def units(plan):
    kept, every = set(), set()
    for l in plan["layers"]:
        o, i = l["original"], l["layer"]
        for kind, key, n in (("kv", "keptKVHeads", o["num_key_value_heads"]), ("q", "keptQueryHeads", o["num_attention_heads"]),
                             ("mlp", "keptMLPChannels", o["intermediate_size"])):
            kept |= {(i, kind, u) for u in l[key]}
            every |= {(i, kind, u) for u in range(n)}
    return kept, every - kept

def jaccard(a, b):
    return len(a & b) / len(a | b) if a | b else 1.0

print(f"{'samples':>7s} {'Jaccard kept':>12s} {'Jaccard removed':>15s} {'min removed':>11s} {'peak RSS MB':>11s} {'activations MB':>14s} {'seconds':>8s}")
for n in counts:
    plans = [json.load(open(f"{out}/plan-n{n}-s{s}.json")) for s in range(1, seeds + 1)]
    reps = [json.load(open(f"{out}/report-n{n}-s{s}.json")) for s in range(1, seeds + 1)]
    sets = [units(p) for p in plans]
    jk = [jaccard(a[0], b[0]) for a, b in itertools.combinations(sets, 2)]
    jr = [jaccard(a[1], b[1]) for a, b in itertools.combinations(sets, 2)]
    print(f"{n:>7s} {sum(jk) / len(jk):12.4f} {sum(jr) / len(jr):15.4f} {min(jr):11.4f} "
          f"{max(r['peakRSSMB'] for r in reps):11.0f} {max(r['peakActivationMB'] for r in reps):14.1f} "
          f"{sum(r['seconds']['total'] for r in reps) / len(reps):8.1f}")
PY
