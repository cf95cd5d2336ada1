#!/usr/bin/env bash
# The fault table of issue 17 on two namespace nodes (cluster/netns.sh; the job and bed of scripts/test_netns.sh,
# default flags, so CURVE is on): node 2 is cut off the network while its rank is parked (LLMPRUNE_FAULT, heartbeats
# going on until the cut) in the load, importance, plan broadcast and write phases of a prune and in a tune step,
# and, with no cut, parked past the progress deadline; then 1 % loss on node 2 for whole runs, then 50 ms delay on
# what node 2 and what both nodes receive, for whole runs (with ping round trips). For each: the time
# from the cut until every process on both nodes was gone (bound: heartbeat timeout + 10 s), the cause `cluster
# status` gave, the --resume time, and whether the plan / adapter equals the uninterrupted one. Prints a markdown
# table. Root only; the bed is always taken down; every command has a timeout.
# With --nodes 3, three nodes instead: node 3 cut while its rank is parked in importance and in a tune step, node 2
# cut while its rank writes; every process on all three nodes must be gone within the bound.
#   scripts/bench/netns_faults.sh [--nodes 2|3]   (LLMPRUNE_BIN: the binary, default the release build)
set -euo pipefail
nodes=2
case "${1-}" in
    --nodes) nodes="${2-}"; shift 2 ;;
    '') ;;
    *) echo "usage: scripts/bench/netns_faults.sh [--nodes 2|3]" >&2; exit 2 ;;
esac
case "$nodes" in 2 | 3) ;; *) echo "netns_faults: --nodes 2 or 3" >&2; exit 2 ;; esac
root="$(cd "$(dirname "$0")/../.." && pwd)"
self="netns_faults"
# shellcheck source=scripts/netns_common.sh
source "$root/scripts/netns_common.sh"

rows=()
row() { rows+=("| $1 | $2 | $3 | $4 | $5 |"); echo "  $1: gone $2; $3; resume $4; $5" >&2; }
# From a `cluster status` text: rank 0's recorded end ("aborting: rank 1 lost: …") and the rank that ended first
# (both sides notice the cut within one interval of each other, so either may be first).
cause() {
    python3 -c "import re, sys
text = sys.argv[1]
first = re.search(r'^cause: rank (\d+) ', text, re.M)
mine = re.search(r'^  rank 0: pid \d+ on [^:]*: (.*) at \+[0-9.]+ s', text, re.M)
why = (mine.group(1) if mine else '?') + ('; first to end: rank ' + first.group(1) if first else '')
print(why.replace('|', '\\\\|'))" "$1"
}

