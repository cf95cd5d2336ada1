#!/usr/bin/env bash
# The quality matrix of issue 18: SmolLM2 pruned without tuning to the two parameter counts of LLM-Pruner's local
# element1 recipe at r = 0.25 and r = 0.5, by each recipe below; perplexity on WikiText-2 and PTB over the first
# W windows of 128 tokens (the project's text protocol) and, with --full, over the whole files; time and peak RSS of
# each prune. Writes the table to stdout and, with --write, into docs/results.md between the quality markers.
#   scripts/bench/quality.sh [--model PATH] [--windows 128] [--full] [--seeds 42] [--rows NAME,NAME] [--write]
#                            [--threads 2] [--bin PATH]
# Rows (the recipes' flags are in the table `recipes` below; each is added on top of `--ratio R`):
#   llm-pruner   LLM-Pruner's recipe: local element1, 10×64 ptb-valid calibration
#   global-std   + global allocation over standardized scores (FLAP's ranking)
#   recon        + least-squares refit of o_proj / down_proj (256×128 ptb-valid tokens, ridge 0.1)
#   calib        + larger Taylor calibration (64×128)
#   iterative    + iterative pruning in 4 rounds
#   flap         FLAP's fluctuation criterion, standardized global ranking, reconstruction
#   fluct-recon  the fluctuation criterion (local), reconstruction
#   obs          structured OBS selection (128×128 calibration tokens), reconstruction
#   best         `--recipe best` (what was found best: obs, reconstruction with ridge 0.3, LLM-Pruner's count cut
#                over layers 6:L-4; docs/pruning.md)
#   channel      channel-wise (hidden size), at the same counts
#   depth-bi     depth: whole blocks by ShortGPT's block influence, at the same counts
#   depth-taylor depth: whole blocks by Taylor block importance, at the same counts
set -euo pipefail
model="" windows=128 full=0 seeds="42" rows="" write=0 threads=2 binarg=""
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --windows) windows="$2"; shift 2 ;;
        --full) full=1; shift ;;
        --seeds) seeds="$2"; shift 2 ;;
        --rows) rows="$2"; shift 2 ;;
        --write) write=1; shift ;;
        --threads) threads="$2"; shift 2 ;;
        --bin) binarg="$2"; shift 2 ;;
        *) echo "quality.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [ -n "$binarg" ]; then
    root="$(cd "$(dirname "$0")/../.." && pwd)"; cd "$root"
    model="${model:-$(scripts/setup.sh | tail -n 1)}"; bin="$binarg"
    out="$(mktemp -d)"; trap 'rm -rf "$out"' EXIT
else
    source "$(dirname "$0")/common.sh"
