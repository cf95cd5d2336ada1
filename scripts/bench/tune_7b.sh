#!/usr/bin/env bash
# The recovery step of the scale proof (docs/pipeline.md, "LoRA tune"): LoRA on a LLaMA-7B-shaped model that no
# rank can hold, with `tune --pipeline P --low-memory` on P·D ranks, every rank under a real memory limit
# (cluster/mem-budget.sh: a cgroup per rank).
#   scripts/bench/tune_7b.sh [--dir /work/scale] [--shape llama-7b] [--model DIR] [--ranks 4] [--pipeline 4]
#                            [--budget 6G] [--steps 4] [--checkpoint-every 2] [--cutoff 64] [--micro-batch 1]
#                            [--batch 4] [--threads 1] [--bin PATH]
# Steps: synth the shape in bf16 (once; or --model: e.g. the pruned output of scale_7b.sh), the planner's verdict
# for one process under the budget (must be refused before loading, exit 2), an uninterrupted run, a run whose last
# rank is killed with SIGKILL after the first checkpoint, its --resume, and the comparison of the two adapters
# (max |Δ|, must be 0: the same ranks, the same order of every sum). Prints tokens/s, predicted vs measured
# (VmHWM) peak per rank, and bytes moved per optimizer step. Needs the whole machine for the 7B shape (4 × 6 GiB);
# with --shape tinyllama-1.1b --budget 1500M it runs in about 6 GiB (how it was proven, docs/pipeline.md).
set -euo pipefail
dir=/work/scale; shape=llama-7b; model=""; ranks=4; pipeline=""; budget=6G; steps=4; every=2; cutoff=64
micro=1; batch=4; threads=1; bin=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) dir="$2"; shift 2 ;;
        --shape) shape="$2"; shift 2 ;;
        --model) model="$2"; shift 2 ;;
        --ranks) ranks="$2"; shift 2 ;;
        --pipeline) pipeline="$2"; shift 2 ;;
        --budget) budget="$2"; shift 2 ;;
        --steps) steps="$2"; shift 2 ;;
        --checkpoint-every) every="$2"; shift 2 ;;
        --cutoff) cutoff="$2"; shift 2 ;;
        --micro-batch) micro="$2"; shift 2 ;;
        --batch) batch="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --bin) bin="$2"; shift 2 ;;
        *) echo "tune_7b.sh: unknown flag $1" >&2; exit 2 ;;
    esac
done
pipeline="${pipeline:-$ranks}"
[ "$every" -lt "$steps" ] || { echo "tune_7b.sh: --checkpoint-every must be below --steps (a kill after a checkpoint)" >&2; exit 2; }
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
if [ -z "$bin" ]; then
    scripts/setup.sh >/dev/null                 # the default model: its tokenizer is copied into the synthetic one
    swift build -c release --product llmprune 2>&1 | grep -v "prohibited flag" | tail -n 1 >&2
    bin="$root/.build/release/llmprune"
fi
mkdir -p "$dir"
if [ -z "$model" ]; then
    model="$dir/$shape"
    if [ ! -f "$model/config.json" ]; then
        echo "== synth $shape (bf16) → $model" >&2
        /usr/bin/time -f "synth: %e s wall, peak RSS %M KB" "$bin" synth --shape "$shape" --dtype bf16 --seed 7 --out "$model"
    fi
fi
data="${LLMPRUNE_DATA:-/work/shared/data}/alpaca/alpaca_data_1k.json"
out="$dir/$(basename "$model")-lora"
flags=(--model "$model" --data "$data" --steps "$steps" --batch "$batch" --micro-batch "$micro" --cutoff "$cutoff"
       --val-size 0 --warmup 1 --lr 1e-3 --threads "$threads" --checkpoint-every "$every" --mem-per-rank "$budget"
       --low-memory --train-on-inputs --quiet --json)
# --train-on-inputs: every token is scored, so a short --cutoff still leaves each step a loss (the Alpaca prompt
# alone is longer than 32 tokens; without it such a step has nothing to learn from).
rm -rf "$out-single" "$out-single.job" "$out" "$out.job" "$out-cut" "$out-cut.job"

echo "== one process under the same budget (the planner must refuse before loading)" >&2
set +e
/usr/bin/time -f "refused after %e s" "$bin" tune "${flags[@]}" --out "$out-single"
status=$?
set -e
echo "exit status $status (2 = refused by the planner)"
[ "$status" -eq 2 ] || { echo "tune_7b.sh: one process was not refused" >&2; exit 1; }
[ ! -e "$out-single" ] && [ ! -e "$out-single.job" ] || { echo "tune_7b.sh: the refused job left output" >&2; exit 1; }

