#!/usr/bin/env bash
# Starts llmprune on N MPI ranks with MPICH's mpiexec (Hydra).
#   cluster/launch.sh -n N [-f HOSTFILE] [-- ] <llmprune arguments>
# The binary must exist at the same path on every host (build with `swift build -c release`).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
n=1 hostfile=""
while [ $# -gt 0 ]; do
    case "$1" in
        -n) n="$2"; shift 2 ;;
        -f) hostfile="$2"; shift 2 ;;
        --) shift; break ;;
        *) break ;;
    esac
done
bin="${LLMPRUNE_BIN:-$root/.build/release/llmprune}"
[ -x "$bin" ] || { echo "launch.sh: $bin not found (run: swift build -c release)" >&2; exit 1; }
command -v mpiexec >/dev/null || { echo "launch.sh: mpiexec not found (apt-get install mpich)" >&2; exit 1; }
args=(-n "$n")
[ -n "$hostfile" ] && args+=(-f "$hostfile")
exec mpiexec "${args[@]}" "$bin" "$@"
