#!/usr/bin/env bash
# Memory and time of the importance pass at scale, llmprune against PyTorch, on the same synthetic bf16 model of a
# real shape (default TinyLlama-1.1B: the largest whose PyTorch pass fits this 24 GiB machine), the same calibration
# ids and layers, the same threads, in one run:
#   PyTorch: scripts/reference/importance.py, LLM-Pruner's behaviour (fp32 model, gradients of every parameter);
#   llmprune: `cluster prune --shard layers --low-memory` as one process and as N ranks (bf16 mapped, one layer
#   widened at a time), each run's peak RSS per rank from its report.
# Prints peak RSS, importance time, the loss of both (same ids: they must agree) and the worst relative difference
# of the element1 unit scores (kv-group and MLP channels).
#   scripts/bench/scale_vs_torch.sh [--shape tinyllama-1.1b] [--ranks 4] [--threads 2] [--models DIR]
set -euo pipefail
shape=tinyllama-1.1b; ranks=4; threads=2; models=/tmp/llmprune-synth
while [ $# -gt 0 ]; do
    case "$1" in
        --shape) shape="$2"; shift 2 ;;
        --ranks) ranks="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --models) models="$2"; shift 2 ;;
        *) echo "scale_vs_torch.sh: unknown flag $1" >&2; exit 2 ;;
    esac
done
source "$(dirname "$0")/common.sh"
mkdir -p "$models"
model="$models/$shape"
[ -f "$model/config.json" ] || "$bin" synth --shape "$shape" --dtype bf16 --seed 7 --out "$model" --quiet >&2
flags=(--model "$model" --shard layers --low-memory --ratio 0.2 --quiet --force)

echo "== llmprune, one process, low memory, $threads threads" >&2
"$bin" cluster prune "${flags[@]}" --out "$out/one" --threads "$threads" >/dev/null
echo "== llmprune, $ranks ranks, low memory, $threads threads each (waiting ranks sleep)" >&2
mpiexec -n "$ranks" "$bin" cluster prune "${flags[@]}" --out "$out/many" --threads "$threads" >/dev/null
read -r lo hi < <(calibration_ids "$out/one.job/plan.json" "$model" "$out")
echo "== PyTorch (LLM-Pruner's pass: fp32, every parameter's gradient), layers $lo..<$hi, $threads threads" >&2
LLMPRUNE_VENV="${LLMPRUNE_VENV:-$root/.venv-ref}" scripts/reference/run.sh importance.py --model "$model" \
    --ids-json "$out/ids.json" --layers "$lo" "$hi" --criteria element1 --reductions sum --score-dtype float32 \
    --out "$out/torch.json" --threads "$threads" 2>/dev/null | tail -n 1 > /dev/null

python3 - "$out" "$ranks" <<'PY'
import json, sys
d, n = sys.argv[1], int(sys.argv[2])
t = json.load(open(f"{d}/torch.json"))
one = json.load(open(f"{d}/one.job/report.json")); many = json.load(open(f"{d}/many.job/report.json"))
scores = json.load(open(f"{d}/one.job/scores.json"))["scores"]
worst = 0.0
for s in scores:
    ref = t["scores"][str(s["layer"])]["element1"]["sum"]
    for ours, theirs in ((s["attention"], ref["attention_kv"]), (s["mlp"], ref["mlp"])):
        for a, b in zip(ours, theirs):
            worst = max(worst, abs(a - b) / max(abs(b), 1e-30))
tt = t["timing"]["forward_backward_seconds"] + t["timing"]["scoring_seconds"]
def imp(r): return r["phases"]["importance"]["seconds"]
print("%-36s %12s %14s %10s" % ("", "peak RSS MB", "importance s", "loss"))
print("%-36s %12.0f %14.2f %10.6f" % ("PyTorch (fp32, all gradients)", t["peak_rss_mb"], tt, t["loss"]))
print("%-36s %12.0f %14.2f %10.6f" % ("llmprune, 1 process, low memory", one["perRank"][0]["peakRSSBytes"] / 2**20, imp(one), one["loss"]))
print("%-36s %12s %14.2f %10.6f" % ("llmprune, %d ranks, low memory" % n,
      "/".join("%.0f" % (k["peakRSSBytes"] / 2**20) for k in many["perRank"]), imp(many), many["loss"]))
print("memory: PyTorch / llmprune one process = %.2fx; / largest of %d ranks = %.2fx" % (
      t["peak_rss_mb"] / (one["perRank"][0]["peakRSSBytes"] / 2**20), n,
      t["peak_rss_mb"] / (max(k["peakRSSBytes"] for k in many["perRank"]) / 2**20)))
print("time:   PyTorch / llmprune one process = %.2fx" % (tt / imp(one)))
print("element1 unit scores (kv-group, MLP), worst relative difference vs PyTorch: %.2e" % worst)
PY
