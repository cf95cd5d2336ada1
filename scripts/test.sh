#!/usr/bin/env bash
# Installs what the tests need (apt packages, the default model), builds, and runs the whole suite.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/setup.sh >/dev/null
# Package.swift dependencies must equal the imports: a second, cheap, before the build.
scripts/check_deps.sh
# The per-rank memory budget (cluster/mem-budget.sh) on its own: a few seconds, skipped where no mechanism exists.
mb="$(scripts/test_mem_budget.sh)" || { echo "$mb"; exit 1; }
echo "$mb" | grep -Ev "^  ok " || true
swift build --build-tests 2>&1 | grep -v "prohibited flag" || true
# Two nodes as network namespaces (cluster/netns.sh): prune, tune and a node cut off, through the binary just built;
# about 20–45 s, skipped with one line where namespaces cannot be made.
LLMPRUNE_BIN="$root/.build/debug/llmprune" scripts/test_netns.sh
# cluster/slurm.sbatch under a real one-host Slurm (installed with apt if missing): prune and tune with mpiexec and
# srun --mpi=pmi2, jobs requeued mid-phase resuming; about 20–35 s, skipped with one line without root or packages.
LLMPRUNE_BIN="$root/.build/debug/llmprune" scripts/test_slurm.sh
swift test 2>&1 | grep -v "prohibited flag"
exit "${PIPESTATUS[0]}"
