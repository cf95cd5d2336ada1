#!/usr/bin/env bash
# cluster/slurm.sbatch under a real Slurm: a one-host Slurm (munged, slurmctld, slurmd from Debian's packages,
# installed with apt-get if missing; config cluster/slurm/slurm.conf.in: one node, this host, 2 CPUs) started in a
# scratch directory, then with sbatch on 2 ranks:
#  - a prune, with mpiexec (hydra) and with `srun --mpi=pmi2`: plan = the single-process plan;
#  - a tune, with both launchers: adapter = the one-process adapter;
#  - a prune whose rank 1 is parked in the importance phase (LLMPRUNE_FAULT=stall@1:reduce) when the job is
#    requeued (`scontrol requeue`): the requeued job resumes from its job directory and gives the same plan;
#  - the same inside tune step 4: the resumed adapter equals the uninterrupted one exactly;
#  - a job requeued before its job.json existed starts over (--force) and gives the same plan.
# Skips (status 0, one line) without root or where the packages cannot be installed. Every wait has a timeout; the
# daemons are stopped and the scratch directory removed at the end (the packages stay installed).
# Binary: $LLMPRUNE_BIN, else the release build, else the debug build.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
self="test_slurm"
skip() { echo "$self: skipped: $*"; exit 0; }
fail() { echo "$self: FAIL: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || skip "needs root (to install Slurm and run its daemons)"
for c in python3 timeout flock mpiexec; do command -v "$c" >/dev/null || skip "$c not found"; done
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
    || ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || skip "Slurm is not installed and there is no apt-get to install it"
    timeout 300 apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge \
        >/tmp/$self-apt.log 2>&1 || skip "apt-get install slurmctld slurmd slurm-client munge failed: $(tail -1 /tmp/$self-apt.log)"
    rm -f /tmp/$self-apt.log
fi

bin="${LLMPRUNE_BIN:-}"
if [ -z "$bin" ]; then
    bin="$root/.build/release/llmprune"
    [ -x "$bin" ] || bin="$root/.build/debug/llmprune"
fi
[ -x "$bin" ] || fail "$bin not found (swift build -c release --product llmprune, or set LLMPRUNE_BIN)"

# One run at a time on this host (the ports are fixed).
exec 9>/run/llmprune-slurm.lock
flock -w 240 9 || fail "another $self held /run/llmprune-slurm.lock for 240 s"
ctld_port="${LLMPRUNE_SLURM_PORT:-16817}" slurmd_port=$(( ${LLMPRUNE_SLURM_PORT:-16817} + 1 ))
for p in "$ctld_port" "$slurmd_port"; do
    python3 -c "import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', int(sys.argv[1])))" "$p" 2>/dev/null \
        || fail "port $p is in use (LLMPRUNE_SLURM_PORT=P picks P and P+1)"
done

# Nothing of an outer Slurm job (if this runs inside one) may leak into ours.
while read -r v; do unset "$v"; done < <(env | sed -n 's/^\(SLURM_[A-Z_]*\)=.*/\1/p')

started=$(date +%s.%N)
s="$(mktemp -d /tmp/llmprune-slurm.XXXXXX)"
chmod 755 "$s"   # munged wants its socket's directory and every parent searchable by all
mkdir -p "$s/run" "$s/log" "$s/state" "$s/spool" "$s/munge"
chmod 700 "$s/munge"
host="$(hostname -s)"
export SLURM_CONF="$s/slurm.conf"
sed -e "s|@DIR@|$s|g" -e "s|@HOST@|$host|g" -e "s|@CTLD_PORT@|$ctld_port|g" -e "s|@SLURMD_PORT@|$slurmd_port|g" \
    "$root/cluster/slurm/slurm.conf.in" >"$SLURM_CONF"

elapsed() { python3 -c "import sys; print('%.2f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$(date +%s.%N)"; }
pidof_file() { cat "$1" 2>/dev/null || true; }
show_log() { echo "--- $1 (last 20 lines)" >&2; tail -20 "$1" >&2 || true; }

# Teardown: cancel our jobs and wait for them, stop slurmd, slurmctld and munged by their pid files, then end any
# process still holding a file or its working directory in the scratch directory (a job step's slurmstepd).
stop_pid() {   # PID: TERM, up to 10 s, then KILL
    local p="$1" k
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 0
    kill "$p" 2>/dev/null || true
    for k in $(seq 100); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
}
cleanup() {
    local p k ctld slurmd munged
    ctld=$(pidof_file "$s/run/slurmctld.pid"); slurmd=$(pidof_file "$s/run/slurmd-$host.pid")
    munged=$(pidof_file "$s/run/munged.pid")
    if [ -n "$ctld" ] && kill -0 "$ctld" 2>/dev/null; then
        timeout 10 scancel --full --user=root >/dev/null 2>&1 || true
        for k in $(seq 100); do [ -z "$(timeout 5 squeue -h 2>/dev/null)" ] && break; sleep 0.1; done
    fi
    stop_pid "$slurmd"; stop_pid "$ctld"; stop_pid "$munged"
    for d in /proc/[0-9]*; do
        p="${d#/proc/}"
        [ "$p" = $$ ] && continue
        case "$(readlink "$d/cwd" 2>/dev/null)" in "$s" | "$s"/*) stop_pid "$p"; continue ;; esac
        find "$d/fd" -maxdepth 1 -lname "$s/*" 2>/dev/null | grep -q . && stop_pid "$p"
    done
    [ -n "${KEEP:-}" ] && echo "$self: kept $s" >&2 || rm -rf "$s"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the daemons ---
dd if=/dev/urandom of="$s/munge/munge.key" bs=1024 count=1 status=none
chmod 600 "$s/munge/munge.key"
timeout 10 munged --key-file="$s/munge/munge.key" --socket="$s/run/munge.sock" --pid-file="$s/run/munged.pid" \
    --log-file="$s/log/munged.log" --seed-file="$s/munge/seed" || { show_log "$s/log/munged.log"; fail "munged did not start"; }
timeout 10 munge -n -S "$s/run/munge.sock" | timeout 10 unmunge -S "$s/run/munge.sock" >/dev/null \
    || { show_log "$s/log/munged.log"; fail "munge round trip failed"; }
timeout 20 slurmctld -f "$SLURM_CONF" || { show_log "$s/log/slurmctld.log"; fail "slurmctld did not start"; }
timeout 20 slurmd -f "$SLURM_CONF" || { show_log "$s/log/slurmd-$host.log"; fail "slurmd did not start"; }
for k in $(seq 150); do
    [ "$(timeout 5 sinfo -h -n "$host" -o %T 2>/dev/null)" = idle ] && break
    sleep 0.2
done
[ "$(timeout 5 sinfo -h -n "$host" -o %T 2>/dev/null)" = idle ] || {
    show_log "$s/log/slurmctld.log"; show_log "$s/log/slurmd-$host.log"; fail "node $host not idle 30 s after start: $(sinfo -h -o '%T %E' 2>&1)"; }
echo "  ok Slurm $(sinfo -V | awk '{print $2}') up in $(elapsed "$started") s: node $host, 2 CPUs, ports $ctld_port/$slurmd_port, munge $(munged -V | awk '{print $1}')"

# --- the jobs (those of scripts/test_netns.sh: the tiny model of ClusterFaultTests) ---
for _ in $(seq 40); do echo "the quick brown fox jumps over the lazy dog"; done >"$s/calib.txt"
model="$root/Tests/LlamaModelTests/Resources/tiny.gguf"
prune_args=(--layers 0:3 --calib "$s/calib.txt" --calib-samples 5 --calib-len 8 --criterion element2 --dtype f32)
export LLMPRUNE_DATA="${LLMPRUNE_DATA:-$(dirname "$root")/shared/data}"
alpaca="$LLMPRUNE_DATA/alpaca/alpaca_data_1k.json"
[ -f "$alpaca" ] || alpaca="/work/shared/data/alpaca/alpaca_data_1k.json"
[ -f "$alpaca" ] || fail "alpaca_data_1k.json not found under \$LLMPRUNE_DATA ($LLMPRUNE_DATA)"
tune_args=(--steps 4 --batch 8 --micro-batch 2 --val-size 4 --cutoff 256 --lr 1e-2 --warmup 2 --rank 4 --checkpoint-every 2)
compare() { python3 "$root/scripts/cluster_compare.py" "$@"; }

timeout 60 "$bin" prune --model "$model" "${prune_args[@]}" --out "$s/single" --quiet >/dev/null 2>"$s/single.log" \
    || { show_log "$s/single.log"; fail "single-process prune"; }
timeout 60 "$bin" tune --model "$model" --data "$alpaca" "${tune_args[@]}" --threads 1 --out "$s/t1" --quiet \
    >/dev/null 2>"$s/t1.log" || { show_log "$s/t1.log"; fail "1-process tune"; }

# sbatch NAME JOB LAUNCHER [ENV=VALUE...]: submits cluster/slurm.sbatch on 2 ranks of the node (the #SBATCH sizes
# of the template are for LLaMA-7B; these options override them). Sets jid.
submit() {
    local name="$1" job="$2" launcher="$3"; shift 3
    local args=("${prune_args[@]}")
    [ "$job" = tune ] && args=("${tune_args[@]}")
    jid=$(env "$@" JOB="$job" LAUNCHER="$launcher" MODEL="$model" DATA="$alpaca" OUT="$s/$name" LLMPRUNE_ROOT="$root" \
            LLMPRUNE_BIN="$bin" timeout 20 sbatch --parsable --job-name="$name" --nodes=1 --ntasks=2 \
            --ntasks-per-node=2 --cpus-per-task=1 --mem=0 --time=5 --output="$s/$name.out" \
            "$root/cluster/slurm.sbatch" "${args[@]}") || fail "$name: sbatch failed"
}
state() { timeout 10 scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
field() { timeout 10 scontrol show job "$1" 2>/dev/null | sed -n "s/.* $2=\([^ ]*\).*/\1/p" | head -1; }
wait_done() {   # JID NAME SECONDS: until the job has left the queue; it must have COMPLETED
    local k st=""
    for k in $(seq $(($3 * 5))); do
        st=$(state "$1"); case "$st" in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY) break ;; esac
        sleep 0.2
    done
    [ "$st" = COMPLETED ] || {
        show_log "$s/$2.out"; echo "--- the daemons' lines on job $1" >&2
        grep -h -i -E "JobId=$1 |job $1 |\\[$1\\.|job_id $1" "$s/log/slurmctld.log" "$s/log/slurmd-$host.log" | tail -20 >&2 || true
        fail "$2 (job $1): $st after $3 s, exit code $(field "$1" ExitCode)"; }
}
# Moving a requeued job's StartTime to now skips the 120 s that normally lets the node finish the old run:
# slurmctld reschedules as soon as the epilog-complete message clears the node's COMPLETING flag, but slurmd sends
# that message before it forgets the job, and refuses a launch that comes in between ("Job N already running, do
# not launch second copy"), which fails the job. So: wait for the node to leave COMPLETING, then a second more.
settle() {
    local k
    for k in $(seq 150); do
        timeout 10 scontrol show node "$host" 2>/dev/null | grep -q 'State=[A-Z+_]*COMPLETING' || break
        sleep 0.1
    done
    sleep 1
}
ranks() { ls "$1"/attempt-"$2"/rank-*.json 2>/dev/null | wc -l; }

# 1. prune and tune, with each launcher.
for launcher in hydra srun; do
    t=$(date +%s.%N); submit "p-$launcher" prune "$launcher"; wait_done "$jid" "p-$launcher" 60
    [ "$(ranks "$s/p-$launcher.job" 0)" -eq 2 ] || fail "p-$launcher: not 2 ranks in one world"
    c=$(compare plan "$s/single.plan.json" "$s/p-$launcher.job/plan.json") || fail "sbatch prune ($launcher): $c"
    echo "  ok sbatch prune, $launcher, 2 ranks: job $jid completed in $(elapsed "$t") s (submit to end); $c"
    t=$(date +%s.%N); submit "t-$launcher" tune "$launcher"; wait_done "$jid" "t-$launcher" 60
    [ "$(ranks "$s/t-$launcher.job" 0)" -eq 2 ] || fail "t-$launcher: not 2 ranks in one world"
    c=$(compare adapter "$s/t1/adapter_model.safetensors" "$s/t-$launcher/adapter_model.safetensors") \
        || fail "sbatch tune ($launcher): $c"
    echo "  ok sbatch tune, $launcher, 2 ranks: job $jid completed in $(elapsed "$t") s; $c"
done

# 2. A job requeued while rank 1 is parked inside a phase (LLMPRUNE_FAULT acts on attempt 0 only, so the requeued
#    run is clean). Slurm makes a requeued job eligible only about 120 s later (its BeginTime); the test moves that
#    to now, which is what the wait would end in. LLMPRUNE_SLURM_REQUEUE_WAIT=1 waits it out instead.
requeue() {   # NAME JOB FAULT
    local name="$1" job="$2" fault="$3" k p0 p1 t t0 gone=""
    t0=$(date +%s.%N)
    submit "$name" "$job" hydra LLMPRUNE_FAULT="$fault"
    for k in $(seq 300); do [ -e "$s/$name.job/attempt-0/rank-1.stalled" ] && break; sleep 0.1; done
    [ -e "$s/$name.job/attempt-0/rank-1.stalled" ] || { show_log "$s/$name.out"; fail "$name: rank 1 never reached the stall"; }
    p0=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['pid'])" "$s/$name.job/attempt-0/rank-0.json")
    p1=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['pid'])" "$s/$name.job/attempt-0/rank-1.json")
    t=$(date +%s.%N); at=$(date +%T)
    timeout 10 scontrol requeue "$jid" || fail "$name: scontrol requeue $jid failed"
    for k in $(seq 150); do
        if ! kill -0 "$p0" 2>/dev/null && ! kill -0 "$p1" 2>/dev/null; then gone=1; break; fi
        sleep 0.1
    done
    [ -n "$gone" ] || fail "$name: the ranks still run 15 s after scontrol requeue"
    killed=$(elapsed "$t")
    # PENDING again, and the old batch step finished on the node (its end is logged by slurmd).
    for k in $(seq 150); do
        [ "$(state "$jid")" = PENDING ] && grep -q "\\[$jid\\.batch\\] done with job" "$s/log/slurmd-$host.log" && break
        sleep 0.1
    done
    [ "$(state "$jid")" = PENDING ] || fail "$name: job $jid is $(state "$jid") after the requeue, not PENDING"
    grep -q "\\[$jid\\.batch\\] done with job" "$s/log/slurmd-$host.log" || fail "$name: job $jid's batch step not done 15 s after the requeue"
    begin=$(field "$jid" EligibleTime)
    settle
    if [ -n "${LLMPRUNE_SLURM_REQUEUE_WAIT:-}" ]; then
        wait_done "$jid" "$name" 240
        began=$(field "$jid" StartTime)
    else
        timeout 10 scontrol update JobId="$jid" StartTime=now || fail "$name: scontrol update StartTime=now failed"
        wait_done "$jid" "$name" 60
        began="moved to now"
    fi
    [ "$(field "$jid" Restarts)" = 1 ] || fail "$name: Restarts=$(field "$jid" Restarts), expected 1"
    grep -q "^slurm.sbatch: resuming $s/$name.job (job $jid, restart count 1)" "$s/$name.out" \
        || { show_log "$s/$name.out"; fail "$name: the requeued job did not resume"; }
    [ "$(ranks "$s/$name.job" 1)" -eq 2 ] || fail "$name: attempt 1 did not run on 2 ranks"
    total=$(elapsed "$t0")
}
requeue rq-prune prune stall@1:reduce
c=$(compare plan "$s/single.plan.json" "$s/rq-prune.job/plan.json") || fail "requeued prune: $c"
echo "  ok prune requeued with rank 1 parked in importance (job $jid): ranks gone $killed s after scontrol requeue, requeued at $at, eligible again at ${begin#*T} (started: ${began#*T}), resumed as attempt 1; $total s in all; $c"
requeue rq-tune tune stall@1:step3
c=$(compare adapter "$s/t-hydra/adapter_model.safetensors" "$s/rq-tune/adapter_model.safetensors" exact) \
    || fail "requeued tune: $c"
