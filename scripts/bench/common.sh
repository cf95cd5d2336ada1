# Sourced by the bench scripts after their flags are parsed: resolves the model (default: the one
# scripts/setup.sh fetches), builds the release binary, and makes a scratch directory removed on exit.
# Sets: root, model, bin, out.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
default_model="$(scripts/setup.sh | tail -n 1)"
model="${model:-$default_model}"
swift build -c release --product llmprune 2>&1 | grep -v "prohibited flag" | tail -n 1 >&2
bin=.build/release/llmprune
out="$(mktemp -d)"; trap 'rm -rf "$out"' EXIT

# calibration_ids PLAN_JSON MODEL OUT_DIR: writes OUT_DIR/ids.json ({"ids": the plan's calibration windows}, what
# scripts/reference/importance.py reads) and prints the plan's scored layers "START END".
calibration_ids() {
    "$bin" tokenize --model "$2" --dataset ptb-valid --out "$3/ids.bin" > /dev/null
    python3 - "$1" "$3" <<'PY'
import json, struct, sys
plan = json.load(open(sys.argv[1])); d = sys.argv[2]
cal = plan["calibration"]
raw = open(f"{d}/ids.bin", "rb").read()
ids = struct.unpack(f"<{len(raw) // 4}i", raw)
L = cal["sampleLength"]
json.dump({"ids": [list(ids[o:o + L]) for o in cal["offsets"]]}, open(f"{d}/ids.json", "w"))
print(plan["settings"]["layerStart"], plan["settings"]["layerEnd"])
PY
}
