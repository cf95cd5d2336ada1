#!/usr/bin/env bash
# Run a reference script inside the venv:  scripts/reference/run.sh SCRIPT.py [args...]
# Threads: --threads N on the command line, else $THREADS, else 2. OMP_NUM_THREADS is set
# accordingly and the script calls torch.set_num_threads (common.set_threads).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[ $# -ge 1 ] || { echo "usage: $0 SCRIPT.py [args...]" >&2; exit 2; }
name="$1"; shift
script="$name"
[ -f "$script" ] || script="$here/$name"
[ -f "$script" ] || { echo "run.sh: no such script: $name" >&2; exit 2; }

threads="${THREADS:-2}"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --threads) threads="${args[$((i + 1))]:-$threads}" ;;
    --threads=*) threads="${args[$i]#--threads=}" ;;
  esac
done

py="$("$here/setup_venv.sh")"
export THREADS="$threads"
export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" "$script" "$@"