fi
# Parameter counts of LLM-Pruner's recipe (local element1, layers 4:28) at r = 0.25 and 0.5: the other strategies
# are cut to these counts with --target-params (the fraction of the unpruned model's parameters to keep).
declare -A recipes=(
    [llm-pruner]=""
    [global-std]="--allocation global --global-normalization standardized"
    [recon]="--allocation global --global-normalization standardized --reconstruct lstsq"
    [calib]="--allocation global --global-normalization standardized --reconstruct lstsq --calib-samples 64 --calib-len 128"
    [iterative]="--allocation global --global-normalization standardized --reconstruct lstsq --iterative-steps 4"
    [flap]="--criterion fluctuation --allocation global --global-normalization standardized --reconstruct lstsq"
    [fluct-recon]="--criterion fluctuation --reconstruct lstsq"
    [obs]="--criterion obs --calib-samples 128 --calib-len 128 --reconstruct lstsq"
    [best]="--recipe best"
    [channel]="--strategy channel @TARGET@"
    [depth-bi]="--strategy layer --block-importance influence @TARGET@"
    [depth-taylor]="--strategy layer --block-importance taylor @TARGET@"
)
order=(llm-pruner global-std recon calib iterative flap fluct-recon obs best channel depth-bi depth-taylor)
[ -n "$rows" ] && IFS=, read -r -a order <<< "$rows"
echo "quality.sh: $(uptime)" >&2
results="$out/results.jsonl"; : > "$results"
for seed in ${seeds//,/ }; do
  for r in 0.25 0.5; do
    # The reference count at this ratio (and seed): the LLM-Pruner plan's parametersAfter.
    "$bin" plan --model "$model" --plan "$out/ref-$r-$seed.json" --ratio "$r" --seed "$seed" --threads "$threads" \
        --json --quiet --force > "$out/ref-$r-$seed.out"
    target=$(python3 -c "import json,sys; p=json.load(open(sys.argv[1])); print(p['parametersAfter']/p['parametersBefore'])" "$out/ref-$r-$seed.json")
    for row in "${order[@]}"; do
        [ -n "${recipes[$row]+x}" ] || { echo "quality.sh: unknown row $row" >&2; exit 2; }
        flags="${recipes[$row]//@TARGET@/--target-params $target}"
        dir="$out/$row-$r-$seed"
        echo "== seed $seed, r=$r, $row: $flags" >&2
        # shellcheck disable=SC2086
        if ! "$bin" prune --model "$model" --out "$dir" --ratio "$r" --seed "$seed" $flags --threads "$threads" \
            --eval wikitext2,ptb --eval-windows "$windows" --json --quiet > "$dir.json" 2> "$dir.err"; then
            echo "quality.sh: $row at r=$r failed: $(tail -n 1 "$dir.err")" >&2
            python3 -c "import json,sys; print(json.dumps({'row':sys.argv[1],'ratio':float(sys.argv[2]),'seed':int(sys.argv[3]),'error':sys.argv[4]}))" \
                "$row" "$r" "$seed" "$(tail -n 1 "$dir.err")" >> "$results"
            continue
        fi
        fullw="{}"
        if [ "$full" = 1 ]; then
            for ds in wikitext2 ptb; do
                "$bin" eval --model "$dir" --dataset "$ds" --threads "$threads" --json --quiet > "$dir.full-$ds.json"
            done
            fullw=$(python3 -c "import json,sys; print(json.dumps({d: json.load(open(f'{sys.argv[1]}.full-{d}.json'))['result']['perplexity'] for d in ('wikitext2','ptb')}))" "$dir")
        fi
        python3 - "$dir.json" "$row" "$r" "$seed" "$fullw" "$flags" >> "$results" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
print(json.dumps({"row": sys.argv[2], "ratio": float(sys.argv[3]), "seed": int(sys.argv[4]), "flags": sys.argv[6],
                  "params": p["parametersAfter"], "before": p["parametersBefore"], "first": p["perplexityAfter"],
                  "base": p["perplexityBefore"], "full": json.loads(sys.argv[5]), "seconds": p["seconds"]["total"],
                  "evalSeconds": p["seconds"]["evalBefore"] + p["seconds"]["evalAfter"], "peakRSSMB": p["peakRSSMB"]}))
PY
        rm -rf "$dir"
    done
  done
done
python3 - "$results" "$windows" "$write" "$root/docs/results.md" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
W, write, doc = sys.argv[2], sys.argv[3] == "1", sys.argv[4]
ok = [r for r in rows if "error" not in r]
lines = []
for seed in sorted({r["seed"] for r in rows}):
    base = next((r["base"] for r in ok if r["seed"] == seed), {})
    lines.append(f"Seed {seed} (unpruned, first {W} windows: WikiText-2 {base.get('wikitext2', float('nan')):.2f}, "
                 f"PTB {base.get('ptb', float('nan')):.2f}).\n")
    lines.append(f"| recipe | r | parameters (Δ vs LLM-Pruner) | WikiText-2 first {W} | PTB first {W} | WikiText-2 full | PTB full | vs LLM-Pruner (WikiText-2) | prune s | peak RSS MB |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for ratio in (0.25, 0.5):
        ref = next((r for r in ok if r["seed"] == seed and r["ratio"] == ratio and r["row"] == "llm-pruner"), None)
        for r in rows:
            if r["seed"] != seed or r["ratio"] != ratio: continue
            if "error" in r:
                lines.append(f"| {r['row']} | {ratio} | failed: {r['error']} | | | | | | | |"); continue
            dp = f" ({100 * (r['params'] / ref['params'] - 1):+.2f}%)" if ref else ""
            gain = f"{100 * (1 - r['first']['wikitext2'] / ref['first']['wikitext2']):+.1f}% lower" if ref else ""
            fw, fp = r["full"].get("wikitext2"), r["full"].get("ptb")
            f = lambda x: f"{x:.2f}" if x is not None else "—"
            lines.append(f"| {r['row']} | {ratio} | {r['params']:,}{dp} | {r['first']['wikitext2']:.2f} | {r['first']['ptb']:.2f} | "
                         f"{f(fw)} | {f(fp)} | {gain} | {r['seconds'] - r['evalSeconds']:.1f} | {r['peakRSSMB']:.0f} |")
    lines.append("")
table = "\n".join(lines)
print(table)
if write:
    text = open(doc).read()
    a, b = "<!-- quality:begin -->", "<!-- quality:end -->"
    block = f"{a}\n{table}\n{b}"
    text = text[:text.index(a)] + block + text[text.index(b) + len(b):] if a in text else text.rstrip("\n") + "\n\n## Quality without tuning (issue 18)\n\n`scripts/bench/quality.sh`\n\n" + block + "\n"
    open(doc, "w").write(text)
PY