run() {   # run OUT [extra env...]: the job on $ranks ranks, each in its own cgroup
    local o="$1"; shift
    env "$@" mpiexec -n "$ranks" "$root/cluster/mem-budget.sh" -q "$budget" -- \
        "$bin" tune "${flags[@]}" --pipeline "$pipeline" --out "$o"
}
echo "== $ranks ranks ($pipeline stages) × $budget, uninterrupted" >&2
t0=$SECONDS
run "$out" > "$out.report.json"
echo "mpiexec: $((SECONDS - t0)) s wall"

echo "== the same, the last rank killed (SIGKILL) after the checkpoint at step $every, then --resume" >&2
victim=$((pipeline - 1))
set +e
run "$out-cut" LLMPRUNE_FAULT="stall@$victim:step$every" > /dev/null 2> "$out-cut.log" &
job=$!
set -e
for _ in $(seq 1 36000); do [ -e "$out-cut.job/attempt-0/rank-$victim.stalled" ] && break; sleep 0.1; done
[ -e "$out-cut.job/attempt-0/rank-$victim.stalled" ] || { echo "tune_7b.sh: rank $victim never reached step $every" >&2; exit 1; }
pid=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['pid'])" "$out-cut.job/attempt-0/rank-$victim.json")
kill -9 "$pid"
set +e; wait "$job"; echo "killed run: exit status $?"; set -e
python3 -c "import json,sys; c=json.load(open(sys.argv[1])); print('checkpoint at step', c['step'], 'with', c['pipeline'], 'stages')" \
    "$out-cut.job/checkpoint.json"
t0=$SECONDS
mpiexec -n "$ranks" "$root/cluster/mem-budget.sh" -q "$budget" -- \
    "$bin" tune --resume "$out-cut.job" --quiet --json > "$out-cut.report.json"
echo "resume: $((SECONDS - t0)) s wall"

python3 - "$out" "$out-cut" <<'PY'
import json, struct, sys
def tensors(d):      # F32 safetensors: {name: [floats]}
    raw = open(d + "/adapter_model.safetensors", "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]; head = json.loads(raw[8:8 + n]); body = raw[8 + n:]
    return {k: struct.unpack("<%df" % ((v["data_offsets"][1] - v["data_offsets"][0]) // 4),
                             body[v["data_offsets"][0]:v["data_offsets"][1]])
            for k, v in head.items() if k != "__metadata__"}
clean, cut = sys.argv[1], sys.argv[2]
a, b = tensors(clean), tensors(cut)
assert a.keys() == b.keys(), "different adapter tensors"
worst = max(abs(x - y) for k in a for x, y in zip(a[k], b[k]))
r = json.load(open(clean + ".report.json")); q = json.load(open(cut + ".report.json"))
print("\nadapter after kill -9 + resume vs uninterrupted: max |Δ| = %g over %d parameters (resumed at step %d)"
      % (worst, r["adapterParameters"], q["resumedAtStep"]))
print("loss %s → %s over %d steps; %.2f tokens/s (%d tokens, %.1f s)" % (r.get("firstLoss"), r.get("lastLoss"), r["steps"],
      r["tokensPerSecond"], r["tokens"], r["seconds"]))
p = r["pipeline"]
print("\n%d stages × %d replicas%s" % (p["stages"], p["replicas"], ", low memory" if p["lowMemory"] else ""))
print("rank  stage  layers     predicted GiB  VmHWM GiB  predicted/measured  activations GiB  MB moved/step")
worst_ratio = 0
for k in p["ranks"]:
    ratio = k["predictedPeakBytes"] / k["measuredPeakBytes"]
    worst_ratio = max(worst_ratio, abs(ratio - 1))
    print("%4d  %5d  %3d..<%-3d %13.3f %10.3f %19.3f %16.3f %14.2f" % (k["rank"], k["stage"], k["layerStart"],
          k["layerEnd"], k["predictedPeakBytes"] / 2**30, k["measuredPeakBytes"] / 2**30, ratio,
          k["activationPeakBytes"] / 2**30, k["bytesPerStep"] / 1e6))
print("worst |predicted/measured − 1| = %.1f %%" % (100 * worst_ratio))
if worst != 0:
    sys.exit("tune_7b.sh: the resumed adapter differs from the uninterrupted one")
PY