if [ "$nodes" -eq 3 ]; then
    "$bed" up 3 >/dev/null
    hosts3="${NETBED_HOST}1,${NETBED_HOST}2,${NETBED_HOST}3"
    run3() { timeout "$1" "$bed" mpiexec -n 3 -ppn 1 -hosts "$hosts3" "$bin" "${@:2}"; }
    run3 120 tune "${tune_args[@]}" --out "$s/t3" --bind 'tcp://*:5555' --quiet >/dev/null 2>"$s/t3.log" \
        || { show_log "$s/t3.log"; fail "3-node tune"; }
    # cut_node NODE NAME JOBDIR COMMAND...: node NODE cut once its rank (NODE-1) is parked; sets cut_secs (cut →
    # every rank and every process on the three nodes gone).
    cut_node() {
        local node="$1" name="$2" job="$3" k r t gone="" pids=()
        shift 3
        local marker="$job/attempt-0/rank-$((node - 1)).stalled"
        "$@" >"$s/$name.out" 2>"$s/$name.log" &
        job_pid=$!
        for k in $(seq 600); do [ -e "$marker" ] && break; sleep 0.05; done
        [ -e "$marker" ] || { show_log "$s/$name.log"; fail "$name: rank $((node - 1)) never reached the stall"; }
        for r in 0 1 2; do pids+=("$(rank_pid "$job/attempt-0/rank-$r.json")"); done
        "$bed" cut "$node"
        t=$(date +%s.%N)
        for k in $(seq $((bound * 20))); do
            if ! alive "${pids[0]}" && ! alive "${pids[1]}" && ! alive "${pids[2]}" && [ "$(node_procs 1)" -eq 0 ] \
                && [ "$(node_procs 2)" -eq 0 ] && [ "$(node_procs 3)" -eq 0 ]; then gone=1; break; fi
            sleep 0.05
        done
        cut_secs=$(elapsed "$t")
        [ -n "$gone" ] || {
            show_log "$s/$name.log"
            fail "$name: $bound s after the cut: ranks alive: $(for p in "${pids[@]}"; do alive "$p" && echo -n "$p "; done)processes left on nt1..3: $(node_procs 1) $(node_procs 2) $(node_procs 3)"
        }
        for k in $(seq 100); do kill -0 "$job_pid" 2>/dev/null || break; sleep 0.05; done
        kill -0 "$job_pid" 2>/dev/null && fail "$name: mpiexec still running after every rank ended"
        job_pid=""
        "$bed" restore "$node"
    }
    prune_cut3() {   # NODE STEP NAME
        local node="$1" step="$2" name="$3" st t r c
        cut_node "$node" "$name" "$s/$name.job" env LLMPRUNE_FAULT="stall@$((node - 1)):$step" timeout 60 "$bed" \
            mpiexec -n 3 -ppn 1 -hosts "$hosts3" "$bin" cluster prune "${prune_args[@]}" --out "$s/$name" \
            --shard samples --bind 'tcp://*:5555' "${hb[@]}" --dtype f32
        st=$(timeout 20 "$bin" cluster status "$s/$name.job") || fail "$name: cluster status"
        grep -q "rank $((node - 1)) lost: no heartbeat" <<<"$st" || fail "$name: cluster status does not name the lost rank: $st"
        t=$(date +%s.%N)
        run3 90 cluster prune --resume "$s/$name.job" --bind 'tcp://*:5555' --quiet >/dev/null 2>"$s/$name-resume.log" \
            || { show_log "$s/$name-resume.log"; fail "$name: resume"; }
        r=$(elapsed "$t")
        c=$(compare plan "$s/single.plan.json" "$s/$name.job/plan.json") || fail "$name: resumed plan: $c"
        [ -f "$s/$name/model.safetensors.index.json" ] || fail "$name: the resumed job wrote no model"
        row "cut node $node, prune, rank $((node - 1)) parked at \`$step\`" "$cut_secs s" "$(cause "$st")" "$r s" "${c%% (*}"
    }
    echo "$self: 3 nodes, heartbeat ${hb[*]}, bound $bound s" >&2
    prune_cut3 3 reduce importance3
    prune_cut3 2 write write3
    cut_node 3 tune-step3 "$s/g3.job" env LLMPRUNE_FAULT=stall@2:step3 timeout 60 "$bed" mpiexec -n 3 -ppn 1 \
        -hosts "$hosts3" "$bin" tune "${tune_args[@]}" --out "$s/g3" --bind 'tcp://*:5555' "${hb[@]}" --quiet
    st=$(timeout 20 "$bin" cluster status "$s/g3.job") || fail "tune3: cluster status"
    grep -q "rank 2 lost: no heartbeat" <<<"$st" || fail "tune3: cluster status does not name the lost rank: $st"
    t=$(date +%s.%N)
    run3 90 tune --resume "$s/g3.job" --bind 'tcp://*:5555' --quiet >/dev/null 2>"$s/g3-resume.log" \
        || { show_log "$s/g3-resume.log"; fail "tune3 resume"; }
    r=$(elapsed "$t")
    c=$(compare adapter "$s/t3/adapter_model.safetensors" "$s/g3/adapter_model.safetensors" exact) || fail "resumed tune3: $c"
    row "cut node 3, tune, rank 2 parked at step 4" "$cut_secs s" "$(cause "$st")" "$r s" "${c%% (*}, max abs difference 0 (against the uninterrupted 3-node adapter)"
    echo
    echo "| fault (3 nodes, heartbeat 0.5 s / 2 s) | every process gone after the cut (bound $bound s) | \`cluster status\`: rank 0's end | resume | result |"
    echo "|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "$self: done in $(elapsed "$started") s"
    exit 0
fi

timeout 60 "$bin" tune "${tune_args[@]}" --out "$s/t1" --quiet >/dev/null 2>"$s/t1.log" \
    || { show_log "$s/t1.log"; fail "1-process tune"; }
run2 90 tune "${tune_args[@]}" --out "$s/t2" --bind 'tcp://*:5555' --quiet >/dev/null 2>"$s/t2.log" \
    || { show_log "$s/t2.log"; fail "2-node tune"; }

