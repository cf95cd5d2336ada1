# Shared by scripts/test_netns.sh and scripts/bench/netns_faults.sh: the checks that the bed can exist here, the
# binary, the one-at-a-time lock, the scratch directory and its cleanup, a 2-node bed (nt1, nt2), the job of
# ClusterFaultTests and its single-process plan, the comparisons, and cut_node2. The caller sets `root` (the
# repository) and `self` (its name for messages), and `set -euo pipefail`.

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
compare() { python3 "$root/scripts/cluster_compare.py" "$@"; }

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

# Node 2 cut off while its rank is parked inside a phase (LLMPRUNE_FAULT; heartbeats go on until the cut).
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
