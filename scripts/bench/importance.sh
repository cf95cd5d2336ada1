#!/usr/bin/env bash
# The importance pass (10×64 calibration forward + backward + element1 scores over layers 4..L-2) and the whole
# prune, llmprune vs a PyTorch implementation of the same pass (scripts/reference/importance.py, LLM-Pruner's
# formulas), same model, machine, threads and calibration ids, in one run. Prints times, the ratio, peak RSS
# of both, and both losses (they must agree: same ids, same model).
#   scripts/bench/importance.sh [--model PATH] [--threads 2] [--ratio 0.25]
set -euo pipefail
model="" threads=2 ratio=0.25
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --ratio) ratio="$2"; shift 2 ;;
        *) echo "importance.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
source "$(dirname "$0")/common.sh"

echo "== llmprune: plan (importance pass) and whole prune, $threads threads" >&2
$bin plan --model "$model" --plan "$out/plan.json" --ratio "$ratio" --threads "$threads" --json > "$out/plan_report.json"
$bin prune --model "$model" --out "$out/pruned" --ratio "$ratio" --threads "$threads" --json > "$out/prune_report.json"
read -r lo hi < <(calibration_ids "$out/plan.json" "$model" "$out")
echo "== PyTorch: the same pass on the same ids, layers $lo..$hi, $threads threads" >&2
LLMPRUNE_VENV="${LLMPRUNE_VENV:-$root/.venv-ref}" scripts/reference/run.sh importance.py --model "$model" \
    --ids-json "$out/ids.json" --layers "$lo" "$hi" --criteria element1 --reductions sum --time-only \
    --threads "$threads" 2>/dev/null | tail -n 1 > "$out/torch.json"

python3 - "$out" <<'PY'
import json, sys
d = sys.argv[1]
p = json.load(open(f"{d}/plan_report.json")); w = json.load(open(f"{d}/prune_report.json")); t = json.load(open(f"{d}/torch.json"))
ours = p["seconds"]["gradients"] + p["seconds"]["scoring"]
theirs = t["timing"]["forward_backward_seconds"] + t["timing"]["scoring_seconds"]
print(f"importance pass  llmprune {ours:7.2f} s   pytorch {theirs:7.2f} s   ratio {theirs / ours:5.2f}x  (pytorch / llmprune)")
print(f"  llmprune       gradients {p['seconds']['gradients']:.2f} s, scoring {p['seconds']['scoring']:.2f} s, activations {p['peakActivationMB']:.0f} MB")
print(f"  pytorch        forward+backward {t['timing']['forward_backward_seconds']:.2f} s, scoring {t['timing']['scoring_seconds']:.2f} s")
print(f"whole prune      llmprune {w['seconds']['total']:7.2f} s (load {w['seconds']['load']:.2f}, importance {w['seconds']['gradients'] + w['seconds']['scoring']:.2f}, apply {w['seconds']['apply']:.2f}, export {w['seconds']['export']:.2f});"
      f" pytorch importance incl. its load {t['timing']['load_seconds'] + theirs:.2f} s")
print(f"peak RSS         llmprune {w['peakRSSMB']:7.0f} MB   pytorch {t['peak_rss_mb']:7.0f} MB")
print(f"loss             llmprune {p['loss']:.6f}   pytorch {t['loss']:.6f}   (same ids)")
PY
