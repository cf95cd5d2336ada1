#!/usr/bin/env bash
# Generation speed, llmprune vs transformers' generate: same model, prompt, thread count and number of new tokens,
# greedy, both with a KV cache, fp32. Prints prefill and decode tokens/s of each, the processor time per decoded
# token (steadier than wall time when the machine is shared), the ratios, and whether the two produced the same tokens. Each side runs --repeat times and reports its fastest run (the first warms up).
#   scripts/bench/generate.sh [--model PATH] [--threads 2] [--new-tokens 128] [--prompt TEXT] [--repeat 2]
# Both sides are given min_new_tokens = N (EOS never chosen before N tokens), so both generate exactly N tokens.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
model="" threads=2 new=128 repeat=2
prompt="The history of the printing press begins in"
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --new-tokens) new="$2"; shift 2 ;;
        --prompt) prompt="$2"; shift 2 ;;
        --repeat) repeat="$2"; shift 2 ;;
        *) echo "generate.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
source scripts/bench/common.sh

echo "== llmprune ($threads threads)" >&2
for i in $(seq "$repeat"); do
    OPENBLAS_NUM_THREADS="$threads" "$bin" generate --model "$model" --prompt "$prompt" --max-new-tokens "$new" \
        --min-new-tokens "$new" --threads "$threads" --json > "$out/ours$i.json"
done
echo "== transformers ($threads threads)" >&2
scripts/reference/run.sh generate_bench.py --model "$model" --prompt "$prompt" --new-tokens "$new" \
    --threads "$threads" --repeat "$repeat" 2>/dev/null | tail -n 1 > "$out/torch.json"

python3 - "$out" "$repeat" "$(uptime)" <<'PY'
import json, sys
d, repeat, up = sys.argv[1], int(sys.argv[2]), sys.argv[3]
runs = [json.load(open(f"{d}/ours{i}.json")) for i in range(1, repeat + 1)]
ours = min(runs, key=lambda r: r["prefillSeconds"] + r["decodeSeconds"])
t = json.load(open(f"{d}/torch.json"))
ot = ours["prefillSeconds"] + ours["decodeSeconds"]
print(f"model            {ours['model']}")
print(f"prompt           {ours['promptTokens']} tokens, {ours['newTokens']} new tokens, greedy, {t['threads']} threads (torch {t['torch']})")
print(f"                 {'llmprune':>10} {'transformers':>13} {'ratio':>7}")
print(f"prefill tok/s    {ours['prefillTokensPerSecond']:10.1f} {t['prefill_tok_s']:13.1f} {ours['prefillTokensPerSecond'] / t['prefill_tok_s']:6.2f}x")
print(f"decode tok/s     {ours['decodeTokensPerSecond']:10.1f} {t['decode_tok_s']:13.1f} {ours['decodeTokensPerSecond'] / t['decode_tok_s']:6.2f}x")
oc, tc = 1000 * ours["decodeCPUSeconds"] / (ours["newTokens"] - 1), 1000 * t["decode_cpu_s"] / (t["new_tokens"] - 1)
print(f"decode CPU ms/tok {oc:9.1f} {tc:13.1f} {tc / oc:6.2f}x  (user + system time, all threads, per decoded token)")
print(f"overall tok/s    {ours['newTokens'] / ot:10.1f} {t['new_tokens'] / t['total_s']:13.1f} {(ours['newTokens'] / ot) / (t['new_tokens'] / t['total_s']):6.2f}x  (new tokens / wall time)")
same = ours["tokens"] == t["tokens"]
n = next((i for i, (a, b) in enumerate(zip(ours["tokens"], t["tokens"])) if a != b), min(len(ours["tokens"]), len(t["tokens"])))
print(f"same tokens      {same}" + ("" if same else f" (first difference at new token {n})"))
print(f"load             {up.strip()}")
PY
