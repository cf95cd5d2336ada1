#!/usr/bin/env bash
# `llmprune export` against llama.cpp (llama-cpp-python, installed into the reference venv; it compiles llama.cpp):
#   - SmolLM2-135M pruned at r = 0.25, heterogeneous (default layers 4:28 → arch deci) and uniform (--layers 0:30 →
#     arch llama), each exported f16 and q8_0: llama.cpp's tokenizer gives llmprune's ids on WikiText-2 test, and its
#     perplexity (128-token windows, on those ids) is within 0.5 % (f16) / 2 % (q8_0) of `llmprune eval`;
#   - a synthetic Qwen2-shaped model (tiny-qwen2, SmolLM2's tokenizer): unpruned (arch qwen2), pruned uniformly (llama
#     with q/k/v biases) and heterogeneously (deci with biases), f32 and f16: loads and runs with llmprune's perplexity;
#   - RoPE-scaling fixtures (linear, llama3 → rope_freqs, yarn with default betas) and a SmolLM3 (NoPE every 4th
#     layer → arch smollm3): llama.cpp's perplexity equals llmprune's; the sliding-window, dynamic-RoPE, yarn-mscale
#     and yarn-beta_fast-16 fixtures are refused;
#   - four tokenizer.json fixtures (SentencePiece legacy / Metaspace, Llama-3, Qwen2) on a tiny model: llama.cpp's
#     ids on WikiText-2 vs transformers' and llmprune's;
#   - a LLaMA-2-7B-shaped model (synth, bf16 on disk) exported to f16 and q8_0: wall time and peak RSS.
# Prints the tables.
#   scripts/bench/gguf_export.sh [--model PATH] [--windows 64] [--threads 2] [--skip-7b] [--skip-smollm2]
set -euo pipefail
model="" windows=64 threads=2 skip7b=0 skipsmol=0
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --windows) windows="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --skip-7b) skip7b=1; shift ;;
        --skip-smollm2) skipsmol=1; shift ;;
        *) echo "gguf_export.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
source "$(dirname "$0")/common.sh"
export LLMPRUNE_LLAMA_CPP=1
scripts/reference/setup_venv.sh > /dev/null
export LLMPRUNE_DATA="${LLMPRUNE_DATA:-$(cd "$root/.." && pwd)/shared/data}"
export OPENBLAS_NUM_THREADS="$threads"
# llama.cpp's CPU backend uses OpenMP; its threads spin at barriers, which on a busy 2-core machine made a 128-token
# window 10x slower (measured: 15 s vs 1.4 s with passive waiting). Passive waiting changes no result.
export OMP_WAIT_POLICY=PASSIVE

cases=() tcases=()
add_case() {   # name gguf type arch ids ours limit
    cases+=("{\"name\": \"$1\", \"gguf\": \"$2\", \"type\": \"$3\", \"arch\": \"$4\", \"ids\": \"$5\", \"ours\": \"$6\", \"limit\": $7}")
}
arch_of() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['export']['architecture'])" "$1"; }

# source model: prune, tokenize, eval, export. $1 name, $2 model dir, then export types:limits
run_model() {
    local name="$1" dir="$2"; shift 2
    "$bin" tokenize --model "$dir" --dataset wikitext2 --out "$out/$name.ids" > /dev/null
    echo "== $name: llmprune eval ($windows windows)" >&2
    "$bin" eval --model "$dir" --dataset wikitext2 --max-windows "$windows" --threads "$threads" --json --quiet > "$out/$name.eval.json"
    for tl in "$@"; do
        local t="${tl%%:*}" limit="${tl##*:}"
        "$bin" export --model "$dir" --out "$out/$name.$t.gguf" --type "$t" --json > "$out/$name.$t.export.json"
        add_case "$name" "$out/$name.$t.gguf" "$t" "$(arch_of "$out/$name.$t.export.json")" "$out/$name.ids" "$out/$name.eval.json" "$limit"
    done
}

if [ "$skipsmol" = 0 ]; then
    echo "== prune SmolLM2 r=0.25 (heterogeneous: default layers; uniform: --layers 0:30)" >&2
    "$bin" prune --model "$model" --ratio 0.25 --out "$out/smol-het" --quiet > /dev/null
    "$bin" prune --model "$model" --ratio 0.25 --layers 0:30 --out "$out/smol-uni" --quiet > /dev/null
    run_model smollm2-r25-heterogeneous "$out/smol-het" f16:0.005 q8_0:0.02
    run_model smollm2-r25-uniform "$out/smol-uni" f16:0.005 q8_0:0.02
fi

echo "== tiny-qwen2 (SmolLM2's tokenizer): unpruned, pruned uniform, pruned heterogeneous" >&2
"$bin" synth --shape tiny-qwen2 --vocab-size 49152 --tokenizer "$model" --dtype f32 --out "$out/qwen" --quiet > /dev/null
"$bin" prune --model "$out/qwen" --ratio 0.5 --layers 0:6 --out "$out/qwen-uni" --quiet > /dev/null
"$bin" prune --model "$out/qwen" --ratio 0.5 --layers 1:5 --out "$out/qwen-het" --quiet > /dev/null
run_model tiny-qwen2 "$out/qwen" f32:1e-4
run_model tiny-qwen2-pruned-uniform "$out/qwen-uni" f32:1e-4 f16:0.005
run_model tiny-qwen2-pruned-heterogeneous "$out/qwen-het" f32:1e-4 f16:0.005

