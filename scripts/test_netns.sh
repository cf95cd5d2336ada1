#!/usr/bin/env bash
# The cluster jobs across two "nodes" of the cluster/netns.sh test bed (network namespaces on a bridge, each with
# its own host name, boot id and /dev/shm), so MPI and the control plane cross real interfaces:
#  - `cluster prune` on 2 nodes, --shard samples and --shard layers: plan = the single-process plan;
#  - `tune` on 2 nodes: adapter = the one-process adapter;
#  - a sniffer on the bridge (tcpdump) sees no job token during a 2-node prune with the default flags (CURVE is on
#    for a --bind beyond loopback, and the token crosses MPI sealed), and does see it with --insecure;
#  - node 2 cut off the network in the middle of the importance phase (and of a tune step): every process on both
#    nodes is gone within the heartbeat timeout + 10 s, `cluster status` names the cause, and --resume gives the
#    single-process plan (the uninterrupted adapter).
# Prints the bytes each node's interface moved next to the run's own MPI / control accounting.
# Skips (status 0, one line) where the kernel or the user cannot make namespaces. Binary: $LLMPRUNE_BIN, else the
# release build, else the debug build. Every command has a timeout; the bed is always taken down.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
self="test_netns"
# shellcheck source=scripts/netns_common.sh
source "$root/scripts/netns_common.sh"


# The sniffer: every packet on the bridge (so both nodes' MPI and control traffic, and hydra's) into a file.
sniff_start() {   # FILE
    tcpdump -i "${NETBED_TAG}0" -s 0 -U -w "$1" >/dev/null 2>"$1.log" &
    sniff_pid=$!
    for _ in $(seq 100); do grep -q "listening on" "$1.log" 2>/dev/null && return; sleep 0.05; done
    fail "tcpdump on ${NETBED_TAG}0 did not start: $(cat "$1.log")"
}
sniff_stop() { kill -INT "$sniff_pid"; wait "$sniff_pid" 2>/dev/null || true; sniff_pid=""; }
# How often the attempt's token (attempt-0/token) is in the capture: whole, or either half of it (a token
# split between two TCP segments still leaves one half whole in one of them).
token_hits() {   # PCAP JOBDIR
    python3 - "$1" "$2/attempt-0/token" <<'PY'
import sys
cap, tok = open(sys.argv[1], "rb").read(), open(sys.argv[2]).read().strip().encode()
assert len(tok) == 64, "token file: %r" % tok
print(max(cap.count(tok), cap.count(tok[:32]), cap.count(tok[32:])), len(cap))
PY
}

# 1. Prune on two nodes, both shardings, with the default flags; the sniffer watches the samples run.
for shard in samples layers; do
    a1=$(bytes 1); a2=$(bytes 2)
    [ "$shard" = samples ] && sniff_start "$s/secure.pcap"
    t=$(date +%s.%N)
    run2 90 cluster prune "${prune_args[@]}" --out "$s/p-$shard" --shard "$shard" --bind 'tcp://*:5555' --json \
        --dtype f32 >"$s/p-$shard.json" 2>"$s/p-$shard.log" || { show_log "$s/p-$shard.log"; fail "2-node prune --shard $shard"; }
    secs=$(elapsed "$t")
    [ "$shard" = samples ] && sniff_stop
    w=$(wire "$a1" "$a2" "$(bytes 1)" "$(bytes 2)")
    c=$(compare plan "$s/single.plan.json" "$s/p-$shard.job/plan.json") || fail "2-node prune --shard $shard: $c"
    echo "  ok 2-node prune --shard $shard in $secs s: $c; $w; $(compare report "$s/p-$shard.json" prune)"
    grep -q "\"host\" *: *\"${NETBED_HOST}2\"" "$s/p-$shard.job/attempt-0/rank-1.json" \
        || fail "rank 1 did not run on ${NETBED_HOST}2"
done

# The token in clear text? Not with the defaults; with --insecure, yes (so the search does see it when it is there).
read -r hits capbytes < <(token_hits "$s/secure.pcap" "$s/p-samples.job")
[ "$hits" -eq 0 ] || fail "default flags: the job token is in the bridge capture $hits time(s)"
sniff_start "$s/insecure.pcap"
run2 90 cluster prune "${prune_args[@]}" --out "$s/p-insecure" --shard samples --bind 'tcp://*:5555' --insecure \
    --dtype f32 --quiet >/dev/null 2>"$s/p-insecure.log" || { show_log "$s/p-insecure.log"; fail "2-node prune --insecure"; }
