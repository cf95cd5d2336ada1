#!/usr/bin/env bash
# Output dtype on SmolLM2: `llmprune prune --ratio R --dtype D` for D = f32, bf16, f16 (same settings, so the same
# plan), then the size of each output and `llmprune eval` perplexity of each output directory (LLM-Pruner's 128-token
# protocol; full test files unless --max-windows). Prints one table: bytes of weights, share of the fp32 output,
# perplexity per dataset and its relative difference to fp32. Checks that the three runs made the same plan and that
# bf16 weights take at most 55% of fp32's bytes.
#   scripts/bench/dtype.sh [--model PATH] [--ratio 0.25] [--datasets wikitext2,ptb] [--threads T] [--max-windows N]
set -euo pipefail
model="" ratio=0.25 datasets="wikitext2,ptb" threads="" maxw=""
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --ratio) ratio="$2"; shift 2 ;;
        --datasets) datasets="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --max-windows) maxw="$2"; shift 2 ;;
        *) echo "dtype.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
source "$(dirname "$0")/common.sh"
run=(); [ -n "$threads" ] && run=(--threads "$threads")
evalx=(); [ -n "$maxw" ] && evalx=(--max-windows "$maxw")
for d in f32 bf16 f16; do
    echo "== prune --ratio $ratio --dtype $d" >&2
    "$bin" prune --model "$model" --out "$out/$d" --ratio "$ratio" --dtype "$d" --quiet --json "${run[@]}" > "$out/prune_$d.json"
    for ds in ${datasets//,/ }; do
        echo "== eval $d on $ds" >&2
        "$bin" eval --model "$out/$d" --dataset "$ds" --json --quiet "${run[@]}" "${evalx[@]}" > "$out/eval_${d}_$ds.json"
    done
done
python3 - "$out" "$model" "$ratio" ${datasets//,/ } <<'PY'
import json, os, sys
d, model, ratio, sets = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
def plan(t):
    p = json.load(open(f"{d}/{t}.plan.json"))
    return json.dumps({k: v for k, v in p.items() if k not in ("created",)}, sort_keys=True)
same_plan = plan("f32") == plan("bf16") == plan("f16")
size = {t: os.path.getsize(f"{d}/{t}/model.safetensors") for t in ("f32", "bf16", "f16")}
ppl = {(t, s): json.load(open(f"{d}/eval_{t}_{s}.json"))["result"] for t in size for s in sets}
p = json.load(open(f"{d}/prune_f32.json"))
print(f"{os.path.basename(model)}, ratio {ratio}: {p['parametersBefore']:,} → {p['parametersAfter']:,} parameters; "
      f"same plan for all three: {'yes' if same_plan else 'NO'}")
head = f"{'dtype':6} {'model.safetensors':>18} {'of f32':>7}" + "".join(f" {s + ' ppl':>14} {'vs f32':>9}" for s in sets)
print(head)
for t in ("f32", "bf16", "f16"):
    row = f"{t:6} {size[t]:18,d} {100 * size[t] / size['f32']:6.2f}%"
    for s in sets:
        v, ref = ppl[(t, s)]["perplexity"], ppl[("f32", s)]["perplexity"]
        row += f" {v:14.4f} {100 * (v - ref) / ref:+8.3f}%"
    print(row)
windows = {s: ppl[("f32", s)]["windows"] for s in sets}
print("windows: " + ", ".join(f"{s} {w}" for s, w in windows.items()))
ok = same_plan and size["bf16"] <= 0.55 * size["f32"]
ok = ok and all(abs(ppl[("bf16", s)]["perplexity"] / ppl[("f32", s)]["perplexity"] - 1) <= 0.005 for s in sets)
print("checks (same plan, bf16 ≤ 55% of f32 bytes, bf16 perplexity within 0.5% of f32): " + ("pass" if ok else "FAIL"))
sys.exit(0 if ok else 1)
PY
