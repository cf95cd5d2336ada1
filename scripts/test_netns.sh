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
skip() { echo "$self: skipped: $*"; exit 0; }
fail() { echo "$self: FAIL: $*" >&2; exit 1; }

# The test's own bed (names, subnet, state), apart from one a user may have up with the defaults.
export NETBED_TAG=lpnbt NETBED_HOST=nt NETBED_SUBNET="${NETBED_SUBNET:-10.77.1}"
bed="$root/cluster/netns.sh"

[ "$(id -u)" -eq 0 ] || skip "needs root for network namespaces"
for c in ip nsenter unshare mpiexec python3 timeout; do command -v "$c" >/dev/null || skip "$c not found"; done
if ! command -v tcpdump >/dev/null; then   # the sniffer of step 1
    command -v apt-get >/dev/null || skip "tcpdump not found and no apt-get to install it"
    timeout 300 apt-get install -y -q tcpdump >/dev/null 2>&1 || fail "apt-get install tcpdump failed"
fi
probe="nbprobe$$"   # interface names: at most 15 characters
ip netns add "$probe" 2>/dev/null || skip "this kernel or container does not allow network namespaces (ip netns add failed)"
ip netns del "$probe"
ip link add "$probe" type bridge 2>/dev/null || skip "this kernel or container does not allow bridges (ip link add type bridge failed)"
ip link del "$probe"

bin="${LLMPRUNE_BIN:-}"
if [ -z "$bin" ]; then
    bin="$root/.build/release/llmprune"
    [ -x "$bin" ] || bin="$root/.build/debug/llmprune"
fi
[ -x "$bin" ] || fail "$bin not found (swift build -c release --product llmprune, or set LLMPRUNE_BIN)"

# One run at a time on this host (other checkouts run scripts/test.sh too): a second `up` would take this bed down.
command -v flock >/dev/null || skip "flock not found"
exec 9>"/run/llmprune-netbed-$NETBED_TAG.lock"
flock -w 240 9 || fail "another scripts/test_netns.sh held /run/llmprune-netbed-$NETBED_TAG.lock for 240 s"

