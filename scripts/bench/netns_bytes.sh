#!/usr/bin/env bash
# Bytes on the wire per phase (issue 17): a 2-node and a 3-node `cluster prune` (samples and layers) and a 2- and
# 3-node tune (plans and adapters checked against one process) on namespace nodes (the bed and job of scripts/test_netns.sh, default flags, so CURVE), each node's
# host-side veth counters sampled every 5 ms (NETNS_BYTES_INTERVAL) with timestamps (scripts/bench/netns_phase_bytes.py, which also
# says how phases are timed and the clocks aligned), the bytes attributed to the phases of rank 0's trace, beside
# report.json's MPI and control bytes for that phase. Prints a markdown table. Root only; the bed is always taken
# down; every command has a timeout.
#   scripts/bench/netns_bytes.sh            (LLMPRUNE_BIN: the binary, default the release build)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
self="netns_bytes"
# shellcheck source=scripts/netns_common.sh
source "$root/scripts/netns_common.sh"
pb="$root/scripts/bench/netns_phase_bytes.py"
interval="${NETNS_BYTES_INTERVAL:-0.005}"
sampler_pid=""
trap 'kill "$sampler_pid" 2>/dev/null || true; cleanup' EXIT

results=()
# measure LABEL KIND NODES JOBDIR COMMAND...: the sampler around one run, then the attribution.
measure() {
    local label="$1" kind="$2" n="$3" job="$4" i v=()
    shift 4
    for ((i = 1; i <= n; i++)); do v+=("$NETBED_TAG-$NETBED_HOST$i"); done
    python3 "$pb" sample "$s/$label.samples" "$interval" "${v[@]}" &
    sampler_pid=$!
    sleep 0.2
    "$@" >/dev/null 2>"$s/$label.log" || { kill "$sampler_pid"; show_log "$s/$label.log"; fail "$label"; }
    sleep 0.3
    kill "$sampler_pid"; wait "$sampler_pid" 2>/dev/null || true
    sampler_pid=""
    results+=("$label	$(timeout 30 python3 "$pb" attribute "$s/$label.samples" "$job" "$kind")")
}
runn() { local n="$1" t="$2"; shift 2; local h; h=$(seq -f "$NETBED_HOST%g" -s, 1 "$n"); timeout "$t" "$bed" mpiexec -n "$n" -ppn 1 -hosts "${h%,}" "$bin" "$@"; }

echo "$self: sampling every $interval s" >&2
for mode in samples layers; do
    measure "prune-$mode-2" prune 2 "$s/p-$mode-2.job" runn 2 90 cluster prune "${prune_args[@]}" \
        --out "$s/p-$mode-2" --shard "$mode" --bind 'tcp://*:5555' --quiet --dtype f32
    c=$(compare plan "$s/single.plan.json" "$s/p-$mode-2.job/plan.json") || fail "prune-$mode-2: $c"
done
# The 1-process adapter every multi-node tune is compared with.
timeout 120 "$bin" tune "${tune_args[@]}" --out "$s/t-1" --quiet >/dev/null 2>"$s/t-1.log" \
    || { show_log "$s/t-1.log"; fail "1-process tune"; }
measure tune-2 tune 2 "$s/t-2.job" runn 2 120 tune "${tune_args[@]}" --out "$s/t-2" --bind 'tcp://*:5555' --quiet
c=$(compare adapter "$s/t-1/adapter_model.safetensors" "$s/t-2/adapter_model.safetensors") || fail "tune-2: $c"
echo "$self: tune-2 against 1 process: $c" >&2
"$bed" up 3 >/dev/null
for mode in samples layers; do
    measure "prune-$mode-3" prune 3 "$s/p-$mode-3.job" runn 3 90 cluster prune "${prune_args[@]}" \
        --out "$s/p-$mode-3" --shard "$mode" --bind 'tcp://*:5555' --quiet --dtype f32
    c=$(compare plan "$s/single.plan.json" "$s/p-$mode-3.job/plan.json") || fail "prune-$mode-3: $c"
    echo "$self: prune-$mode-3 against 1 process: $c" >&2
done
measure tune-3 tune 3 "$s/t-3.job" runn 3 120 tune "${tune_args[@]}" --out "$s/t-3" --bind 'tcp://*:5555' --quiet
c=$(compare adapter "$s/t-1/adapter_model.safetensors" "$s/t-3/adapter_model.safetensors") || fail "tune-3: $c"
echo "$self: tune-3 against 1 process: $c" >&2

printf '%s\n' "${results[@]}" | python3 -c "
import json, sys
f = lambda x: '' if x is None else format(x, ',')
print('| run | phase | s | wire rx+tx, all nodes: origin at lower bound (± at the boundaries) / at upper bound | per node rx / tx (lower bound) | report MPI | report control |')
print('|---|---|---|---|---|---|---|')
notes = []
for line in sys.stdin:
    label, j = line.rstrip('\n').split('\t')
    r = json.loads(j)
    for p in r['phases']:
        tot = sum(a + b for a, b in p['nodes'])
        per = '; '.join('n%d %s / %s' % (i + 1, f(a), f(b)) for i, (a, b) in enumerate(p['nodes']))
        print('| %s | %s | %.3f | %s (± %s) / %s | %s | %s | %s |' % (label, p['phase'], p['seconds'], f(tot), f(p['uncertain']), f(p['total_hi']), per, f(p['mpi']), f(p['control'])))
    notes.append('%s: %d samples, median interval %.1f ms, max %.1f ms; origin bracketed within %.1f ms'
                 % (label, r['samples'], 1e3 * r['median_interval'], 1e3 * r['max_interval'], 1e3 * r['origin_bracket']))
print()
print('\n'.join('- ' + n for n in notes))
"
echo
echo "$self: done in $(elapsed "$started") s"
