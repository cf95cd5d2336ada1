#!/usr/bin/env bash
# The quality matrix of issue 18: SmolLM2 pruned without tuning to the two parameter counts of LLM-Pruner's local
# element1 recipe at r = 0.25 and r = 0.5, by each recipe below; perplexity on WikiText-2 and PTB over the first
# W windows of 128 tokens (the project's text protocol) and, with --full, over the whole files too (one pass per file:
# `eval --also-first W` gives both numbers); time and peak RSS of each prune. Writes the table to stdout and, with
# --write, into docs/results.md between the quality markers.
#   scripts/bench/quality.sh [--model PATH] [--windows 128] [--full] [--seeds 42] [--rows NAME,NAME] [--write]
#                            [--threads 2] [--bin PATH] [--results FILE] [--table-only]
# --results FILE keeps every measured row (JSON lines) in FILE instead of a scratch file: a run skips the rows FILE
# already holds (same row, ratio, seed, windows and --full), so an interrupted matrix resumes where it stopped, and
# the table is made from all of FILE's rows — several runs (other rows, other seeds) build one table. --table-only
# prints (and with --write writes) the table of FILE's rows without measuring anything.
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
model="" windows=128 full=0 seeds="42" rows="" write=0 threads=2 binarg="" results="" tableonly=0
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
        --results) results="$2"; shift 2 ;;
        --table-only) tableonly=1; shift ;;
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
if [ -z "$results" ]; then results="$out/results.jsonl"; : > "$results"; else touch "$results"; fi
# have ROW RATIO SEED: whether $results already holds that row at these windows and --full setting.
have() {
    python3 - "$results" "$1" "$2" "$3" "$windows" "$full" <<'PY'
import json, sys
f, row, ratio, seed, windows, full = sys.argv[1:]
for line in open(f):
    r = json.loads(line)
    if (r["row"], r["ratio"], r["seed"], r.get("windows"), r.get("fullFile")) == (row, float(ratio), int(seed), int(windows), full == "1") \
            and "error" not in r:
        sys.exit(0)
sys.exit(1)
PY
}
# evaluate DIR: perplexity of the model in DIR on WikiText-2 and PTB (first $windows windows; with --full the whole
# file, the first windows from the same pass) as JSON {"first": {...}, "full": {...}}.
evaluate() {
    for ds in wikitext2 ptb; do
        if [ "$full" = 1 ]; then
            "$bin" eval --model "$1" --dataset "$ds" --also-first "$windows" --threads "$threads" --json --quiet > "$1.eval-$ds.json"
        else
            "$bin" eval --model "$1" --dataset "$ds" --max-windows "$windows" --threads "$threads" --json --quiet > "$1.eval-$ds.json"
        fi
    done
    python3 - "$1" "$full" <<'PY'
import json, sys
d, full = sys.argv[1], sys.argv[2] == "1"
r = {ds: json.load(open(f"{d}.eval-{ds}.json"))["result"] for ds in ("wikitext2", "ptb")}
print(json.dumps({"first": {ds: (v["first"] if full else v)["perplexity"] for ds, v in r.items()},
                  "full": {ds: v["perplexity"] for ds, v in r.items()} if full else {},
                  "evalSeconds": sum(v["seconds"] for v in r.values())}))
PY
}
if [ "$tableonly" = 1 ]; then
    [ -s "$results" ] || { echo "quality.sh: --table-only needs --results FILE with rows" >&2; exit 2; }
else
if ! have base 0 0; then
    echo "== unpruned" >&2
    ln -s "$model" "$out/base.gguf"
    python3 -c "import json,sys; e=json.loads(sys.argv[1]); e.update(row='base', ratio=0.0, seed=0, windows=int(sys.argv[2]), fullFile=sys.argv[3]=='1'); print(json.dumps(e))" \
        "$(evaluate "$out/base.gguf")" "$windows" "$full" >> "$results"
