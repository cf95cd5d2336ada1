#!/usr/bin/env bash
# Importance-phase wall time and bytes moved per phase of `llmprune cluster prune` on SmolLM2 for N = 1, 2, 3
# ranks on this machine, with sample sharding and with layer sharding (plus the largest N with a micro-batched
# pipeline), in one run. Each rank gets
# --threads (default: 2 / N, at least 1) BLAS threads so the ranks share the 2 cores.
#   scripts/bench/cluster.sh [--model PATH] [--ranks "1 2 3"] [--calib-samples 10] [--calib-len 64]
set -euo pipefail
model="" ranks="1 2 3" samples=10 len=64
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --ranks) ranks="$2"; shift 2 ;;
        --calib-samples) samples="$2"; shift 2 ;;
        --calib-len) len="$2"; shift 2 ;;
        *) echo "cluster.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
source "$(dirname "$0")/common.sh"
cores=$(nproc)
echo "== single process: llmprune plan (reference plan)" >&2
$bin plan --model "$model" --plan "$out/single.json" --calib-samples "$samples" --calib-len "$len" \
    --threads "$cores" --quiet > /dev/null
for shard in samples layers; do
    for n in $ranks; do
        threads=$(( cores / n )); [ "$threads" -ge 1 ] || threads=1
        echo "== $shard, $n rank(s), $threads thread(s) each" >&2
        mpiexec -n "$n" $bin cluster prune --model "$model" --out "$out/$shard-$n" --shard "$shard" \
            --calib-samples "$samples" --calib-len "$len" --threads "$threads" --json > "$out/$shard-$n.json"
    done
done
last="${ranks##* }"
if [ "$last" -gt 1 ]; then
    micro=$(( 2 * last ))
    echo "== layers, $last ranks, --micro-batches $micro" >&2
    mpiexec -n "$last" $bin cluster prune --model "$model" --out "$out/micro" --shard layers --micro-batches "$micro" \
        --calib-samples "$samples" --calib-len "$len" --threads 1 --json > "$out/micro.json"
fi
python3 - "$out" "$ranks" <<'PY'
import json, sys
d, ranks = sys.argv[1], [int(x) for x in sys.argv[2].split()]
print("shard    N  importance s  total s   importance MPI MB  importance ctl KB  plan MPI KB  loss")
plans = {}
for shard in ["samples", "layers"]:
    for n in ranks:
        r = json.load(open(f"{d}/{shard}-{n}.json"))
        imp, plan = r["phases"]["importance"], r["phases"]["plan"]
        plans[(shard, n)] = json.load(open(f"{d}/{shard}-{n}.job/plan.json"))
        print(f"{shard:8s} {n:2d}  {imp['seconds']:12.2f}  {r['totalSeconds']:7.2f}   {imp['mpiBytes'] / 1e6:17.1f}  "
              f"{imp['controlBytes'] / 1e3:17.1f}  {plan['mpiBytes'] / 1e3:11.1f}  {r['loss']:.6f}")
import os
if os.path.exists(f"{d}/micro.json"):
    r = json.load(open(f"{d}/micro.json"))
    imp = r["phases"]["importance"]
    plans[("micro", ranks[-1])] = json.load(open(f"{d}/micro.job/plan.json"))
    print(f"layers   {ranks[-1]:2d}  {imp['seconds']:12.2f}  {r['totalSeconds']:7.2f}   {imp['mpiBytes'] / 1e6:17.1f}  "
          f"{imp['controlBytes'] / 1e3:17.1f}  {r['phases']['plan']['mpiBytes'] / 1e3:11.1f}  {r['loss']:.6f}"
          f"   (--micro-batches {2 * ranks[-1]}; peak RSS MiB per rank: "
          + ", ".join(f"{x['peakRSSBytes'] / 2**20:.0f}" for x in r["perRank"]) + ")")
ref = json.load(open(f"{d}/single.json"))
def kept(p): return [(l["keptQueryHeads"], l["keptKVHeads"], l["keptMLPChannels"]) for l in p["layers"]]
def worst(p):
    return max(abs(u - v) / max(abs(u), 1e-30) for a, b in zip(ref["layers"], p["layers"])
               for u, v in zip(a["attentionScores"] + a["mlpScores"], b["attentionScores"] + b["mlpScores"]))
print("against single-process `llmprune plan`:")
for (shard, n), p in plans.items():
    print(f"  {shard:8s} {n}: kept units identical {kept(p) == kept(ref)}, worst relative score difference {worst(p):.2e}")
PY
