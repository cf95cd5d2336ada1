#!/usr/bin/env bash
# Starts llmprune on N MPI ranks with MPICH's mpiexec (Hydra), on the hosts of a hostfile if given.
#   cluster/launch.sh [--srun] -n N [-f HOSTFILE] [-ppn P] [--restarts K] [--] <llmprune arguments>
# --srun: inside a Slurm allocation, `srun --mpi=pmi2 -n N [--ntasks-per-node P]` instead of mpiexec (no -f).
# The binary must exist at the same path on every host (build with `swift build -c release`, or set
# LLMPRUNE_BIN). Failure reporting and --restarts are as in cluster/local.sh (shared: cluster/lib.sh).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cluster_self=launch.sh
n=1 hostfile="" ppn="" cluster_launcher=mpiexec
while [ $# -gt 0 ]; do
    case "$1" in
        -n) n="$2"; shift 2 ;;
        -f) hostfile="$2"; shift 2 ;;
        -ppn) ppn="$2"; shift 2 ;;
        --restarts) cluster_restarts="$2"; shift 2 ;;
        --srun) cluster_launcher=srun; shift ;;
        --) shift; break ;;
        *) break ;;
    esac
done
cluster_setup
if [ "$cluster_launcher" = srun ]; then
    [ -z "$hostfile" ] || { echo "launch.sh: --srun takes its hosts from the Slurm allocation, not from -f" >&2; exit 2; }
    cluster_mpi=(srun --mpi=pmi2 -n "$n")
    [ -n "$ppn" ] && cluster_mpi+=(--ntasks-per-node "$ppn")
    cluster_again=("$0" --srun -n "$n" ${ppn:+-ppn "$ppn"} --)
else
    cluster_mpi=(mpiexec -n "$n")
    [ -n "$hostfile" ] && cluster_mpi+=(-f "$hostfile")
    [ -n "$ppn" ] && cluster_mpi+=(-ppn "$ppn")
    cluster_again=("$0" "${cluster_mpi[@]:1}" --)
fi
if [ -n "$hostfile" ] && [ "${1-}" = cluster ] && [[ " $* " != *" --bind"* ]]; then
    echo "launch.sh: warning: no --bind: the coordinator listens on 127.0.0.1 only, ranks on other hosts cannot reach it" >&2
fi
cluster_args=("$@")
cluster_run