started=$(date +%s.%N)
s="$(mktemp -d /tmp/llmprune-netns.XXXXXX)"
job_pid=""
sniff_pid=""
cleanup() {
    [ -n "$job_pid" ] && kill -9 "$job_pid" 2>/dev/null || true
    [ -n "$sniff_pid" ] && kill "$sniff_pid" 2>/dev/null || true
    "$bed" down || true
    rm -rf "$s"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

elapsed() { python3 -c "import sys; print('%.2f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$(date +%s.%N)"; }
# A process counts as gone once it is no more or a zombie (its parent has not reaped it yet).
alive() {
    local st
    st="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    [ "$(sed 's/.*) //' <<<"$st" | cut -d' ' -f1)" != Z ]
}
node_procs() { ip netns pids "$NETBED_TAG-$NETBED_HOST$1" 2>/dev/null | wc -l; }
rank_pid() { python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['pid'])" "$1"; }
bytes() { "$bed" bytes "$1"; }
wire() {   # "nt1 rx/tx …, nt2 rx/tx …" between two `bytes` snapshots per node
    local a1="$1" a2="$2" b1="$3" b2="$4"
    python3 -c "import sys
a1, a2, b1, b2 = (list(map(int, x.split())) for x in sys.argv[1:])
print('wire: nt1 rx %d tx %d B, nt2 rx %d tx %d B' % (b1[0] - a1[0], b1[1] - a1[1], b2[0] - a2[0], b2[1] - a2[1]))" \
        "$a1" "$a2" "$b1" "$b2"
}
show_log() { echo "--- $1 (last 20 lines)" >&2; tail -20 "$1" >&2; }

# The comparisons of Tests/CLITests: same kept units, scores within 1e-5 relative, same parameter count and
# calibration; adapters within 1e-5 absolute (exactly equal with --exact).
cat >"$s/compare.py" <<'PY'
import json, struct, sys

def plan(a, b):
    p, q = json.load(open(a)), json.load(open(b))
    assert len(p["layers"]) == len(q["layers"]), "layer counts differ"
    worst = 0.0
    for x, y in zip(p["layers"], q["layers"]):
        assert x["layer"] == y["layer"]
        for k in ("keptKVHeads", "keptQueryHeads", "keptMLPChannels"):
            assert x[k] == y[k], "layer %d: %s differs" % (x["layer"], k)
        for k in ("attentionScores", "mlpScores"):
            assert len(x[k]) == len(y[k])
            for u, v in zip(x[k], y[k]):
                worst = max(worst, abs(u - v) / max(abs(u), 1e-30))
    assert worst < 1e-5, "worst relative score difference %g" % worst
    assert p["parametersAfter"] == q["parametersAfter"], "parametersAfter differs"
    assert p["calibration"]["offsets"] == q["calibration"]["offsets"], "calibration differs"
    print("plan equal (%d layers, %d parameters after, worst relative score difference %.1e)"
          % (len(p["layers"]), p["parametersAfter"], worst))

def tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in head.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", "%s: %s" % (name, t["dtype"])
        lo, hi = t["data_offsets"]
        out[name] = struct.unpack("<%df" % ((hi - lo) // 4), data[lo:hi])
    return out

def adapter(a, b, exact):
    x, y = tensors(a), tensors(b)
    assert sorted(x) == sorted(y) and x, "tensor names differ"
    worst = max(abs(u - v) for k in x for u, v in zip(x[k], y[k]))
    assert (worst == 0) if exact else (worst <= 1e-5), "max |difference| %g" % worst
    print("adapter equal (%d tensors, %d values, max |difference| %.1e)"
          % (len(x), sum(len(v) for v in x.values()), worst))

def report(path, kind):
    r = json.load(open(path))
    if kind == "prune":
        ph = r["phases"]
        print("report: MPI %d B, control %d B (%s); hosts %s" % (
            sum(p["mpiBytes"] for p in ph.values()), sum(p["controlBytes"] for p in ph.values()),
            ", ".join("%s %d/%d" % (k, ph[k]["mpiBytes"], ph[k]["controlBytes"]) for k in sorted(ph)),
            ",".join(p["host"] for p in r["perRank"])))
    else:
        print("report: allreduce %d B over %d ranks" % (r["allreduceBytes"], r["ranks"]))

try:
    if sys.argv[1] == "plan": plan(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "adapter": adapter(sys.argv[2], sys.argv[3], len(sys.argv) > 4)
    else: report(sys.argv[2], sys.argv[3])
except AssertionError as e:
    print("differs: %s" % e)
    sys.exit(1)
PY
compare() { python3 "$s/compare.py" "$@"; }

"$bed" up 2 >/dev/null
hosts="${NETBED_HOST}1,${NETBED_HOST}2"
run2() { timeout "$1" "$bed" mpiexec -n 2 -ppn 1 -hosts "$hosts" "$bin" "${@:2}"; }

# The job of Tests/CLITests/ClusterFaultTests.swift: tiny model, scored layers 0..<3, 5 samples of 8 tokens.
for _ in $(seq 40); do echo "the quick brown fox jumps over the lazy dog"; done >"$s/calib.txt"
prune_args=(--model "$root/Tests/LlamaModelTests/Resources/tiny.gguf" --layers 0:3 --calib "$s/calib.txt"
            --calib-samples 5 --calib-len 8 --criterion element2)
export LLMPRUNE_DATA="${LLMPRUNE_DATA:-$(dirname "$root")/shared/data}"
alpaca="$LLMPRUNE_DATA/alpaca/alpaca_data_1k.json"
[ -f "$alpaca" ] || alpaca="/work/shared/data/alpaca/alpaca_data_1k.json"
[ -f "$alpaca" ] || fail "alpaca_data_1k.json not found under \$LLMPRUNE_DATA ($LLMPRUNE_DATA)"
tune_args=(--model "$root/Tests/LlamaModelTests/Resources/tiny.gguf" --data "$alpaca" --steps 4 --batch 8
           --micro-batch 2 --val-size 4 --cutoff 256 --lr 1e-2 --warmup 2 --rank 4 --threads 1 --checkpoint-every 2)
# Cut faults are detected after 1–1.5 s of silence; every command stays short.
hb=(--heartbeat-interval 0.5 --heartbeat-timeout 2)
bound=12   # heartbeat timeout + 10 s

timeout 60 "$bin" prune "${prune_args[@]}" --out "$s/single" --quiet --dtype f32 >/dev/null 2>"$s/single.log" \
    || { show_log "$s/single.log"; fail "single-process prune"; }

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

# 3. Node 2 cut off while its rank is parked inside a phase (LLMPRUNE_FAULT; heartbeats go on until the cut).
#    Sets cut_secs (cut → every process on both nodes gone).
cut_node2() {   # NAME JOBDIR COMMAND...
    local name="$1" job="$2"; shift 2
    local k p0 p1 t gone=""
    "$@" >"$s/$name.out" 2>"$s/$name.log" &
    job_pid=$!
    for k in $(seq 600); do [ -e "$job/attempt-0/rank-1.stalled" ] && break; sleep 0.05; done
    [ -e "$job/attempt-0/rank-1.stalled" ] || { show_log "$s/$name.log"; fail "$name: rank 1 never reached the stall"; }
    p0=$(rank_pid "$job/attempt-0/rank-0.json"); p1=$(rank_pid "$job/attempt-0/rank-1.json")
    "$bed" cut 2
    t=$(date +%s.%N)
    for k in $(seq $((bound * 20))); do
        if ! alive "$p0" && ! alive "$p1" && [ "$(node_procs 1)" -eq 0 ] && [ "$(node_procs 2)" -eq 0 ]; then
            gone=1; break
        fi
        sleep 0.05
    done
    cut_secs=$(elapsed "$t")
    [ -n "$gone" ] || {
        show_log "$s/$name.log"
        fail "$name: $bound s after the cut: rank 0 $(alive "$p0" && echo alive || echo gone), rank 1 $(alive "$p1" && echo alive || echo gone), processes left on nt1: $(node_procs 1), nt2: $(node_procs 2)"
    }
    # mpiexec itself is on the bed's host side; it must be done too.
    for k in $(seq 100); do kill -0 "$job_pid" 2>/dev/null || break; sleep 0.05; done
    kill -0 "$job_pid" 2>/dev/null && fail "$name: mpiexec still running after every rank ended"
    job_pid=""
    "$bed" restore 2
}

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
run2 90 tune --resume "$s/g.job" --bind 'tcp://*:5555' --quiet >/dev/null 2>"$s/g-resume.log" \
    || { show_log "$s/g-resume.log"; fail "tune resume after the cut"; }
c=$(compare adapter "$s/t2/adapter_model.safetensors" "$s/g/adapter_model.safetensors" exact) || fail "resumed tune: $c"
echo "  ok tune resumed on 2 nodes in $(elapsed "$t") s: $c"

echo "$self: passed in $(elapsed "$started") s (2 nodes over bridge ${NETBED_TAG}0, $NETBED_SUBNET.0/24)"