echo "  ok tune requeued with rank 1 parked at step 4 (job $jid): ranks gone $killed s after scontrol requeue, requeued at $at, eligible again at ${begin#*T} (started: ${began#*T}), resumed as attempt 1; $total s in all; $c"

# 3. Requeued before rank 0 wrote job.json: a job directory without one (made here; a run cut that early leaves the
#    same). The first run refuses it (exit status 2: "exists"), so the job FAILS; requeued, the script runs again
#    with restart count 1 and starts over with --force.
t=$(date +%s.%N)
mkdir -p "$s/rq-early.job/attempt-0"
submit rq-early prune hydra
for k in $(seq 300); do st=$(state "$jid"); [ "$st" = FAILED ] || [ "$st" = COMPLETED ] && break; sleep 0.1; done
[ "$(state "$jid")" = FAILED ] || { show_log "$s/rq-early.out"; fail "rq-early: job $jid is $(state "$jid"), expected FAILED (job directory without job.json)"; }
timeout 10 scontrol requeue "$jid" || fail "rq-early: scontrol requeue $jid failed"
for k in $(seq 150); do [ "$(state "$jid")" = PENDING ] && break; sleep 0.1; done
[ "$(state "$jid")" = PENDING ] || fail "rq-early: job $jid is $(state "$jid") after the requeue, not PENDING"
settle
timeout 10 scontrol update JobId="$jid" StartTime=now || fail "rq-early: scontrol update StartTime=now failed"
wait_done "$jid" rq-early 60
grep -q "^slurm.sbatch: starting $s/rq-early.job (job $jid, restart count 1)" "$s/rq-early.out" \
    || { show_log "$s/rq-early.out"; fail "rq-early: the requeued job did not start over"; }
c=$(compare plan "$s/single.plan.json" "$s/rq-early.job/plan.json") || fail "rq-early: $c"
echo "  ok a job failed on a job directory without job.json, requeued (job $jid): started over with --force, $(elapsed "$t") s in all; $c"

echo "$self: passed in $(elapsed "$started") s (Slurm $(sinfo -V | awk '{print $2}'), one node, sbatch with mpiexec and srun --mpi=pmi2)"
