#!/usr/bin/env bash
# The whole mission on the default model, on a fresh Debian machine:
#   1. set up (apt packages, the SmolLM2-135M GGUF), build;
#   2. perplexity of the original model (WikiText-2 and PTB, first WINDOWS windows of 128 tokens);
#   3. `mpiexec -n RANKS llmprune cluster prune`: Taylor importance (element1, 10×64 calibration tokens from ptb.valid),
#      ratio 0.25, local allocation, sample-sharded across the ranks, each rank writing its shard of the output;
#   4. `mpiexec -n RANKS llmprune tune`: a short data-parallel LoRA recovery on the Alpaca sample, with perplexity
#      before and after;
#   5. `llmprune report`: one HTML page with the charts, and summary.json.
# Your own model and data (environment variables):
#   MODEL=path/to/model.gguf|hf-dir  DATA=alpaca.json  RATIO=0.25  RANKS=2  STEPS=12  WINDOWS=50  RUN=out/demo
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
start=$(date +%s)
default_model="$(scripts/setup.sh | tail -n 1)"
model="${MODEL:-$default_model}"
data="${DATA:-$(cd "$root/.." && pwd)/shared/data/alpaca/alpaca_data_1k.json}"
ratio="${RATIO:-0.25}" ranks="${RANKS:-2}" steps="${STEPS:-12}" windows="${WINDOWS:-50}"
run="${RUN:-$root/out/demo}"
swift build -c release --product llmprune 2>&1 | grep -v "prohibited flag" | tail -n 1
bin="$root/.build/release/llmprune"
threads=$(( $(nproc) / ranks )); [ "$threads" -ge 1 ] || threads=1
rm -rf "$run"; mkdir -p "$run"
"$bin" info --model "$model" | head -n 5

echo "== 1/4 perplexity of the original model (first $windows windows)"
for ds in wikitext2 ptb; do
    "$bin" eval --model "$model" --dataset "$ds" --max-windows "$windows" --json --quiet > "$run/eval-original-$ds.json"
done
python3 - "$run" <<'PY'
import json, sys
run = sys.argv[1]
ppl = {ds: json.load(open(f"{run}/eval-original-{ds}.json"))["result"]["perplexity"] for ds in ("wikitext2", "ptb")}
json.dump({"perplexity": ppl}, open(f"{run}/baseline.json", "w"), indent=1)
print("   " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(ppl.items())))
PY

echo "== 2/4 mpiexec -n $ranks llmprune cluster prune --ratio $ratio (calibration: ptb.valid)"
mpiexec -n "$ranks" "$bin" cluster prune --model "$model" --out "$run/pruned" --job-dir "$run/prune.job" \
    --ratio "$ratio" --calib ptb-valid --threads "$threads" --quiet

echo "== 3/4 mpiexec -n $ranks llmprune tune: $steps LoRA steps of 16 examples, perplexity before and after"
mpiexec -n "$ranks" "$bin" tune --model "$run/pruned" --data "$data" --out "$run/adapter" --job-dir "$run/tune.job" \
    --steps "$steps" --batch 16 --micro-batch 4 --lr 3e-4 --warmup 2 --val-size 50 --eval wikitext2,ptb \
    --eval-windows "$windows" --threads "$threads"

echo "== 4/4 report"
"$bin" report "$run"
python3 - "$run" "$(( $(date +%s) - start ))" <<'PY'
import json, sys
run, secs = sys.argv[1], int(sys.argv[2])
r = json.load(open(f"{run}/summary.json"))
print()
print(f"parameters  {r['parametersBefore']:,} → {r['parametersAfter']:,} "
      f"({100 * r['parametersAfter'] / r['parametersBefore']:.2f}% kept)")
print("perplexity  original    pruned     tuned")
for ds, v in sorted(r["perplexity"].items()):
    print(f"{ds:10s}  {v.get('original', float('nan')):8.3f}  {v.get('pruned', float('nan')):8.3f}  {v.get('tuned', float('nan')):8.3f}")
loss = [p for p in r["loss"] if p[1] is not None]
if loss:
    print(f"LoRA loss   {loss[0][1]:.4f} → {loss[-1][1]:.4f} over {len(loss)} steps")
print()
print(f"written to {run}:")
for what, path in [("report", "report.html (open in a browser) and summary.json"),
                   ("pruned model", "pruned/ (Hugging Face, one safetensors shard per rank)"),
                   ("prune plan", "prune.job/plan.json (job: prune.job/, trace: prune.job/trace.json)"),
                   ("LoRA adapter", "adapter/ (peft: adapter_config.json, adapter_model.safetensors, loss.csv, loss.svg)"),
                   ("tune job", "tune.job/ (checkpoints, trace.json)")]:
    print(f"  {what:13s} {run}/{path}")
print(f"demo wall time {secs // 60} min {secs % 60} s")
PY