# prune_cut NAME STEP: a prune with rank 1 parked at STEP, node 2 cut, status, resume, plan compared.
prune_cut() {
    local name="$1" step="$2" st t c
    cut_node2 "$name" "$s/$name.job" env LLMPRUNE_FAULT="stall@1:$step" timeout 60 "$bed" mpiexec -n 2 -ppn 1 \
        -hosts "$hosts" "$bin" cluster prune "${prune_args[@]}" --out "$s/$name" --shard samples --bind 'tcp://*:5555' \
        "${hb[@]}" --dtype f32
    st=$(timeout 20 "$bin" cluster status "$s/$name.job") || fail "$name: cluster status"
    grep -q "rank 1 lost: no heartbeat" <<<"$st" || fail "$name: cluster status does not name the lost rank: $st"
    t=$(date +%s.%N)
    run2 90 cluster prune --resume "$s/$name.job" --bind 'tcp://*:5555' --quiet >/dev/null 2>"$s/$name-resume.log" \
        || { show_log "$s/$name-resume.log"; fail "$name: resume"; }
    local r; r=$(elapsed "$t")
    c=$(compare plan "$s/single.plan.json" "$s/$name.job/plan.json") || fail "$name: resumed plan: $c"
    [ -f "$s/$name/model.safetensors.index.json" ] || fail "$name: the resumed job wrote no model"
    row "cut node 2, prune, rank 1 parked at \`$step\`" "$cut_secs s" "$(cause "$st")" "$r s" "${c%% (*}"
}

echo "$self: 2 nodes, heartbeat ${hb[*]}, bound $bound s" >&2
prune_cut load load
prune_cut importance reduce
prune_cut plan-broadcast plan
prune_cut write write

cut_node2 tune-step "$s/g.job" env LLMPRUNE_FAULT=stall@1:step3 timeout 60 "$bed" mpiexec -n 2 -ppn 1 \
    -hosts "$hosts" "$bin" tune "${tune_args[@]}" --out "$s/g" --bind 'tcp://*:5555' "${hb[@]}" --quiet
st=$(timeout 20 "$bin" cluster status "$s/g.job") || fail "tune: cluster status"
grep -q "rank 1 lost: no heartbeat" <<<"$st" || fail "tune: cluster status does not name the lost rank: $st"
t=$(date +%s.%N)
run2 90 tune --resume "$s/g.job" --bind 'tcp://*:5555' --quiet >/dev/null 2>"$s/g-resume.log" \
    || { show_log "$s/g-resume.log"; fail "tune resume"; }
r=$(elapsed "$t")
c=$(compare adapter "$s/t2/adapter_model.safetensors" "$s/g/adapter_model.safetensors" exact) || fail "resumed tune: $c"
row "cut node 2, tune, rank 1 parked at step 4" "$cut_secs s" "$(cause "$st")" "$r s" "${c%% (*}, max abs difference 0"

# No cut: rank 1 parked on node 2, heartbeating; only the progress deadline (2 s floor) ends the job. Timed from
# the stall marker to the last process gone.
name=no-progress
env LLMPRUNE_FAULT=stall@1:reduce timeout 60 "$bed" mpiexec -n 2 -ppn 1 -hosts "$hosts" "$bin" cluster prune \
    "${prune_args[@]}" --out "$s/$name" --shard samples --bind 'tcp://*:5555' "${hb[@]}" --progress-floor 2 \
    --dtype f32 >"$s/$name.out" 2>"$s/$name.log" &
job_pid=$!
for _ in $(seq 600); do [ -e "$s/$name.job/attempt-0/rank-1.stalled" ] && break; sleep 0.05; done
[ -e "$s/$name.job/attempt-0/rank-1.stalled" ] || { show_log "$s/$name.log"; fail "$name: rank 1 never stalled"; }
t=$(date +%s.%N)
p0=$(rank_pid "$s/$name.job/attempt-0/rank-0.json"); p1=$(rank_pid "$s/$name.job/attempt-0/rank-1.json")
for _ in $(seq $((bound * 20))); do
    { alive "$p0" || alive "$p1" || [ "$(node_procs 1)" -gt 0 ] || [ "$(node_procs 2)" -gt 0 ]; } || break
    sleep 0.05
done
gone=$(elapsed "$t")
{ alive "$p0" || alive "$p1"; } && fail "$name: ranks alive $bound s after the stall"
wait "$job_pid" 2>/dev/null || true
job_pid=""
st=$(timeout 20 "$bin" cluster status "$s/$name.job") || fail "$name: cluster status"
grep -q "rank 1 made no progress" <<<"$st" || fail "$name: cluster status does not name the rank: $st"
t=$(date +%s.%N)
run2 90 cluster prune --resume "$s/$name.job" --bind 'tcp://*:5555' --quiet >/dev/null 2>"$s/$name-resume.log" \
    || { show_log "$s/$name-resume.log"; fail "$name: resume"; }
r=$(elapsed "$t")
c=$(compare plan "$s/single.plan.json" "$s/$name.job/plan.json") || fail "$name: resumed plan: $c"
row "no cut: rank 1 on node 2 parked at \`reduce\`, heartbeating (\`--progress-floor 2\`)" "$gone s (from the stall)" \
    "$(cause "$st")" "$r s" "${c%% (*}"

