#!/usr/bin/env bash
# The whole mission on the default model, on a fresh Debian machine:
#   1. set up (apt packages, the SmolLM2-135M GGUF), build;
#   2. perplexity of the original model (WikiText-2 and PTB, first WINDOWS windows of 128 tokens);
#   3. `mpiexec -n RANKS llmprune cluster prune`: Taylor importance (element1, 10×64 calibration tokens from ptb.valid),
#      ratio 0.25, local allocation, sample-sharded across the ranks, each rank writing its shard of the output;
#   4. `mpiexec -n RANKS llmprune tune`: a short data-parallel LoRA recovery on the Alpaca sample, with perplexity
#      before and after;
#   5. `llmprune report`: one HTML page with the charts, and summary.json;
#   6. `llmprune generate`: one chat message answered greedily by the original, the pruned and the tuned model
#      (pruned + adapter), side by side;
#   7. `llmprune merge` + `llmprune export`: the tuned model as one f16 GGUF, and the one-line command that runs it in
#      llama.cpp (also run here when the reference venv has llama-cpp-python: LLMPRUNE_LLAMA_CPP=1
#      scripts/reference/setup_venv.sh).
# Your own model and data (environment variables):
#   MODEL=path/to/model.gguf|hf-dir  DATA=alpaca.json  RATIO=0.25  RANKS=2  STEPS=12  WINDOWS=50  RUN=out/demo
#   PROMPT="a chat message"  NEW_TOKENS=48
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
start=$(date +%s)
default_model="$(scripts/setup.sh | tail -n 1)"
model="${MODEL:-$default_model}"
data="${DATA:-$(cd "$root/.." && pwd)/shared/data/alpaca/alpaca_data_1k.json}"
ratio="${RATIO:-0.25}" ranks="${RANKS:-2}" steps="${STEPS:-12}" windows="${WINDOWS:-50}"
prompt="${PROMPT:-Give three tips for staying healthy.}" new_tokens="${NEW_TOKENS:-48}"
run="${RUN:-$root/out/demo}"
swift build -c release --product llmprune 2>&1 | grep -v "prohibited flag" | tail -n 1
bin="$root/.build/release/llmprune"
threads=$(( $(nproc) / ranks )); [ "$threads" -ge 1 ] || threads=1
rm -rf "$run"; mkdir -p "$run"
"$bin" info --model "$model" | head -n 5

echo "== 1/6 perplexity of the original model (first $windows windows)"
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

echo "== 2/6 mpiexec -n $ranks llmprune cluster prune --ratio $ratio (calibration: ptb.valid)"
mpiexec -n "$ranks" "$bin" cluster prune --model "$model" --out "$run/pruned" --job-dir "$run/prune.job" \
    --ratio "$ratio" --calib ptb-valid --threads "$threads" --quiet

echo "== 3/6 mpiexec -n $ranks llmprune tune: $steps LoRA steps of 16 examples, perplexity before and after"
mpiexec -n "$ranks" "$bin" tune --model "$run/pruned" --data "$data" --out "$run/adapter" --job-dir "$run/tune.job" \
    --steps "$steps" --batch 16 --micro-batch 4 --lr 3e-4 --warmup 2 --val-size 50 --eval wikitext2,ptb \
    --eval-windows "$windows" --threads "$threads"

echo "== 4/6 report"
"$bin" report "$run"

echo "== 5/6 one chat message, three models (greedy, $new_tokens new tokens): \"$prompt\""
answer() {   # NAME MODEL [--adapter DIR]
    local name="$1" m="$2"; shift 2
    "$bin" generate --model "$m" "$@" --chat "$prompt" --max-new-tokens "$new_tokens" --json --quiet > "$run/answer-$name.json"
}
answer original "$model"
answer pruned "$run/pruned"
answer tuned "$run/pruned" --adapter "$run/adapter"
python3 - "$run" <<'PY'
import json, os, sys, textwrap
run = sys.argv[1]
names = ["original", "pruned", "tuned"]
answers = {n: json.load(open(f"{run}/answer-{n}.json")) for n in names}
# Three columns when the terminal is wide enough, else one answer after another.
width = os.get_terminal_size().columns if sys.stdout.isatty() else 120
col = (width - 2 * 3) // 3
def wrap(text, w):
    return [l for para in text.strip().split("\n") for l in (textwrap.wrap(para, w) or [""])]
def title(n):
    return f"{n} ({answers[n]['decodeTokensPerSecond']:.0f} tokens/s)"
if col >= 30:
    cells = {n: wrap(answers[n]["text"], col) for n in names}
    print(" | ".join(title(n).ljust(col) for n in names).rstrip())
    print("-+-".join("-" * col for _ in names))
    for i in range(max(len(c) for c in cells.values())):
        print(" | ".join((cells[n][i] if i < len(cells[n]) else "").ljust(col) for n in names).rstrip())
else:
    for n in names:
        print(f"--- {title(n)}")
        print("\n".join(wrap(answers[n]["text"], max(width - 2, 20))))
PY

echo "== 6/6 the tuned model (pruned + adapter, merged) as one GGUF for llama.cpp"
"$bin" merge --model "$run/pruned" --adapter "$run/adapter" --out "$run/tuned" > /dev/null
"$bin" export --model "$run/tuned" --out "$run/tuned-f16.gguf" --type f16 --quiet --json > "$run/export.json"
if [ -x "$root/.venv-ref/bin/python" ] && "$root/.venv-ref/bin/python" -c 'import llama_cpp' 2> /dev/null; then
    echo "   llama.cpp (llama-cpp-python in .venv-ref) on the GGUF, the same message, greedy:"
    "$root/.venv-ref/bin/python" - "$run/tuned-f16.gguf" "$prompt" "$new_tokens" <<'PY' | sed 's/^/   | /'
import sys
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_ctx=512, verbose=False)
r = llm.create_chat_completion([{"role": "user", "content": sys.argv[2]}], temperature=0, max_tokens=int(sys.argv[3]))
print(r["choices"][0]["message"]["content"].strip())
PY
fi
python3 - "$run" "$(( $(date +%s) - start ))" "$prompt" "$new_tokens" <<'PY'
import json, os, shlex, sys
run, secs, prompt, new_tokens = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
arch = json.load(open(f"{run}/export.json"))["export"]["architecture"]
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
                   ("tune job", "tune.job/ (checkpoints, trace.json)"),
                   ("tuned model", "tuned/ (pruned + adapter merged; transformers: trust_remote_code=True when "
                                   "layers differ in width)"),
                   ("GGUF", f"tuned-f16.gguf (llama.cpp arch {arch}, "
                            f"{os.path.getsize(f'{run}/tuned-f16.gguf') / 1e6:.0f} MB; docs/gguf.md)")]:
    print(f"  {what:13s} {run}/{path}")
print(f"demo wall time {secs // 60} min {secs % 60} s")
print()
print("run the tuned model in llama.cpp:")
print(f"  llama-cli -m {shlex.quote(run + '/tuned-f16.gguf')} -p {shlex.quote(prompt)} -n {new_tokens} --temp 0")
PY
