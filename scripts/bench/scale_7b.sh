#!/usr/bin/env bash
# The scale proof (docs/cluster.md §8): Taylor-prune a LLaMA-7B-shaped model (6.74 B parameters, bf16, 13.5 GB on
# disk, 27 GB in fp32: more than this 24 GiB machine) with 4 ranks of 6 GiB each, every rank under a real memory
# limit (cluster/mem-budget.sh: a cgroup per rank).
#   scripts/bench/scale_7b.sh [--dir /work/scale] [--ranks 4] [--budget 6G] [--ratio 0.2] [--shape llama-7b]
# Steps: synth (once; about 5 min and 13.5 GB), the planner's verdict for one process (refused before loading),
# the job on N ranks, the per-rank predicted and measured peaks, bytes moved, parameters, and `llmprune info` of
# the output against the plan. Needs ≈ 25 GB of free disk under --dir.
set -euo pipefail
dir=/work/scale; ranks=4; budget=6G; ratio=0.2; shape=llama-7b
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) dir="$2"; shift 2 ;;
        --ranks) ranks="$2"; shift 2 ;;
        --budget) budget="$2"; shift 2 ;;
        --ratio) ratio="$2"; shift 2 ;;
        --shape) shape="$2"; shift 2 ;;
        *) echo "scale_7b.sh: unknown flag $1" >&2; exit 2 ;;
    esac
done
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
scripts/setup.sh >/dev/null                     # the default model: its tokenizer is copied into the synthetic one
swift build -c release --product llmprune 2>&1 | grep -v "prohibited flag" | tail -n 1 >&2
bin="$root/.build/release/llmprune"
mkdir -p "$dir"
model="$dir/$shape"
if [ ! -f "$model/model.safetensors.index.json" ]; then
    echo "== synth $shape (bf16) → $model" >&2
    /usr/bin/time -f "synth: %e s wall, peak RSS %M KB" "$bin" synth --shape "$shape" --dtype bf16 --seed 7 --out "$model"
fi
# Evict the checkpoint from the page cache so every rank reads (and its cgroup is charged for) its own block.
python3 - "$model" <<'PY'
import glob, os, sys
for f in glob.glob(os.path.join(sys.argv[1], "*.safetensors")):
    fd = os.open(f, os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)
PY
out="$dir/$shape-r$ratio"
flags=(--model "$model" --shard layers --mem-per-rank "$budget" --ratio "$ratio" --force)

echo "== one process under the same budget (the planner must refuse before loading)" >&2
set +e
/usr/bin/time -f "refused after %e s" "$bin" cluster prune "${flags[@]}" --out "$out-single"
status=$?
set -e
echo "exit status $status (2 = refused by the planner)"
[ "$status" -eq 2 ] || { echo "scale_7b.sh: one process was not refused" >&2; exit 1; }
[ ! -e "$out-single" ] && [ ! -e "$out-single.job" ] || { echo "scale_7b.sh: the refused job left output" >&2; exit 1; }

echo "== $ranks ranks × $budget (each rank in its own cgroup)" >&2
/usr/bin/time -f "mpiexec: %e s wall" mpiexec -n "$ranks" "$root/cluster/mem-budget.sh" "$budget" -- \
    "$bin" cluster prune "${flags[@]}" --out "$out"

python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
r = json.load(open(out + ".job/report.json"))
plan = json.load(open(out + ".job/plan.json"))
pred = {p["rank"]: p for p in r["memoryPlan"]["ranks"]}
print("\nrank  layers     predicted GiB  measured VmHWM GiB  ratio   peak phase (predicted)")
worst = 0
for k in r["perRank"]:
    p = pred[k["rank"]]
    ratio = p["peakBytes"] / k["peakRSSBytes"]
    worst = max(worst, abs(ratio - 1))
    print("%4d  %3d..<%-3d %13.2f %19.2f %7.3f   %s" % (k["rank"], p["layerStart"], p["layerEnd"], p["peakBytes"] / 2**30,
          k["peakRSSBytes"] / 2**30, ratio, p["peakPhase"]))
print("worst |predicted/measured − 1| = %.1f %%" % (100 * worst))
ph = r["phases"]
print("wall: %.1f s (importance %.1f s, write %.1f s)" % (r["totalSeconds"], ph["importance"]["seconds"], ph["write"]["seconds"]))
print("bytes moved: importance MPI %.1f MB, plan broadcast %.1f MB, control %.1f MB" % (
      ph["importance"]["mpiBytes"] / 1e6, ph["plan"]["mpiBytes"] / 1e6,
      sum(p["controlBytes"] for p in ph.values()) / 1e6))
print("parameters: %d → %d (%.2f %% kept)" % (r["parametersBefore"], r["parametersAfter"],
      100 * r["parametersAfter"] / r["parametersBefore"]))
PY
info="$("$bin" info --model "$out" --json)"
python3 - "$out" "$info" <<'PY'
import json, sys
plan = json.load(open(sys.argv[1] + ".job/plan.json")); info = json.loads(sys.argv[2])
byLayer = {l["layer"]: l for l in plan["layers"]}
bad = 0
for i, w in enumerate(info["layerWidths"]):
    l = byLayer.get(i)
    want = (len(l["keptQueryHeads"]), len(l["keptKVHeads"]), len(l["keptMLPChannels"])) if l else None
    got = (w["num_attention_heads"], w["num_key_value_heads"], w["intermediate_size"])
    if l and got != want: bad += 1
print("llmprune info: %d parameters (plan: %d); layers whose widths differ from the plan: %d"
      % (info["parameters"], plan["parametersAfter"], bad))
sys.exit(0 if bad == 0 and info["parameters"] == plan["parametersAfter"] else 1)
PY
