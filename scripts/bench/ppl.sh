#!/usr/bin/env bash
# Full-file perplexity (LLM-Pruner's 128-token protocol, all windows), llmprune vs transformers loading the same
# model in fp32, same machine and threads, in one run. Prints both, the relative difference, and whether the
# token ids are identical (SHA-256 of the int32 ids). Slow: PyTorch takes ~10-30 min per file on 2 cores.
#   scripts/bench/ppl.sh [--model PATH] [--datasets wikitext2,ptb] [--threads 2] [--max-windows N]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
model="" datasets="wikitext2,ptb" threads=2 maxw=""
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --datasets) datasets="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --max-windows) maxw="$2"; shift 2 ;;
        *) echo "ppl.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
default_model="$(scripts/setup.sh | tail -n 1)"
model="${model:-$default_model}"
swift build -c release --product llmprune 2>&1 | grep -v "prohibited flag" | tail -n 1 >&2
out="$(mktemp -d)"; trap 'rm -rf "$out"' EXIT
extra=(); [ -n "$maxw" ] && extra=(--max-windows "$maxw")
for ds in ${datasets//,/ }; do
    echo "== $ds: llmprune" >&2
    .build/release/llmprune eval --model "$model" --dataset "$ds" --threads "$threads" --json "${extra[@]}" > "$out/ours_$ds.json"
    echo "== $ds: transformers" >&2
    scripts/reference/run.sh ppl.py --model "$model" --dataset "$ds" --threads "$threads" --batch 8 --json "${extra[@]}" \
        2>/dev/null > "$out/ref_$ds.json"
done
python3 - "$out" ${datasets//,/ } <<'PY'
import json, sys
d = sys.argv[1]
print(f"{'dataset':10} {'llmprune':>12} {'transformers':>13} {'rel diff':>10} {'tokens':>8} {'ids':>9} {'tok/s ours':>11} {'tok/s torch':>12}")
for ds in sys.argv[2:]:
    o = json.load(open(f"{d}/ours_{ds}.json")); r = json.load(open(f"{d}/ref_{ds}.json"))
    po, pr = o["result"]["perplexity"], r["ppl"]
    same = "identical" if o["idsSHA256"] == r["ids_sha256"] and o["result"]["tokens"] == r["tokens"] else "DIFFER"
    print(f"{ds:10} {po:12.5f} {pr:13.5f} {abs(po - pr) / pr:10.2e} {o['result']['tokens']:8d} {same:>9} "
          f"{o['result']['tokensPerSecond']:11.1f} {r['tokens_per_s']:12.1f}")
PY
