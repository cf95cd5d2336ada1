#!/usr/bin/env bash
# llmprune's heterogeneous outputs in stock transformers, through the remote code they carry
# (AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True); scripts/reference/check_remote_code.py):
#   SmolLM2-135M (the default model), pruned heterogeneous at r = 0.25 (local, LLM-Pruner's layer range 4:L-2) and
#   r = 0.5 (global allocation, query-head units): perplexity by `llmprune eval --json` and by transformers on the same
#   directory, WikiText-2 and PTB test, every window (LLM-Pruner's protocol); a short `llmprune tune` on each, its
#   adapter by `llmprune eval --adapter` and by peft (PeftModel.from_pretrained) on the remote-code model, on the first
#   --adapter-windows windows (0: all); generate().
#   The variant fixtures (Tests/VariantTests: biases, RoPE scalings, windows, NoPE, tied/untied), each pruned
#   heterogeneous (layer 0 whole, the rest query heads and channels at ratio 0.5), the same comparison on their
#   first --variant-windows windows with a byte-level tokenizer.
# Prints markdown tables; exits non-zero if a relative difference exceeds 0.1 %, the ids differ, or generate() with
# its KV cache disagrees with the argmax loop without one.
#   scripts/bench/remote_code.sh [--max-windows N (0: all)] [--adapter-windows 256] [--tune-steps 4]
#                                [--variant-windows 8] [--skip-smollm2] [--skip-variants]
set -euo pipefail
windows=0; adapter_windows=256; tune_steps=4; variant_windows=8; smollm2=1; variants=1
while [ $# -gt 0 ]; do
    case "$1" in
        --max-windows) windows="$2"; shift 2 ;;
        --adapter-windows) adapter_windows="$2"; shift 2 ;;
        --tune-steps) tune_steps="$2"; shift 2 ;;
        --variant-windows) variant_windows="$2"; shift 2 ;;
        --skip-smollm2) smollm2=0; shift ;;
        --skip-variants) variants=0; shift ;;
        *) echo "remote_code.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
source "$(dirname "$0")/common.sh"
export LLMPRUNE_VENV="${LLMPRUNE_VENV:-$root/.venv-ref}"
scripts/reference/setup_venv.sh > /dev/null
alpaca="${LLMPRUNE_DATA:-$root/../shared/data}/alpaca/alpaca_data_1k.json"
status=0

# ours NAME DIR DATASET WINDOWS [--adapter A]: llmprune eval --json into $out/NAME.ours.DATASET.json (every window
# for WINDOWS 0: llmprune takes only a positive --max-windows)
ours() {
    local name="$1" dir="$2" ds="$3" n="$4"; shift 4
    local limit=(); [ "$n" -gt 0 ] && limit=(--max-windows "$n")
    "$bin" eval --model "$dir" --dataset "$ds" "${limit[@]}" --json --quiet "$@" > "$out/$name.ours.$ds.json"
}

if [ "$smollm2" = 1 ]; then
    echo "== SmolLM2-135M: prune, eval, tune" >&2
    "$bin" prune --model "$model" --out "$out/r25" --ratio 0.25 --quiet --force > /dev/null
    "$bin" prune --model "$model" --out "$out/q50" --ratio 0.5 --allocation global --attention-unit query-head \
        --quiet --force > /dev/null
    for name in r25 q50; do
        "$bin" tune --model "$out/$name" --data "$alpaca" --out "$out/$name-lora" --steps "$tune_steps" --batch 8 \
            --micro-batch 4 --warmup 0 --lr 1e-3 --val-size 8 --quiet --force > /dev/null
        for ds in wikitext2 ptb; do
            ours "$name" "$out/$name" "$ds" "$windows"
            ours "$name-lora" "$out/$name" "$ds" "$adapter_windows" --adapter "$out/$name-lora"
        done
        echo "  $name: llmprune done; transformers" >&2
        scripts/reference/run.sh check_remote_code.py --dir "$out/$name" --dataset wikitext2,ptb \
            --max-windows "$windows" --adapter "$out/$name-lora" --adapter-max-windows "$adapter_windows" --generate 24 --json \
            > "$out/$name.torch.json" 2> "$out/$name.torch.log" || { tail -n 5 "$out/$name.torch.log" >&2; exit 1; }
    done
    python3 - "$out" <<'PY' || status=1
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
ok = True
print("| model | widths (q-heads / kv-heads / mlp, min-max) | dataset | windows | llmprune | transformers (remote code) | rel | "
      "adapter windows | llmprune --adapter | peft on remote code | rel |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for name, what in [("r25", "r=0.25 local, layers 4:28"), ("q50", "r=0.5 global, query-head")]:
    t = json.loads((out / f"{name}.torch.json").read_text())
    w = t["widths"]
    span = " / ".join(f"{min(x[i] for x in w)}-{max(x[i] for x in w)}" for i in range(3))
    for ds in ("wikitext2", "ptb"):
        o = json.loads((out / f"{name}.ours.{ds}.json").read_text())
        a = json.loads((out / f"{name}-lora.ours.{ds}.json").read_text())
        p = t["ppl"][ds]
        r1 = abs(o["result"]["perplexity"] - p["ppl"]) / p["ppl"]
        r2 = abs(a["result"]["perplexity"] - p["ppl_adapter"]) / p["ppl_adapter"]
        same = o["idsSHA256"] == p["ids_sha256"] == a["idsSHA256"]
        ok &= r1 <= 1e-3 and r2 <= 1e-3 and same
        print(f"| {name} ({what}) | {span} | {ds} | {p['windows']} | {o['result']['perplexity']:.6f} | {p['ppl']:.6f} | "
              f"{r1:.1e} | {p['windows_adapter']} | {a['result']['perplexity']:.6f} | {p['ppl_adapter']:.6f} | {r2:.1e} |"
              + ("" if same else " ids differ |"))
for name in ("r25", "q50"):
    t = json.loads((out / f"{name}.torch.json").read_text())
    g = t["generate"]
    ok &= g["equals_uncached_greedy"] and t["refused_without_trust_remote_code"]
    print(f"\n{name}: {t['cls']} (transformers {t['transformers_version']}), {t['parameters']} parameters, tied head "
          f"{t['tied']}, refused without trust_remote_code {t['refused_without_trust_remote_code']}, logits vs the "
          f"independent loader max abs {t.get('independent_logits_max_abs')}; generate() (greedy, KV cache) = argmax "
          f"loop without cache: {g['equals_uncached_greedy']}; {g['prompt']!r} → {g['text']!r}")
sys.exit(0 if ok else 1)
PY
fi

if [ "$variants" = 1 ]; then
    echo "== variant fixtures" >&2
    # The 256-entry byte-level tokenizer of scripts/bench/variant_table.sh: ids 0-2 <unk> <s> </s>, id b ≥ 3 the byte b.
    "$LLMPRUNE_VENV/bin/python" - "$out/bytetok" <<'PY'
import json, sys
from pathlib import Path
sys.path.insert(0, "scripts/reference")
from make_tiny_fixtures import byte_vocab
from tokenizers import Tokenizer, models, pre_tokenizers, decoders
tokens, _ = byte_vocab()
tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=[]))
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
tok.decoder = decoders.ByteLevel()
out = Path(sys.argv[1]); out.mkdir(parents=True)
tok.save(str(out / "tokenizer.json"))
(out / "tokenizer_config.json").write_text(json.dumps(dict(
    tokenizer_class="PreTrainedTokenizerFast", bos_token="<s>", eos_token="</s>", unk_token="<unk>")))
