#!/usr/bin/env bash
# Perplexity of pruning recipes (criterion × allocation × rounds × spans) on SmolLM2-135M-Instruct Q4_1 at the two
# parameter counts of the baselines (local r = 0.25 and r = 0.5), no tuning: `llmprune prune` (calibration 10 × 64
# ptb-valid tokens, seed from --seed, 42) then `llmprune eval --max-windows W` (--windows, 128) of the written model on wikitext2 and
# ptb (the numbers of `prune --eval wikitext2,ptb --eval-windows 128`, without its evaluation of the unpruned model).
# One JSON report per recipe lands in OUTDIR (recipes already there are skipped); a table is printed at the end.
#   scripts/bench/alloc_quality.sh [--bin BIN] [--out OUTDIR] [--seed S] [--only REGEX] [--threads T] [--windows 128]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="$root/.build/release/llmprune" outdir="" seed=42 only="." threads=2 windows=128
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) bin="$2"; shift 2 ;;
        --out) outdir="$2"; shift 2 ;;
        --seed) seed="$2"; shift 2 ;;
        --only) only="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --windows) windows="$2"; shift 2 ;;
        *) echo "alloc_quality.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
model="$root/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -n "$outdir" ] || outdir="$(mktemp -d)"
mkdir -p "$outdir"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
# keep-fractions of the local plans' counts: 118,589,760 and 95,586,624 of 134,515,008
f25=0.881610 f50=0.710602
recipes=(
  "local-element1-r25|--ratio 0.25"
  "global-std-fluct-r50|--ratio 0.5 --criterion fluctuation --allocation global --global-normalization standardized"
  "global-std-element1-r50|--ratio 0.5 --allocation global --global-normalization standardized"
  "local-element1-r50|--ratio 0.5"
  "global-param-element1-r50|--ratio 0.5 --allocation global"
  "global-std-fluct-r25|--ratio 0.25 --criterion fluctuation --allocation global --global-normalization standardized"
  "global-std-element1-r25|--ratio 0.25 --allocation global --global-normalization standardized"
  "local-fluct-r50|--ratio 0.5 --criterion fluctuation"
  "local-element1-k4-r50|--ratio 0.5 --iterative-steps 4"
  "global-param-fluct-r50|--ratio 0.5 --criterion fluctuation --allocation global"
  "local-fluct-r25|--ratio 0.25 --criterion fluctuation"
  "global-param-fluct-r25|--ratio 0.25 --criterion fluctuation --allocation global"
  "local-fluct-k4-r50|--ratio 0.5 --criterion fluctuation --iterative-steps 4"
  "local-element1-attn4:28-mlp2:30-r50|--target-params $f50 --attention-layers 4:28 --mlp-layers 2:30"
  "local-element1-linear1:3-r50|--ratio 0.5 --ratio-schedule linear:1:3"
  "global-std-fluct-all-r50|--target-params $f50 --criterion fluctuation --allocation global --global-normalization standardized --layers 0:30"
  "global-std-element1-k4-r50|--ratio 0.5 --allocation global --global-normalization standardized --iterative-steps 4"
  "local-element1-k4-r25|--ratio 0.25 --iterative-steps 4"
  "local-element1-linear1:3-r25|--ratio 0.25 --ratio-schedule linear:1:3"
)
for rec in "${recipes[@]}"; do
    name="${rec%%|*}" flags="${rec#*|}"
    [[ "$name" =~ $only ]] || continue
    [ -s "$outdir/$name.json" ] && continue        # done in an earlier run of the same OUTDIR
    echo "== $name: $flags" >&2
    # prune without --eval (it would also evaluate the unpruned model), then evaluate the written model
    # shellcheck disable=SC2086
    if "$bin" prune --model "$model" --out "$tmp/m" --force --seed "$seed" --threads "$threads" --json --quiet $flags \
            > "$tmp/prune.json" 2> "$outdir/$name.err" \
        && "$bin" eval --model "$tmp/m" --dataset wikitext2 --max-windows "$windows" --threads "$threads" --json --quiet \
            > "$tmp/wikitext2.json" 2>> "$outdir/$name.err" \
        && "$bin" eval --model "$tmp/m" --dataset ptb --max-windows "$windows" --threads "$threads" --json --quiet \
            > "$tmp/ptb.json" 2>> "$outdir/$name.err"; then
        python3 - "$tmp" "$flags" > "$outdir/$name.json" <<'PY'
import json, sys
d = sys.argv[1]
r = json.load(open(f"{d}/prune.json"))
r["flags"] = sys.argv[2]
r["perplexityAfter"] = {k: json.load(open(f"{d}/{k}.json"))["result"]["perplexity"] for k in ("wikitext2", "ptb")}
print(json.dumps(r))
PY
    else
        echo "   failed: $(cat "$outdir/$name.err")" >&2
    fi
    rm -rf "$tmp/m" "$tmp/m.plan.json"
done
python3 - "$outdir" <<'PY'
import json, pathlib, sys
rows = []
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    try:
        r = json.loads(f.read_text())
    except Exception:
        continue
    a = r["perplexityAfter"]
    rows.append((f.stem, r["parametersAfter"], a.get("wikitext2", float("nan")), a.get("ptb", float("nan")), r["seconds"]["total"]))
print(f"{'recipe':44s} {'params':>12s} {'wikitext2':>10s} {'ptb':>10s} {'seconds':>8s}")
for n, p, w, t, s in rows:
    print(f"{n:44s} {p:12,d} {w:10.2f} {t:10.2f} {s:8.1f}")
PY
