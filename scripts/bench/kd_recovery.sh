#!/usr/bin/env bash
# Recovery at equal tokens: LoRA on cross-entropy vs LoRA by distillation from the unpruned model (`tune --teacher`).
# The student is SmolLM2 pruned with `llmprune prune --ratio 0.25` (local, element1, default layers); both runs are
# `mpiexec -n R llmprune tune` (data parallel) over the same epoch(s) of alpaca_data_1k with the same order, batch,
# lr and seed, so they see the same tokens; then `llmprune eval --adapter` on the first W windows of 128 tokens of
# WikiText-2 and PTB (test splits: measured once at the end, never used to choose anything). Validation loss is
# the tune job's own held-out Alpaca split. Outputs stay in --dir (default: a new temporary directory), printed at the end.
#   scripts/bench/kd_recovery.sh [--model PATH] [--ranks 2] [--epochs 1] [--batch 16] [--lr 2e-4] [--windows 128]
#                                [--kd-weight 0.5] [--kd-temperature 1] [--runs ce,kd] [--dir DIR] [--bin PATH]
#                                [--steps N]   (the first N optimizer steps of the epoch instead of the whole epoch)
#                                [--train-on-inputs]   (both runs score the prompt's tokens too: CE and KD over every position)
# --bin uses that llmprune (e.g. .build/debug/llmprune, which is built -O too) instead of building the release one.
set -euo pipefail
model="" ranks=2 epochs=1 batch=16 lr=2e-4 windows=128 kdw=0.5 kdt=1 runs=ce,kd dir="" usebin="" steps="" inputs=""
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --ranks) ranks="$2"; shift 2 ;;
        --epochs) epochs="$2"; shift 2 ;;
        --batch) batch="$2"; shift 2 ;;
        --lr) lr="$2"; shift 2 ;;
        --windows) windows="$2"; shift 2 ;;
        --kd-weight) kdw="$2"; shift 2 ;;
        --kd-temperature) kdt="$2"; shift 2 ;;
        --runs) runs="$2"; shift 2 ;;
        --dir) dir="$2"; shift 2 ;;
        --steps) steps="$2"; shift 2 ;;
        --train-on-inputs) inputs=1; shift ;;
        --bin) usebin="$(realpath "$2")"; shift 2 ;;
        *) echo "kd_recovery.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [ -n "$usebin" ]; then
    root="$(cd "$(dirname "$0")/../.." && pwd)"; cd "$root"
    model="${model:-$(scripts/setup.sh | tail -n 1)}"; bin="$usebin"
else
    source "$(dirname "$0")/common.sh"
    rm -rf "$out"; trap - EXIT      # keep the outputs (common.sh's scratch directory is removed on exit)
fi
out="${dir:-$(mktemp -d /tmp/kd_recovery.XXXXXX)}"
mkdir -p "$out"
alpaca="$(cd "$root/.." && pwd)/shared/data/alpaca/alpaca_data_1k.json"
threads=$(( $(nproc) / ranks )); [ "$threads" -ge 1 ] || threads=1
if [ ! -f "$out/pruned/config.json" ]; then
    echo "== prune --ratio 0.25 (local, element1, default layers)" >&2
    $bin prune --model "$model" --out "$out/pruned" --ratio 0.25 --json > "$out/prune.json"
fi
evaluate() {   # evaluate NAME MODEL [ADAPTER]
    for ds in wikitext2 ptb; do
        [ -s "$out/eval_$1_$ds.json" ] && continue
        $bin eval --model "$2" ${3:+--adapter "$3"} --dataset "$ds" --seq-len 128 --max-windows "$windows" --json \
            --quiet > "$out/eval_$1_$ds.json"
    done
}
evaluate pruned "$out/pruned"
for run in ${runs//,/ }; do
    [ -s "$out/tune_$run.json" ] && continue
    extra=()
    [ "$run" = ce ] || extra=(--teacher "$model" --kd-weight "$kdw" --kd-temperature "$kdt")
    [ -z "$steps" ] || extra+=(--steps "$steps")
    [ -z "$inputs" ] || extra+=(--train-on-inputs)
    echo "== tune $run: mpiexec -n $ranks, $epochs epoch(s), batch $batch, lr $lr ${extra[*]} (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    rm -rf "$out/adapter_$run" "$out/adapter_$run.job"
    mpiexec -n "$ranks" $bin tune --model "$out/pruned" --data "$alpaca" --out "$out/adapter_$run" --epochs "$epochs" \
        --batch "$batch" --micro-batch 4 --lr "$lr" --warmup 5 --threads "$threads" "${extra[@]}" --json \
        > "$out/tune_$run.json"
    echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/load_$run.txt"
    evaluate "$run" "$out/pruned" "$out/adapter_$run"
done
evaluate teacher "$model"      # the reference row of the table, after the runs
python3 - "$out" "$runs" <<'PY'
import json, os, sys
d, runs = sys.argv[1], sys.argv[2].split(",")
def ppl(name, ds):
    p = f"{d}/eval_{name}_{ds}.json"
    return json.load(open(p))["result"]["perplexity"] if os.path.exists(p) else float("nan")
print(f"outputs in {d}")
print(f"{'':12s} {'WikiText-2':>10s} {'PTB':>10s}")
for name in ["teacher", "pruned"]:
    print(f"{name:12s} {ppl(name, 'wikitext2'):10.3f} {ppl(name, 'ptb'):10.3f}")
for r in runs:
    p = f"{d}/tune_{r}.json"
    if not os.path.exists(p) or os.path.getsize(p) == 0:
        continue
    t = json.load(open(p))
    print(f"{'LoRA-' + r:12s} {ppl(r, 'wikitext2'):10.3f} {ppl(r, 'ptb'):10.3f}   "
          f"{t['steps']} steps, {t['tokens']:,} tokens in {t['seconds']:.0f} s ({t['tokensPerSecond']:.1f} tok/s), "
          f"loss {t['firstLoss']:.4f} -> {t['lastLoss']:.4f}, validation CE {t['validationLossBefore']:.4f} -> "
          f"{t['validationLoss']:.4f}"
          + (f", CE part {t['firstLossParts']['ce']:.4f} -> {t['lastLossParts']['ce']:.4f}, KD part "
             f"{t['firstLossParts']['kd']:.4f} -> {t['lastLossParts']['kd']:.4f} (w {t['distillation']['weight']}, "
             f"T {t['distillation']['temperature']})" if t.get("distillation") else ""))
PY
