#!/usr/bin/env bash
# The variant × check table of every Llama-family variant llmprune computes, measured in one run:
#   ids       tokenizers (SentencePiece Metaspace / legacy / GGUF "llama", Llama-3 and Qwen2 byte-level BPE, json and
#             GGUF): ids identical to transformers on the full WikiText-2 and PTB test files (TokenizerTests/BreadthTests)
#   logits, loss, gradients (biases included), element1 unit scores, LoRA step: each variant's golden from transformers,
#             PyTorch and peft (Tests/VariantTests, goldens by scripts/reference/make_variant_matrix.py)
#   pruned PPL each fixture with a 256-token byte-level tokenizer, pruned alike in every layer (KV groups and MLP
#             channels, ratio 0.25), its perplexity by `llmprune eval` and by transformers (scripts/reference/ppl.py)
#             on the same directory, LLM-Pruner's protocol
# Prints a markdown table; exits non-zero if any check fails.
#   scripts/bench/variant_table.sh [--windows 8]
set -euo pipefail
windows=8
while [ $# -gt 0 ]; do
    case "$1" in
        --windows) windows="$2"; shift 2 ;;
        *) echo "variant_table.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
source "$(dirname "$0")/common.sh"
export LLMPRUNE_VENV="${LLMPRUNE_VENV:-$root/.venv-ref}"
scripts/reference/setup_venv.sh > /dev/null

echo "== goldens (swift test: VariantMatrixTests, BreadthTests)" >&2
swift build --build-tests 2>&1 | grep -v "prohibited flag" | tail -n 1 >&2
status=0
LLMPRUNE_VARIANT_TABLE="$out/rows.jsonl" swift test --skip-build --filter 'VariantMatrixTests|BreadthTests' \
    > "$out/tests.log" 2>&1 || status=$?
grep -E "✘" "$out/tests.log" >&2 || true

echo "== pruned models in transformers" >&2
# A 256-entry byte-level tokenizer for the 256-token fixtures: ids 0-2 <unk> <s> </s>, id b ≥ 3 the byte b.
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
    m="$out/models/$name"
    mkdir -p "$m" && cp "$src"/config.json "$src"/*.safetensors "$out/bytetok"/* "$m/"
    layers="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["num_hidden_layers"])' "$m/config.json")"
    "$bin" prune --model "$m" --out "$m-pruned" --layers "0:$layers" --ratio 0.25 --calib-samples 4 --calib-len 32 \
        --quiet --force > /dev/null
    "$bin" eval --model "$m-pruned" --dataset wikitext2 --max-windows "$windows" --json > "$out/$name.ours.json"
    scripts/reference/run.sh ppl.py --model "$m-pruned" --dataset wikitext2 --max-windows "$windows" \
        --out "$out/$name.torch.json" > "$out/$name.torch.log" 2>&1 || { tail -n 5 "$out/$name.torch.log" >&2; exit 1; }
    echo "  $name" >&2
done

python3 - "$out" "$status" <<'PY'
import json, re, sys
from pathlib import Path
out, status = Path(sys.argv[1]), int(sys.argv[2])
log = (out / "tests.log").read_text()
rows = [json.loads(l) for l in (out / "rows.jsonl").read_text().splitlines() if l.strip()]
ok = status == 0
print("| variant | model_type | what | logits max abs | loss abs | gradients max rel (tensors, biases) | "
      "element1 max rel (units) | LoRA loss rel | LoRA step max rel (over abs(g) ≥ 1e-4·max) | pruned PPL llmprune | "
      "transformers | rel |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in sorted(rows, key=lambda r: r["variant"]):
    n = r["variant"]
    ours = json.loads((out / f"{n}.ours.json").read_text())
    theirs = json.loads((out / f"{n}.torch.json").read_text())
    a, b = ours["result"]["perplexity"], theirs["ppl"]
    rel = abs(a - b) / b
    same_ids = ours["idsSHA256"] == theirs["ids_sha256"]
    ok &= rel <= 1e-3 and same_ids
    print(f"| {n} | {r['modelType']} | {r['description']} | {r['logitsMaxAbs']:.1e} | {r['lossAbs']:.1e} | "
          f"{r['gradientMaxRel']:.1e} ({r['gradientTensors']}, {r['biasTensors']}) | {r['element1MaxRel']:.1e} "
          f"({r['units']}) | {r['loraLossRel']:.1e} | {r['loraStepMaxRel']:.1e} ({r['loraStepConditionedMaxRel']:.1e}) | "
          f"{a:.4f} | {b:.4f} | {rel:.1e}{'' if same_ids else ' (ids differ)'} |")
print()
print("| tokenizer | WikiText-2 test ids | PTB test ids |")
print("|---|---|---|")
ids = {}
for m in re.finditer(r"^(\S+)/(wikitext2_test|ptb_test): (\d+) ids", log, re.M):
    ids.setdefault(m.group(1), {})[m.group(2)] = int(m.group(3))
failed = set(re.findall(r'^✘.*name → "([^"]+)", file → "([^"]+)"', log, re.M))
for name, files in sorted(ids.items()):
    cells = []
    for f in ("wikitext2_test", "ptb_test"):
        bad = (name, f) in failed
        ok &= not bad
        cells.append(f"{files.get(f, '?')} ids, {'DIFFER' if bad else 'identical'}")
    print(f"| {name} | {cells[0]} | {cells[1]} |")
print()
print("all checks hold" if ok else "SOME CHECKS FAILED (see above and the ✘ lines)")
sys.exit(0 if ok else 1)
PY
