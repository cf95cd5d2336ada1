#!/usr/bin/env bash
# Starts llmprune on N ranks on this host with MPICH's mpiexec (Hydra).
#   cluster/local.sh [--restarts K] N [--] <llmprune arguments>
#   e.g. cluster/local.sh 3 cluster prune --model models/smol --out /tmp/smol-pruned --ratio 0.25
# Binary: $LLMPRUNE_BIN, else .build/release/llmprune. If `llmprune cluster prune` fails and its job directory
# is known (--resume D, --job-dir D, or --out O → O.job), prints `llmprune cluster status D` and the resume
# command; with --restarts K, relaunches with --resume up to K times.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cluster_self=local.sh
usage() { echo "usage: cluster/local.sh [--restarts K] N [--] <llmprune arguments>" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --restarts) [ $# -ge 2 ] || usage; cluster_restarts="$2"; shift 2 ;;
        *) break ;;
    esac
done
[ $# -ge 1 ] || usage
n="$1"; shift
[ "${1-}" = -- ] && shift
case "$n" in '' | *[!0-9]* | 0) usage ;; esac
case "$cluster_restarts" in '' | *[!0-9]*) usage ;; esac
cluster_setup
cluster_mpi=(mpiexec -n "$n" -hosts localhost)
cluster_again=("$0" "$n")
cluster_args=("$@")
cluster_run