fi
for seed in ${seeds//,/ }; do
  for r in 0.25 0.5; do
    # The reference count at this ratio (and seed): the LLM-Pruner plan's parametersAfter.
    "$bin" plan --model "$model" --plan "$out/ref-$r-$seed.json" --ratio "$r" --seed "$seed" --threads "$threads" \
        --json --quiet --force > "$out/ref-$r-$seed.out"
    target=$(python3 -c "import json,sys; p=json.load(open(sys.argv[1])); print(p['parametersAfter']/p['parametersBefore'])" "$out/ref-$r-$seed.json")
    for row in "${order[@]}"; do
        [ -n "${recipes[$row]+x}" ] || { echo "quality.sh: unknown row $row" >&2; exit 2; }
        if have "$row" "$r" "$seed"; then echo "== seed $seed, r=$r, $row: already in $results" >&2; continue; fi
        flags="${recipes[$row]//@TARGET@/--target-params $target}"
        dir="$out/$row-$r-$seed"
        echo "== seed $seed, r=$r, $row: $flags ($(date -u +%H:%M))" >&2
        # f32: the written model is the one the cut computed (the default from a GGUF is bf16), so the evaluation of
        # the file is the evaluation of the cut.
        # shellcheck disable=SC2086
        if ! "$bin" prune --model "$model" --out "$dir" --dtype f32 --ratio "$r" --seed "$seed" $flags --threads "$threads" \
            --json --quiet > "$dir.json" 2> "$dir.err"; then
            echo "quality.sh: $row at r=$r failed: $(tail -n 1 "$dir.err")" >&2
            python3 -c "import json,sys; print(json.dumps({'row':sys.argv[1],'ratio':float(sys.argv[2]),'seed':int(sys.argv[3]),'error':sys.argv[4]}))" \
                "$row" "$r" "$seed" "$(tail -n 1 "$dir.err")" >> "$results"
            continue
        fi
        python3 - "$dir.json" "$row" "$r" "$seed" "$(evaluate "$dir")" "$flags" "$windows" "$full" >> "$results" <<'PY'
import json, sys
p, e = json.load(open(sys.argv[1])), json.loads(sys.argv[5])
print(json.dumps({"row": sys.argv[2], "ratio": float(sys.argv[3]), "seed": int(sys.argv[4]), "flags": sys.argv[6],
                  "windows": int(sys.argv[7]), "fullFile": sys.argv[8] == "1",
                  "params": p["parametersAfter"], "before": p["parametersBefore"], "first": e["first"], "full": e["full"],
                  "seconds": p["seconds"]["total"], "evalSeconds": e["evalSeconds"], "peakRSSMB": p["peakRSSMB"]}))
PY
        rm -rf "$dir"
    done
  done
done
fi
python3 - "$results" "$windows" "$write" "$root/docs/results.md" <<'PY'
import json, sys
W, write, doc = int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
# The newest measurement of each (row, ratio, seed) at these windows; a full-file one wins over a first-W-only one.
latest = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("windows", W) != W: continue
    k = (r["row"], r["ratio"], r["seed"])
    if k not in latest or "error" in latest[k] or r.get("fullFile") or not latest[k].get("fullFile"):
        latest[k] = r
rows = list(latest.values())
ok = [r for r in rows if "error" not in r]
base = latest.get(("base", 0.0, 0), {})
f = lambda x: f"{x:.2f}" if x is not None else "—"
lines = []
if base:
    lines.append(f"Unpruned: WikiText-2 {f(base['first'].get('wikitext2'))} (first {W} windows), "
                 f"{f(base['full'].get('wikitext2'))} (full file); PTB {f(base['first'].get('ptb'))}, {f(base['full'].get('ptb'))}.\n")
order = ["llm-pruner", "global-std", "recon", "calib", "iterative", "flap", "fluct-recon", "obs", "best", "channel",
         "depth-bi", "depth-taylor"]
for seed in sorted({r["seed"] for r in rows if r["row"] != "base"}):
    lines.append(f"Seed {seed}.\n")
    lines.append(f"| recipe | r | parameters (Δ vs LLM-Pruner) | WikiText-2 first {W} | PTB first {W} | WikiText-2 full | PTB full | "
                 f"WikiText-2 first {W} vs LLM-Pruner | LLM-Pruner's increase removed | prune s | prune peak RSS MB |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for ratio in (0.25, 0.5):
        ref = latest.get(("llm-pruner", ratio, seed))
        ref = ref if ref and "error" not in ref else None
        here = sorted((r for r in rows if r["seed"] == seed and r["ratio"] == ratio),
                      key=lambda r: order.index(r["row"]) if r["row"] in order else len(order))
        for r in here:
            if "error" in r:
                lines.append(f"| {r['row']} | {ratio} | failed: {r['error']} | | | | | | | | |"); continue
            dp = f" ({100 * (r['params'] / ref['params'] - 1):+.2f}%)" if ref else ""
            gain = f"{100 * (r['first']['wikitext2'] / ref['first']['wikitext2'] - 1):+.1f}%" if ref else ""
            # FLAP's yardstick: the share of LLM-Pruner's rise over the unpruned perplexity that a recipe takes away
            # (FLAP removes ~70% of it on LLaMA-7B at 20%; arXiv 2312.11983).
            b0 = base.get("first", {}).get("wikitext2")
            removed = (f"{100 * (ref['first']['wikitext2'] - r['first']['wikitext2']) / (ref['first']['wikitext2'] - b0):.0f}%"
                       if ref and b0 else "")
            lines.append(f"| {r['row']} | {ratio} | {r['params']:,}{dp} | {f(r['first']['wikitext2'])} | {f(r['first']['ptb'])} | "
                         f"{f(r['full'].get('wikitext2'))} | {f(r['full'].get('ptb'))} | {gain} | {removed} | {r['seconds']:.1f} | {r['peakRSSMB']:.0f} |")
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
