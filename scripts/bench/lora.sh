#!/usr/bin/env bash
# LoRA training throughput, llmprune tune vs torch + peft, same model, Alpaca examples, order, micro-batches,
# padding and thread count, in one run: llmprune with fp32 products and with `--compute bf16` (the frozen base's
# products in bf16 through oneDNN, where the CPU has AVX512-BF16), torch in fp32 and under its own bf16 autocast.
# All time only the optimizer steps (forward, backward to the adapters, clipping, AdamW), not model loading. Prints
# tokens/s of each (padded tokens run forward), the ratios, the first-step losses (they should agree up to dropout
# noise) and llmprune's peak RSS. Then (unless --no-scaling) the data-parallel scaling of `mpiexec -n 2 llmprune
# tune`: 1 rank × 1 thread against 2 ranks × 1 thread each on the same global batches (efficiency = tok/s(2 ranks)
# / (2 × tok/s(1 rank))). On a CPU without AVX512-BF16 the bf16 lines are skipped (llmprune refuses the flag).
# The four runs repeat --rounds times, interleaved (fp32, bf16, torch, torch bf16, then again), and each line reports
# the best round with the others beside it: on a shared machine interference only slows a run, and interleaving
# keeps a slow spell from landing on one side of a ratio.
#   scripts/bench/lora.sh [--model PATH] [--threads 2] [--steps 3] [--batch 8] [--micro-batch 4] [--cutoff 256]
#                         [--rounds 3] [--no-scaling]
# Build directory: $SWIFT_SCRATCH (default .build); $LLMPRUNE_BIN times that binary instead of a release build.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
model="" threads=2 steps=3 batch=8 micro=4 cutoff=256 scaling=1 rounds=3
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --steps) steps="$2"; shift 2 ;;
        --batch) batch="$2"; shift 2 ;;
        --micro-batch) micro="$2"; shift 2 ;;
        --cutoff) cutoff="$2"; shift 2 ;;
        --rounds) rounds="$2"; shift 2 ;;
        --no-scaling) scaling=0; shift ;;
        *) echo "lora.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
model="${model:-$root/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}"
data="$root/../shared/data/alpaca/alpaca_data_1k.json"
build="${SWIFT_SCRATCH:-.build}"
# $LLMPRUNE_BIN: an already built binary to time instead of building release (say which in the report).
if [ -n "${LLMPRUNE_BIN:-}" ]; then
    bin="$LLMPRUNE_BIN"
else
    swift build -c release --product llmprune --scratch-path "$build" -j 1 2>&1 | grep -v "prohibited flag" | tail -n 1 >&2
    bin="$build/release/llmprune"
fi
out="$(mktemp -d)"; trap 'rm -rf "$out"' EXIT

echo "load before: $(uptime)" >&2
tune() {     # tune COMPUTE ROUND: llmprune's run with --compute COMPUTE into $out/ours_COMPUTE_ROUND.json (empty when refused)
    echo "== round $2: llmprune tune --compute $1 ($threads threads)" >&2
    OPENBLAS_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads" "$bin" tune --model "$model" \
        --data "$data" --out "$out/adapter_$1_$2" --steps "$steps" --batch "$batch" --micro-batch "$micro" \
        --cutoff "$cutoff" --val-size 0 --warmup 0 --threads "$threads" --compute "$1" --json > "$out/ours_$1_$2.json" \
        || { echo "lora.sh: llmprune tune --compute $1 failed (see above); its line is skipped" >&2; : > "$out/ours_$1_$2.json"; }
}
for round in $(seq 1 "$rounds"); do
    tune fp32 "$round"
    tune bf16 "$round"
    for ac in none bf16; do
        echo "== round $round: torch + peft, autocast $ac ($threads threads)" >&2
        scripts/reference/run.sh lora_bench.py --model "$model" --data "$data" --steps "$steps" --batch "$batch" \
            --micro-batch "$micro" --cutoff "$cutoff" --threads "$threads" --autocast "$ac" 2>/dev/null | tail -n 1 \
            > "$out/torch_${ac}_$round.json"
    done
