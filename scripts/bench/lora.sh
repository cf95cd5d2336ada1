#!/usr/bin/env bash
# LoRA training throughput, llmprune tune vs torch + peft (fp32), same model, Alpaca examples, order,
# micro-batches, padding and thread count, in one run. Both time only the optimizer steps (forward, backward
# to the adapters, clipping, AdamW), not model loading. Prints tokens/s of both (padded tokens run forward),
# the ratio, both first-step losses (they should agree up to dropout noise) and llmprune's peak RSS. Then the
# data-parallel scaling of `mpiexec -n 2 llmprune tune`: 1 rank × 1 thread against 2 ranks × 1 thread each on the
# same global batches (efficiency = tok/s(2 ranks) / (2 × tok/s(1 rank))).
#   scripts/bench/lora.sh [--model PATH] [--threads 2] [--steps 3] [--batch 8] [--micro-batch 4] [--cutoff 256]
# Build directory: $SWIFT_SCRATCH (default .build).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
model="" threads=2 steps=3 batch=8 micro=4 cutoff=256
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --steps) steps="$2"; shift 2 ;;
        --batch) batch="$2"; shift 2 ;;
        --micro-batch) micro="$2"; shift 2 ;;
        --cutoff) cutoff="$2"; shift 2 ;;
        *) echo "lora.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
model="${model:-$root/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}"
data="$root/../shared/data/alpaca/alpaca_data_1k.json"
build="${SWIFT_SCRATCH:-.build}"
swift build -c release --product llmprune --scratch-path "$build" -j 1 2>&1 | grep -v "prohibited flag" | tail -n 1 >&2
out="$(mktemp -d)"; trap 'rm -rf "$out"' EXIT

echo "== llmprune tune ($threads threads)" >&2
OPENBLAS_NUM_THREADS="$threads" "$build/release/llmprune" tune --model "$model" --data "$data" --out "$out/adapter" \
    --steps "$steps" --batch "$batch" --micro-batch "$micro" --cutoff "$cutoff" --val-size 0 --warmup 0 \
    --threads "$threads" --json > "$out/ours.json"
echo "== torch + peft ($threads threads)" >&2
scripts/reference/run.sh lora_bench.py --model "$model" --data "$data" --steps "$steps" --batch "$batch" \
    --micro-batch "$micro" --cutoff "$cutoff" --threads "$threads" 2>/dev/null | tail -n 1 > "$out/torch.json"
head -n 2 "$out/adapter/loss.csv" | tail -n 1 | cut -d, -f3 > "$out/first_loss"
echo "== scaling: 1 rank x 1 thread, then mpiexec -n 2 x 1 thread" >&2
for n in 1 2; do
    mpiexec -n "$n" "$build/release/llmprune" tune --model "$model" --data "$data" --out "$out/dp$n" --steps "$steps" \
        --batch "$batch" --micro-batch "$micro" --cutoff "$cutoff" --val-size 0 --warmup 0 --threads 1 --json \
        > "$out/dp$n.json"
done

python3 - "$out/ours.json" "$out/torch.json" "$out/first_loss" <<'PY'
import json, sys
ours, torch = (json.load(open(p)) for p in sys.argv[1:3])
first = float(open(sys.argv[3]).read())
print(f"model            {ours['model']}")
print(f"work             {ours['steps']} steps, {ours['tokens']} tokens (llmprune) / {torch['tokens']} (torch), {torch['threads']} threads, torch {torch['torch_version']}")
print(f"llmprune         {ours['tokensPerSecond']:8.1f} tok/s  ({ours['seconds']:.1f} s, peak RSS {ours['peakRSSBytes'] / 2**20:.0f} MiB)")
print(f"torch + peft     {torch['tokens_per_s']:8.1f} tok/s  ({torch['seconds']:.1f} s)")
print(f"ratio            {ours['tokensPerSecond'] / torch['tokens_per_s']:8.2f}x  (llmprune / torch)")
print(f"step-1 loss      {first:.4f} (llmprune)  {torch['losses'][0]:.4f} (torch)  [dropout masks differ]")
d = sys.argv[1].rsplit("/", 1)[0]
one, two = json.load(open(f"{d}/dp1.json")), json.load(open(f"{d}/dp2.json"))
print(f"1 rank x 1 thread   {one['tokensPerSecond']:8.1f} tok/s")
print(f"2 ranks x 1 thread  {two['tokensPerSecond']:8.1f} tok/s  (allreduce {two['allreduceBytes'] / 1e6:.1f} MB per rank)")
print(f"scaling efficiency  {two['tokensPerSecond'] / (2 * one['tokensPerSecond']):8.2f}  (same adapter: "
      f"final loss {one['lastLoss']:.6f} vs {two['lastLoss']:.6f})")
PY