# 1 % loss each way on node 2: the jobs must complete with the uninterrupted results.
"$bed" loss 2 1 >/dev/null
times=()
for k in 1 2 3; do
    t=$(date +%s.%N)
    run2 90 cluster prune "${prune_args[@]}" --out "$s/loss-$k" --shard samples --bind 'tcp://*:5555' --quiet \
        --dtype f32 >/dev/null 2>"$s/loss-$k.log" || { show_log "$s/loss-$k.log"; fail "prune with 1 % loss"; }
    times+=("$(elapsed "$t")")
    c=$(compare plan "$s/single.plan.json" "$s/loss-$k.job/plan.json") || fail "prune with 1 % loss: $c"
done
row "1 % loss on node 2, prune ×3 (completes)" "—" "—" "— (runs took ${times[*]} s)" "${c%% (*}"
t=$(date +%s.%N)
run2 90 tune "${tune_args[@]}" --out "$s/loss-tune" --bind 'tcp://*:5555' --quiet >/dev/null 2>"$s/loss-tune.log" \
    || { show_log "$s/loss-tune.log"; fail "tune with 1 % loss"; }
lt=$(elapsed "$t")
c=$(compare adapter "$s/t2/adapter_model.safetensors" "$s/loss-tune/adapter_model.safetensors" exact) \
    || fail "tune with 1 % loss: $c"
row "1 % loss on node 2, tune (completes)" "—" "—" "— (run took $lt s)" "${c%% (*}, max abs difference 0"
"$bed" clear 2 >/dev/null

# 50 ms delay (cluster/netns.sh delay: netem, else cluster/netdelay.c on an NFQUEUE in the node) on what node 2
# receives, then on what both nodes receive: the jobs must complete with the uninterrupted results. Beside each: the round trip
# nt1 → nt2 (ping -U, 10 × 0.2 s: user to user; without -U ping takes the reply's arrival time from the kernel's
# receive timestamp, which is set before netdelay holds the packet, and misses nt1's delay) and the wall times of two prunes and a tune, the undelayed ones first.
rtt() {
    command -v ping >/dev/null || { echo "no ping"; return; }
    "$bed" exec 1 ping -U -c 10 -i 0.2 -q "$("$bed" addr 2)" | sed -n 's|^rtt min/avg/max/mdev = \([0-9.]*\)/\([0-9.]*\)/\([0-9.]*\)/.*|\2 ms (\1–\3)|p'
}
delayed() {   # NAME LABEL: two prunes and a tune as the bed is now; one row
    local name="$1" label="$2" k t ptimes=() c tt r
    r=$(rtt)
    for k in 1 2; do
        t=$(date +%s.%N)
        run2 120 cluster prune "${prune_args[@]}" --out "$s/$name-$k" --shard samples --bind 'tcp://*:5555' --quiet \
            --dtype f32 >/dev/null 2>"$s/$name-$k.log" || { show_log "$s/$name-$k.log"; fail "$label: prune"; }
        ptimes+=("$(elapsed "$t")")
        c=$(compare plan "$s/single.plan.json" "$s/$name-$k.job/plan.json") || fail "$label: prune: $c"
    done
    t=$(date +%s.%N)
    run2 120 tune "${tune_args[@]}" --out "$s/$name-tune" --bind 'tcp://*:5555' --quiet >/dev/null \
        2>"$s/$name-tune.log" || { show_log "$s/$name-tune.log"; fail "$label: tune"; }
    tt=$(elapsed "$t")
    local ca; ca=$(compare adapter "$s/t2/adapter_model.safetensors" "$s/$name-tune/adapter_model.safetensors" exact) \
        || fail "$label: tune: $ca"
    row "$label, prune ×2 + tune (completes)" "—" "—" "— (ping nt1 → nt2 $r; prunes ${ptimes[*]} s, tune $tt s)" \
        "${c%% (*}; ${ca%% (*}, max abs difference 0"
}
delayed nodelay "no delay (for comparison)"
"$bed" delay 2 50 >/dev/null
delayed delay2 "50 ms delay on what node 2 receives"
"$bed" delay 1 50 >/dev/null
delayed delay12 "50 ms delay on what node 1 and node 2 receive"
"$bed" clear 1 >/dev/null
"$bed" clear 2 >/dev/null
# What netdelay counted (packets, early accepts when its ring was full, receive-buffer overflows); netem: nothing.
for k in 1 2; do
    f="/run/llmprune-netbed-$NETBED_TAG/${NETBED_HOST}$k.netdelay.log"
    [ -s "$f" ] && echo "$self: ${NETBED_HOST}$k: $(cat "$f")" >&2
done

echo
echo "| fault (2 nodes, heartbeat 0.5 s / 2 s) | every process gone after the cut (bound $bound s) | \`cluster status\`: rank 0's end | resume | result |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "$self: done in $(elapsed "$started") s"
