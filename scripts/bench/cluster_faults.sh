#!/usr/bin/env bash
# Fault injection on SmolLM2 with 3 ranks, each case in one run: a rank is parked mid-phase by the test hook
# LLMPRUNE_FAULT=stall@RANK:STEP (heartbeats go on), then struck; the script prints how long the job took to end
# after the strike, how `llmprune cluster status` explains it, and the resumed attempt's first phase, wall time
# and whether its plan equals the single-process plan.
#   scripts/bench/cluster_faults.sh [--model PATH] [--timeout 5]
set -euo pipefail
model="" timeout=5
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --timeout) timeout="$2"; shift 2 ;;
        *) echo "cluster_faults.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
source "$(dirname "$0")/common.sh"

echo "== reference: single-process plan" >&2
$bin plan --model "$model" --plan "$out/single.json" --threads 2 --quiet >/dev/null

now() { date +%s.%N; }

# case NAME SHARD VICTIM STEP SIGNAL
strike() {
    local name=$1 shard=$2 victim=$3 step=$4 sig=$5 job="$out/$1.job"
    LLMPRUNE_FAULT="stall@$victim:$step" mpiexec -n 3 $bin cluster prune --model "$model" --out "$out/$name" \
        --shard "$shard" --heartbeat-timeout "$timeout" --threads 1 --quiet > "$out/$name.log" 2>&1 &
    local launcher=$!
    while [ ! -f "$job/attempt-0/rank-$victim.stalled" ]; do sleep 0.05; done
    local pid; pid=$(python3 -c "import json; print(json.load(open('$job/attempt-0/rank-$victim.json'))['pid'])")
    local t0; t0=$(now)
    kill "-$sig" "$pid"
    local status=0; wait "$launcher" || status=$?
    local t1; t1=$(now)
    kill -9 "$pid" 2>/dev/null || true
    echo "### $name: $shard sharding, rank $victim parked at $step, sent SIG$sig"
    printf 'job ended %.2f s after the signal, mpiexec status %d\n' "$(python3 -c "print($t1 - $t0)")" "$status"
    $bin cluster status "$job" | grep -E "^phases|outcome|cause|first to end" || true
    local t2; t2=$(now)
    mpiexec -n 3 $bin cluster prune --resume "$job" --threads 1 --json > "$out/$name.resume.json" 2>/dev/null
    local t3; t3=$(now)
    python3 - "$out/$name.resume.json" "$out/single.json" "$job/plan.json" "$(python3 -c "print($t3 - $t2)")" <<'PY'
import json, sys
r, single, plan, secs = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), json.load(open(sys.argv[3])), float(sys.argv[4])
kept = lambda p: [(l["keptQueryHeads"], l["keptKVHeads"], l["keptMLPChannels"]) for l in p["layers"]]
print(f"resumed: attempt {r['epoch']} began with phase {r['startPhase']}, {secs:.1f} s wall, "
      f"plan identical to single process: {kept(plan) == kept(single)}")
PY
    echo
}

strike kill-importance layers 1 pipeline KILL
strike hang-importance samples 2 reduce STOP
strike kill-write layers 0 write KILL
