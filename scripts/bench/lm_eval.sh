#!/usr/bin/env bash
# lm-evaluation-harness on llmprune's heterogeneous output, as a user would run it:
#   lm_eval run --model hf --model_args pretrained=DIR,trust_remote_code=True[,peft=ADAPTER] --tasks …
# SmolLM2-135M pruned at r = 0.25 (LLM-Pruner's layer range 4:28, so the layers differ in width and the directory
# carries its remote code), a short `llmprune tune` on it, then lm-eval's loglikelihood_rolling task over the first
# --docs articles of WikiText-2 test (a local task file: this machine reaches no dataset hub) on the pruned model and
# on the pruned model with the adapter through lm-eval's `peft=` argument. Prints lm-eval's word perplexity, byte
# perplexity and bits per byte for each; exits non-zero if lm-eval fails on either. lm-eval is installed into the
# reference venv if missing.
#   scripts/bench/lm_eval.sh [--docs 8] [--tune-steps 4]
set -euo pipefail
docs=8; tune_steps=4
while [ $# -gt 0 ]; do
    case "$1" in
        --docs) docs="$2"; shift 2 ;;
        --tune-steps) tune_steps="$2"; shift 2 ;;
        *) echo "lm_eval.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
source "$(dirname "$0")/common.sh"
export LLMPRUNE_VENV="${LLMPRUNE_VENV:-$root/.venv-ref}"
scripts/reference/setup_venv.sh > /dev/null
py="$LLMPRUNE_VENV/bin/python"
"$py" -c 'import lm_eval' 2> /dev/null || "$LLMPRUNE_VENV/bin/pip" install -q lm-eval >&2
data="${LLMPRUNE_DATA:-$root/../shared/data}"

echo "== prune r=0.25 and tune $tune_steps steps" >&2
"$bin" prune --model "$model" --out "$out/pruned" --ratio 0.25 --quiet > /dev/null
"$bin" tune --model "$out/pruned" --data "$data/alpaca/alpaca_data_1k.json" --out "$out/lora" --steps "$tune_steps" \
    --batch 8 --micro-batch 4 --warmup 0 --lr 1e-3 --val-size 8 --quiet > /dev/null

# The task: WikiText-2 test split into its articles (" = Title = " headings), one JSON line each, scored as lm-eval's
# own wikitext task scores documents (loglikelihood_rolling; word and byte perplexity, bits per byte).
mkdir -p "$out/task"
python3 - "$data/wikitext-2-raw/wiki.test.raw" "$out/task" "$docs" <<'PY'
import json, re, sys
raw, task, n = open(sys.argv[1], encoding="utf-8").read(), sys.argv[2], int(sys.argv[3])
starts = [m.start() for m in re.finditer(r"^ = [^=].* = \n", raw, flags=re.M)] + [len(raw)]
articles = [raw[a:b].strip("\n") for a, b in zip(starts, starts[1:])][:n]
with open(f"{task}/wikitext2_test.jsonl", "w", encoding="utf-8") as f:
    for a in articles:
        f.write(json.dumps({"page": a}) + "\n")
open(f"{task}/llmprune_wikitext2.yaml", "w").write(f"""task: llmprune_wikitext2
dataset_path: json
dataset_kwargs:
  data_files:
    test: {task}/wikitext2_test.jsonl
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{page}}}}"
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
""")
print(f"{len(articles)} articles, {sum(len(a) for a in articles):,} characters", file=sys.stderr)
PY

run_lm_eval() {   # NAME MODEL_ARGS
    echo "== lm_eval: $1" >&2
    HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 "$LLMPRUNE_VENV/bin/lm_eval" run --model hf --model_args "$2" \
        --tasks llmprune_wikitext2 --include_path "$out/task" --device cpu --batch_size 1 \
        --output_path "$out/results-$1" > "$out/$1.log" 2>&1 || { tail -n 20 "$out/$1.log" >&2; exit 1; }
}
run_lm_eval pruned "pretrained=$out/pruned,trust_remote_code=True,dtype=float32"
run_lm_eval pruned-lora "pretrained=$out/pruned,trust_remote_code=True,dtype=float32,peft=$out/lora"

python3 - "$out" "$docs" <<'PY'
import glob, json, sys
out, docs = sys.argv[1], sys.argv[2]
print(f"lm-eval (llmprune_wikitext2: first {docs} WikiText-2 test articles, loglikelihood_rolling), "
      "SmolLM2-135M pruned r=0.25, heterogeneous, loaded with trust_remote_code=True")
print("| model_args | word perplexity | byte perplexity | bits per byte |")
print("|---|---|---|---|")
for name, args in [("pruned", "pretrained=DIR,trust_remote_code=True"),
                   ("pruned-lora", "pretrained=DIR,trust_remote_code=True,peft=ADAPTER")]:
    f = sorted(glob.glob(f"{out}/results-{name}/**/results_*.json", recursive=True))[-1]
    r = json.load(open(f))["results"]["llmprune_wikitext2"]
    print(f"| {args} | {r['word_perplexity,none']:.4f} | {r['byte_perplexity,none']:.5f} | {r['bits_per_byte,none']:.5f} |")
PY