done
echo "load after: $(uptime)" >&2
head -n 2 "$out/adapter_fp32_1/loss.csv" | tail -n 1 | cut -d, -f3 > "$out/first_loss"
if [ "$scaling" = 1 ]; then
    echo "== scaling: 1 rank x 1 thread, then mpiexec -n 2 x 1 thread" >&2
    for n in 1 2; do
        mpiexec -n "$n" "$bin" tune --model "$model" --data "$data" --out "$out/dp$n" --steps "$steps" \
            --batch "$batch" --micro-batch "$micro" --cutoff "$cutoff" --val-size 0 --warmup 0 --threads 1 --json \
            > "$out/dp$n.json"
    done
fi

python3 - "$out" "$rounds" <<'PY'
import json, os, sys
d, rounds = sys.argv[1], int(sys.argv[2])
def load(name):
    p = f"{d}/{name}.json"
    return json.load(open(p)) if os.path.getsize(p) > 0 else None
def best(name, key):
    """The fastest round of one run (None when refused) and every round's rate, for the report."""
    runs = [r for r in (load(f"{name}_{i}") for i in range(1, rounds + 1)) if r]
    return (max(runs, key=lambda r: r[key]) if runs else None), [round(r[key], 1) for r in runs]
(ours, oa), (bf16, ba) = best("ours_fp32", "tokensPerSecond"), best("ours_bf16", "tokensPerSecond")
(torch, ta), (tbf16, tba) = best("torch_none", "tokens_per_s"), best("torch_bf16", "tokens_per_s")
print(f"rounds           {rounds} (best shown; all: llmprune fp32 {oa}, bf16 {ba}; torch fp32 {ta}, bf16 {tba})")
first = float(open(f"{d}/first_loss").read())
print(f"model            {ours['model']}")
print(f"work             {ours['steps']} steps, {ours['tokens']} tokens (llmprune) / {torch['tokens']} (torch), {torch['threads']} threads, torch {torch['torch_version']}")
print(f"llmprune fp32    {ours['tokensPerSecond']:8.1f} tok/s  ({ours['seconds']:.1f} s, peak RSS {ours['peakRSSBytes'] / 2**20:.0f} MiB)")
if bf16:
    print(f"llmprune bf16    {bf16['tokensPerSecond']:8.1f} tok/s  ({bf16['seconds']:.1f} s, peak RSS {bf16['peakRSSBytes'] / 2**20:.0f} MiB)"
          f"  {bf16['tokensPerSecond'] / ours['tokensPerSecond']:.2f}x llmprune fp32")
else:
    print("llmprune bf16    (refused: no native bf16 products on this CPU)")
print(f"torch + peft     {torch['tokens_per_s']:8.1f} tok/s  ({torch['seconds']:.1f} s)")
print(f"torch bf16 autocast {tbf16['tokens_per_s']:5.1f} tok/s  ({tbf16['seconds']:.1f} s)")
print(f"ratio fp32       {ours['tokensPerSecond'] / torch['tokens_per_s']:8.2f}x  (llmprune fp32 / torch fp32)")
if bf16:
    print(f"ratio bf16       {bf16['tokensPerSecond'] / tbf16['tokens_per_s']:8.2f}x  (llmprune bf16 / torch bf16 autocast)")
print(f"step-1 loss      {first:.4f} (llmprune fp32)  " + (f"{bf16['firstLoss']:.4f} (llmprune bf16)  " if bf16 else "")
      + f"{torch['losses'][0]:.4f} (torch)  {tbf16['losses'][0]:.4f} (torch bf16)  [dropout masks differ]")
if not os.path.exists(f"{d}/dp1.json"):
    sys.exit(0)
one, two = json.load(open(f"{d}/dp1.json")), json.load(open(f"{d}/dp2.json"))
print(f"1 rank x 1 thread   {one['tokensPerSecond']:8.1f} tok/s")
print(f"2 ranks x 1 thread  {two['tokensPerSecond']:8.1f} tok/s  (allreduce {two['allreduceBytes'] / 1e6:.1f} MB per rank)")
print(f"scaling efficiency  {two['tokensPerSecond'] / (2 * one['tokensPerSecond']):8.2f}  (same adapter: "
      f"final loss {one['lastLoss']:.6f} vs {two['lastLoss']:.6f})")
PY
