#!/usr/bin/env bash
# Idempotently create the PyTorch reference venv and print its python path.
#   venv location: $LLMPRUNE_VENV, else <repo>/.venv-ref (git-ignored)
#   torch: a local CPU wheel if one is found (find / -maxdepth 3 -name 'torch-*cpu*.whl'),
#          else `pip install torch` from PyPI.
#   llama.cpp: with LLMPRUNE_LLAMA_CPP=1 (scripts/bench/gguf_export.sh sets it), also llama-cpp-python, which
#          compiles llama.cpp from source (apt packages cmake and build-essential are installed first if missing).
# Progress goes to stderr; stdout is only the python path.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${LLMPRUNE_VENV:-$repo/.venv-ref}"
py="$venv/bin/python"
pkgs=(transformers gguf peft safetensors numpy tokenizers sentencepiece protobuf)

check() {
  [ -x "$py" ] && "$py" - <<'PY' >/dev/null 2>&1
import torch, transformers, gguf, peft, safetensors, numpy, tokenizers, sentencepiece, google.protobuf
PY
}

want_llama_cpp="${LLMPRUNE_LLAMA_CPP:-0}"
check_llama_cpp() {
  [ "$want_llama_cpp" != 1 ] || "$py" -c 'import llama_cpp' >/dev/null 2>&1
}

if check && check_llama_cpp; then
  echo "$py"
  exit 0
fi

{
  if [ ! -x "$py" ]; then
    base="${PYTHON:-}"
    if [ -z "$base" ]; then
      for c in python3.11 python3 python; do
        if command -v "$c" >/dev/null 2>&1; then base="$c"; break; fi
      done
    fi
    [ -n "$base" ] || { echo "setup_venv: no python3 found" >&2; exit 1; }
    echo "setup_venv: creating $venv with $base" >&2
    "$base" -m venv "$venv"
  fi
  "$py" -m pip install --upgrade pip >&2
  if ! "$py" -c 'import torch' >/dev/null 2>&1; then
    pyver="$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
    wheel="${TORCH_WHEEL:-}"
    if [ -z "$wheel" ]; then
      # prefer a wheel matching this interpreter
      wheel="$(find / -maxdepth 3 -name "torch-*cpu*-${pyver}-*.whl" 2>/dev/null | sort | tail -n1 || true)"
    fi
    if [ -n "$wheel" ] && [ -f "$wheel" ]; then
      echo "setup_venv: installing torch from local wheel $wheel" >&2
      "$py" -m pip install "$wheel" >&2
    else
      echo "setup_venv: no local torch wheel for $pyver; installing torch from PyPI" >&2
      "$py" -m pip install torch >&2
    fi
  fi
  check || "$py" -m pip install "${pkgs[@]}" >&2
  if ! check_llama_cpp; then
    if ! command -v cmake >/dev/null 2>&1 || ! command -v g++ >/dev/null 2>&1 || ! command -v make >/dev/null 2>&1; then
      echo "setup_venv: installing cmake and build-essential (apt) to compile llama.cpp" >&2
      apt-get update >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y cmake build-essential >&2
    fi
    echo "setup_venv: installing llama-cpp-python (compiles llama.cpp; several minutes on 2 cores)" >&2
    CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" "$py" -m pip install llama-cpp-python >&2
  fi
} 1>&2

check || { echo "setup_venv: venv at $venv is still incomplete" >&2; exit 1; }
check_llama_cpp || { echo "setup_venv: llama-cpp-python did not install into $venv" >&2; exit 1; }
echo "$py"