PY
    for g in Tests/VariantTests/Resources/*/golden.json; do
        name="$(basename "$(dirname "$g")")"
        src="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["model"])' "$g")"
        m="$out/variants/$name"
        mkdir -p "$m" && cp "$src"/config.json "$src"/*.safetensors "$out/bytetok"/* "$m/"
        layers="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["num_hidden_layers"])' "$m/config.json")"
        "$bin" prune --model "$m" --out "$m-pruned" --layers "1:$layers" --ratio 0.5 --attention-unit query-head \
            --calib-samples 4 --calib-len 32 --quiet --force > /dev/null
        "$bin" eval --model "$m-pruned" --dataset wikitext2 --max-windows "$variant_windows" --json --quiet \
            > "$out/v-$name.ours.json"
        scripts/reference/run.sh check_remote_code.py --dir "$m-pruned" --dataset wikitext2 \
            --max-windows "$variant_windows" --generate 12 --json > "$out/v-$name.torch.json" 2> "$out/v-$name.torch.log" \
            || { tail -n 5 "$out/v-$name.torch.log" >&2; exit 1; }
        echo "  $name" >&2
    done
    python3 - "$out" <<'PY' || status=1
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
ok = True
print("\n| variant | base_model_type | what the config carries | widths (q, kv, mlp) per layer | llmprune | "
      "transformers (remote code) | rel | logits vs independent loader | generate() = uncached |")
print("|---|---|---|---|---|---|---|---|---|")
for f in sorted(out.glob("v-*.torch.json")):
    name = f.name[2:-len(".torch.json")]
    t = json.loads(f.read_text())
    o = json.loads((out / f"v-{name}.ours.json").read_text())
    cfg = json.loads((out / "variants" / f"{name}-pruned" / "config.json").read_text())
    keys = {k: cfg[k] for k in ("rope_scaling", "sliding_window", "attention_bias", "mlp_bias", "tie_word_embeddings")
            if cfg.get(k) not in (None, False)}
    if "sliding_attention" in cfg["layer_types"]:
        keys["layer_types"] = "".join("S" if x == "sliding_attention" else "F" for x in cfg["layer_types"])
    if "no_rope_layers" in cfg:
        keys["no_rope_layers"] = cfg["no_rope_layers"]
    a, b = o["result"]["perplexity"], t["ppl"]["wikitext2"]["ppl"]
    rel = abs(a - b) / b
    same = o["idsSHA256"] == t["ppl"]["wikitext2"]["ids_sha256"]
    gen = t["generate"]["equals_uncached_greedy"]
    ok &= rel <= 1e-3 and same and gen and t["refused_without_trust_remote_code"]
    ind = t.get("independent_logits_max_abs")
    print(f"| {name} | {t['base_model_type']} | {json.dumps(keys)} | {t['widths']} | {a:.6f} | {b:.6f} | {rel:.1e} | "
          f"{'—' if ind is None else f'{ind:.1e}'} | {gen} |" + ("" if same else " ids differ |"))
sys.exit(0 if ok else 1)
PY
fi
exit "$status"
