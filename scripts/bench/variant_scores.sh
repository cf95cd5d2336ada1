#!/usr/bin/env bash
# Element1 unit scores of model variants against a PyTorch implementation of LLM-Pruner's pass
# (scripts/reference/importance.py, which runs the model through transformers, so each family's own attention):
# synthetic bf16 tiny-llama3 (llama3 RoPE scaling) and tiny-mistral (sliding window 8 inside 64-token samples),
# prune on 2 layer-sharded low-memory ranks, the same calibration ids in PyTorch, worst relative score difference.
#   scripts/bench/variant_scores.sh
set -euo pipefail
source "$(dirname "$0")/common.sh"
for shape in tiny-llama3 tiny-mistral; do
    m="$out/$shape"
    "$bin" synth --shape "$shape" --dtype bf16 --seed 5 --out "$m" --tokenizer "$model" --quiet --force >&2
    mpiexec -n 2 "$bin" cluster prune --model "$m" --out "$out/$shape-p" --shard layers --low-memory --layers 1:5 \
        --ratio 0.25 --quiet --force > /dev/null
    read -r lo hi < <(calibration_ids "$out/$shape-p.job/plan.json" "$m" "$out")
    LLMPRUNE_VENV="${LLMPRUNE_VENV:-$root/.venv-ref}" scripts/reference/run.sh importance.py --model "$m" \
        --ids-json "$out/ids.json" --layers "$lo" "$hi" --criteria element1 --reductions sum --out "$out/$shape-torch.json" \
        > /dev/null 2>&1
    python3 - "$shape" "$out/$shape-torch.json" "$out/$shape-p.job/scores.json" <<'PY'
import json, sys
shape, t, scores = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))["scores"]
worst, n = 0.0, 0
for s in scores:
    ref = t["scores"][str(s["layer"])]["element1"]["sum"]
    for ours, theirs in ((s["attention"], ref["attention_kv"]), (s["mlp"], ref["mlp"])):
        for a, b in zip(ours, theirs):
            worst = max(worst, abs(a - b) / max(abs(b), 1e-30)); n += 1
print(f"{shape:13s} element1 unit scores, layers {scores[0]['layer']}..{scores[-1]['layer']}: {n} units, worst relative difference {worst:.2e} (loss {t['loss']:.6f})")
PY
done