echo "== RoPE scaling (linear, llama3, yarn) and SmolLM3 fixtures; SmolLM2's tokenizer cut to their 256 ids" >&2
"$bin" synth --shape tiny --tokenizer "$model" --dtype f32 --out "$out/tiny256" --quiet > /dev/null 2>&1
fixture() {   # $1 fixture dir under Tests/LlamaModelTests/Resources, $2 name: a copy with the 256-id tokenizer
    rm -rf "$out/$2"; cp -r "Tests/LlamaModelTests/Resources/$1" "$out/$2"
    cp "$out/tiny256/tokenizer.json" "$out/tiny256/tokenizer_config.json" "$out/$2/"
}
fixture rope/linear rope-linear; run_model rope-linear "$out/rope-linear" f32:1e-4
fixture rope/llama3 rope-llama3; run_model rope-llama3 "$out/rope-llama3" f32:1e-4
fixture rope/yarn rope-yarn-default           # the fixture's beta_fast 16 dropped: llama.cpp reads no yarn betas
python3 - "$out/rope-yarn-default/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["rope_parameters"].pop("beta_fast")
json.dump(c, open(sys.argv[1], "w"), indent=2)
PY
run_model rope-yarn-default "$out/rope-yarn-default" f32:1e-4
fixture tiny_smollm3 smollm3-nowindow          # the fixture's window of 5 off: NoPE every 4th layer remains
python3 - "$out/smollm3-nowindow/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["use_sliding_window"] = False; c.pop("layer_types", None)
json.dump(c, open(sys.argv[1], "w"), indent=2)
PY
run_model smollm3-nowindow "$out/smollm3-nowindow" f32:1e-4

echo "== refused (what llama.cpp cannot represent)" >&2
refusals=""
for fx in tiny_mistral_swa tiny_smollm3 rope/dynamic rope/yarn_mscale rope/yarn; do
    fixture "$fx" "refuse-${fx//\//-}"
    set +e
    msg="$("$bin" export --model "$out/refuse-${fx//\//-}" --out "$out/refused.gguf" 2>&1 >/dev/null)"; rc=$?
    set -e
    left="$(ls -A "$out" | grep -c '^\.' || true)"
    refusals+="$(printf '%-18s exit %d, files left %s: %s' "$fx" "$rc" "$( [ -e "$out/refused.gguf" ] && echo yes || echo no)/$left" "${msg#*$out/}")"$'\n'
done

echo "== tokenizer.json fixtures on a tiny model" >&2
"$bin" synth --shape tiny --vocab-size 2048 --tokenizer none --dtype f32 --out "$out/tk" --quiet > /dev/null
for fx in spm_legacy spm_metaspace llama3 qwen2; do
    rm -rf "$out/tk-$fx"; cp -r "$out/tk" "$out/tk-$fx"
    cp Tests/TokenizerTests/Resources/$fx/tokenizer.json Tests/TokenizerTests/Resources/$fx/tokenizer_config.json "$out/tk-$fx/"
    "$bin" tokenize --model "$out/tk-$fx" --dataset wikitext2 --out "$out/tk-$fx.ids" > /dev/null
    "$bin" export --model "$out/tk-$fx" --out "$out/tk-$fx.gguf" --type f32 --quiet > /dev/null
    expect=true; [ "$fx" = spm_metaspace ] && expect=false
    tcases+=("$(python3 - "$fx" "$out/tk-$fx.gguf" "$out/tk-$fx.ids" "$expect" <<'PY'
import json, sys
e = json.load(open("Tests/TokenizerTests/Resources/breadth_expected.json"))["tokenizers"][sys.argv[1]]["files"]["wikitext2_test"]
print(json.dumps({"name": sys.argv[1], "gguf": sys.argv[2], "ids": sys.argv[3], "hf_count": e["count"],
                  "hf_sha256": e["sha256"], "expect_equal": sys.argv[4] == "true"}))
PY
)")
done

join() { local IFS=,; echo "$*"; }
cat > "$out/manifest.json" <<JSON
{"dataset": "wikitext2", "seq_len": 128, "windows": $windows,
 "model_cases": [$(join "${cases[@]}")],
 "tokenizer_cases": [$(join "${tcases[@]}")]}
JSON
status=0
scripts/reference/run.sh check_gguf_export.py "$out/manifest.json" --threads "$threads" || status=$?
printf '\nrefused exports:\n%s' "$refusals"

if [ "$skip7b" = 0 ]; then
    echo "== LLaMA-2-7B shape: synth (bf16), export f16 and q8_0 (peak RSS from /usr/bin/time)" >&2
    "$bin" synth --shape llama-2-7b --tokenizer none --out "$out/l7b" --quiet > /dev/null
    # a vocabulary for the tokenizer keys: the SentencePiece fixture (2000 tokens, padded to the shape's 32000 ids)
    cp Tests/TokenizerTests/Resources/spm_legacy/tokenizer.json Tests/TokenizerTests/Resources/spm_legacy/tokenizer_config.json "$out/l7b/"
    printf "%-6s %10s %10s %12s\n" type seconds "GB out" "peak RSS MB"
    for t in f16 q8_0; do
        /usr/bin/time -f "%e %M" -o "$out/time.$t" "$bin" export --model "$out/l7b" --out "$out/l7b.$t.gguf" --type "$t" --quiet > /dev/null
        read -r secs kb < "$out/time.$t"
        printf "%-6s %10s %10.2f %12.0f\n" "$t" "$secs" "$(python3 -c "import os; print(os.path.getsize('$out/l7b.$t.gguf') / 1e9)")" \
            "$(python3 -c "print($kb / 1024)")"
        rm -f "$out/l7b.$t.gguf"
    done
fi
exit $status