sniff_stop
read -r ihits icapbytes < <(token_hits "$s/insecure.pcap" "$s/p-insecure.job")
[ "$ihits" -gt 0 ] || fail "--insecure: the job token is not in the bridge capture, so the search cannot be trusted"
echo "  ok sniffer on ${NETBED_TAG}0: job token 0 times in $capbytes B captured with the default flags, $ihits times in $icapbytes B with --insecure"

# 2. Tune: one process, then two nodes.
timeout 60 "$bin" tune "${tune_args[@]}" --out "$s/t1" --quiet >/dev/null 2>"$s/t1.log" \
    || { show_log "$s/t1.log"; fail "1-process tune"; }
a1=$(bytes 1); a2=$(bytes 2); t=$(date +%s.%N)
run2 90 tune "${tune_args[@]}" --out "$s/t2" --bind 'tcp://*:5555' --json --quiet >"$s/t2.json" 2>"$s/t2.log" \
    || { show_log "$s/t2.log"; fail "2-node tune"; }
secs=$(elapsed "$t")
w=$(wire "$a1" "$a2" "$(bytes 1)" "$(bytes 2)")
c=$(compare adapter "$s/t1/adapter_model.safetensors" "$s/t2/adapter_model.safetensors") || fail "2-node tune: $c"
echo "  ok 2-node tune in $secs s: $c; $w; $(compare report "$s/t2.json" tune)"

# 3. Node 2 cut off while its rank is parked inside a phase: cut_node2 (scripts/netns_common.sh).

cut_node2 cut-importance "$s/f.job" env LLMPRUNE_FAULT=stall@1:reduce timeout 60 "$bed" mpiexec -n 2 -ppn 1 \
    -hosts "$hosts" "$bin" cluster prune "${prune_args[@]}" --out "$s/f" --shard samples --bind 'tcp://*:5555' "${hb[@]}" --dtype f32
st=$(timeout 20 "$bin" cluster status "$s/f.job") || fail "cluster status after the cut"
grep -q "rank 1 lost: no heartbeat" <<<"$st" || fail "cluster status does not name the lost rank: $st"
grep -q "coordinator lost" <<<"$st" || fail "cluster status does not show rank 1's own end: $st"
echo "  ok node 2 cut during importance: every process on both nodes gone ${cut_secs} s after the cut (bound $bound s); status: $(grep '^cause' <<<"$st")"
t=$(date +%s.%N)
run2 90 cluster prune --resume "$s/f.job" --bind 'tcp://*:5555' --quiet >/dev/null 2>"$s/f-resume.log" \
    || { show_log "$s/f-resume.log"; fail "resume after the cut"; }
c=$(compare plan "$s/single.plan.json" "$s/f.job/plan.json") || fail "resumed prune: $c"
echo "  ok resumed on 2 nodes in $(elapsed "$t") s: $c"

cut_node2 cut-tune "$s/g.job" env LLMPRUNE_FAULT=stall@1:step3 timeout 60 "$bed" mpiexec -n 2 -ppn 1 \
    -hosts "$hosts" "$bin" tune "${tune_args[@]}" --out "$s/g" --bind 'tcp://*:5555' "${hb[@]}" --quiet
st=$(timeout 20 "$bin" cluster status "$s/g.job") || fail "cluster status after the cut during tune"
grep -q "rank 1 lost: no heartbeat" <<<"$st" || fail "cluster status does not name the lost rank: $st"
grep -q "coordinator lost" <<<"$st" || fail "cluster status does not show rank 1's own end: $st"
echo "  ok node 2 cut during tune step 4: every process on both nodes gone ${cut_secs} s after the cut (bound $bound s); status: $(grep '^cause' <<<"$st")"
t=$(date +%s.%N)
# The resume is given the first launch's run-time options (as cluster/lib.sh does): --threads is not part of the
# job, and OpenBLAS' kernels may round differently with another thread count (its Haswell kernels, which
# OPENBLAS_CORETYPE=Haswell selects: a 1- and a 2-thread tune differ by 1.2e-6; resumed at 2 threads, 2.9e-7).
run2 90 tune --resume "$s/g.job" --bind 'tcp://*:5555' --threads 1 --quiet >/dev/null 2>"$s/g-resume.log" \
    || { show_log "$s/g-resume.log"; fail "tune resume after the cut"; }
c=$(compare adapter "$s/t2/adapter_model.safetensors" "$s/g/adapter_model.safetensors" exact) || fail "resumed tune: $c"
echo "  ok tune resumed on 2 nodes in $(elapsed "$t") s: $c"

echo "$self: passed in $(elapsed "$started") s (2 nodes over bridge ${NETBED_TAG}0, $NETBED_SUBNET.0/24)"
