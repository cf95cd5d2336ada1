#!/usr/bin/env bash
# Speed of two llmprune binaries on the three hot paths, interleaved in one run on the same machine and threads:
# forward (`bench`, tokens/s), the importance pass (`plan`, gradient seconds) and LoRA steps (`tune`, tokens/s).
# Each measurement alternates OLD and NEW, `--rounds` times; the median of each is printed with NEW/OLD.
#   scripts/bench/before_after.sh OLD_BIN NEW_BIN [--rounds 3] [--threads 2]
set -euo pipefail
old="$(realpath "$1")" new="$(realpath "$2")"; shift 2
rounds=3 threads=2
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        *) echo "before_after.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
model="$(scripts/setup.sh | tail -n 1)"
data="$root/../shared/data/alpaca/alpaca_data_1k.json"
out="$(mktemp -d)"; trap 'rm -rf "$out"' EXIT
export OPENBLAS_NUM_THREADS="$threads"

measure() {   # measure BIN TAG ROUND
    local bin="$1" tag="$2" r="$3"
    "$bin" bench --model "$model" --batch 8 --seq-len 128 --iters 5 --threads "$threads" --json > "$out/fwd-$tag-$r.json"
    "$bin" plan --model "$model" --plan "$out/plan-$tag.json" --ratio 0.25 --threads "$threads" --json \
        > "$out/imp-$tag-$r.json"
    rm -f "$out/plan-$tag.json"
    "$bin" tune --model "$model" --data "$data" --out "$out/lora-$tag" --job-dir "$out/lora-$tag.job" --steps 3 --batch 8 \
        --micro-batch 4 --cutoff 256 --val-size 0 --warmup 0 --threads "$threads" --json --force > "$out/lora-$tag-$r.json"
    rm -rf "$out/lora-$tag" "$out/lora-$tag.job"
}
for r in $(seq "$rounds"); do
    echo "round $r/$rounds" >&2
    measure "$old" old "$r"
    measure "$new" new "$r"
done

python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
d, rounds = sys.argv[1], int(sys.argv[2])
def med(kind, tag, key):
    vals = []
    for r in range(1, rounds + 1):
        o = json.load(open(f"{d}/{kind}-{tag}-{r}.json"))
        for k in key.split("."):
            o = o[k]
        vals.append(o)
    return statistics.median(vals), vals
rows = [("forward tok/s", "fwd", "tokensPerSecond", True),
        ("importance: gradients s", "imp", "seconds.gradients", False),
        ("LoRA tok/s", "lora", "tokensPerSecond", True)]
for name, kind, key, higher in rows:
    (o, ov), (n, nv) = med(kind, "old", key), med(kind, "new", key)
    ratio = n / o if higher else o / n
    print(f"{name:26s} old {o:9.2f}  new {n:9.2f}  speed new/old {ratio:5.3f}   (old {', '.join(f'{v:.2f}' for v in ov)}; new {', '.join(f'{v:.2f}' for v in nv)})")
PY
