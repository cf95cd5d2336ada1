#!/usr/bin/env bash
# Behaviour check for refactors: runs the same SmolLM2 jobs with two llmprune binaries and compares the results
# byte for byte — prune plans (local r=0.25 and r=0.5, global, query-head; one process, `cluster prune` on 2 ranks
# sample-sharded, 3 ranks layer-sharded, 3 ranks low-memory) with their output tensors, and LoRA adapters after 5
# steps (one process and 2 ranks). A binary with --dtype is run with --dtype f32 (what binaries before it wrote).
#   scripts/bench/identical.sh OLD_BIN [NEW_BIN]     (NEW_BIN defaults to this checkout's release build)
# The OLD binary's outputs are cached by its SHA-256 in /tmp/llmprune-identical/, so a second run only reruns NEW.
# Prints one line per case ("same" or what differs) and exits non-zero when anything differs.
set -euo pipefail
old="$(realpath "$1")"
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
model="$(scripts/setup.sh | tail -n 1)"
if [ -n "${2:-}" ]; then new="$(realpath "$2")"; else
    swift build -c release --product llmprune 2>&1 | grep -v "prohibited flag" | tail -n 1 >&2
    new="$root/.build/release/llmprune"
fi
data=/work/shared/data/alpaca/alpaca_data_1k.json
[ -f "$data" ] || data="$(ls "$root"/../shared/data/alpaca/*.json | head -n 1)"
cache=/tmp/llmprune-identical
mkdir -p "$cache"

# run BIN DIR: every case into DIR (skipped when DIR/done exists)
run() {
    local bin="$1" dir="$2"
    [ -f "$dir/done" ] && return 0
    rm -rf "$dir"; mkdir -p "$dir"
    # Binaries without --dtype wrote fp32 (the low-memory shards: the GGUF's float dtype, also fp32 for this Q4_1
    # model); a binary with it (`prune --help` lists it) writes a GGUF's pruned model in bf16 by default, so it is
    # asked for fp32 to compare byte for byte.
    local dtype=() help; help="$("$bin" prune --help)"
    [[ "$help" == *"--dtype"* ]] && dtype=(--dtype f32)
    local common=(--model "$model" --quiet --force "${dtype[@]}")
    "$bin" prune "${common[@]}" --out "$dir/local25" --ratio 0.25
    "$bin" prune "${common[@]}" --out "$dir/local50" --ratio 0.5
    "$bin" prune "${common[@]}" --out "$dir/global50" --ratio 0.5 --allocation global
    "$bin" prune "${common[@]}" --out "$dir/qhead25" --ratio 0.25 --attention-unit query-head
    mpiexec -n 2 "$bin" cluster prune --model "$model" --quiet --out "$dir/samples2" --ratio 0.25 --shard samples \
        --job-dir "$dir/samples2.job" "${dtype[@]}"
    mpiexec -n 3 "$bin" cluster prune --model "$model" --quiet --out "$dir/layers3" --ratio 0.25 --shard layers \
        --job-dir "$dir/layers3.job" "${dtype[@]}"
    mpiexec -n 3 "$bin" cluster prune --model "$model" --quiet --out "$dir/lowmem3" --ratio 0.25 --shard layers \
        --low-memory --job-dir "$dir/lowmem3.job" "${dtype[@]}"
    local tune=(--model "$dir/local25" --data "$data" --steps 5 --batch 8 --micro-batch 4 --cutoff 128 --val-size 8
                --eval-every 1000 --warmup 2 --lr 3e-4 --quiet --force)
    "$bin" tune "${tune[@]}" --out "$dir/lora1" --job-dir "$dir/lora1.job"
    mpiexec -n 2 "$bin" tune "${tune[@]}" --out "$dir/lora2" --job-dir "$dir/lora2.job"
    touch "$dir/done"
}

key="$(sha256sum "$old" | cut -c1-16)"
echo "old outputs: $cache/$key" >&2
run "$old" "$cache/$key" > /dev/null
newdir="$(mktemp -d)"; trap 'rm -rf "$newdir"' EXIT
run "$new" "$newdir" > /dev/null

# same FILE_A FILE_B: byte-equal, or (JSON) equal once the creation time and the run's own directories are dropped.
same() {
    cmp -s "$1" "$2" && return 0
    case "$1" in *.json) ;; *) return 1 ;; esac
    python3 - "$1" "$2" "$cache/$key" "$newdir" <<'PY'
import json, sys
def norm(path, d):
    def drop(o):
        if isinstance(o, dict):
            return {k: drop(v) for k, v in o.items() if k != "created"}
        if isinstance(o, list):
            return [drop(v) for v in o]
        return o.replace(d, "DIR") if isinstance(o, str) else o
    return drop(json.load(open(path)))
sys.exit(0 if norm(sys.argv[1], sys.argv[3]) == norm(sys.argv[2], sys.argv[4]) else 1)
PY
}

fail=0
for case in local25 local50 global50 qhead25 samples2 layers3 lowmem3 lora1 lora2; do
    a="$cache/$key/$case" b="$newdir/$case" diffs=()
    for f in $(cd "$a" && find . -type f \( -name '*.safetensors' -o -name 'adapter_config.json' \) | sort); do
        same "$a/$f" "$b/$f" || diffs+=("${f#./}")
    done
    for f in "$a.plan.json" "$a.job/plan.json"; do
        [ -f "$f" ] || continue
        same "$f" "${f/$a/$b}" || diffs+=("$(basename "$f")")
    done
    [ "$(cd "$a" && find . -type f | sort)" = "$(cd "$b" && find . -type f | sort)" ] || diffs+=("(file list)")
    if [ ${#diffs[@]} -eq 0 ]; then echo "$case: same"; else echo "$case: DIFFERS ${diffs[*]}"; fail=1; fi
done
exit $fail
