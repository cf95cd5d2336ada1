#!/usr/bin/env bash
# Compile bf16_gemm.c against Debian's OpenBLAS and oneDNN (libopenblas-dev, libdnnl-dev) and run it with 1 and 2
# threads, then the same shapes in torch (the reference venv) as the bar. Waits (bounded) for a quiet machine and
# prints the load beside every run.  Usage: scripts/bench/bf16_gemm/run.sh [REPS] [OUTDIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
reps=${1:-5}
out=${2:-$(mktemp -d)}
mkdir -p "$out"
for p in libopenblas-dev libdnnl-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || { echo "missing Debian package $p (apt-get install $p)" >&2; exit 1; }
done
inc=$(pkg-config --cflags openblas 2>/dev/null || echo -I/usr/include/x86_64-linux-gnu/openblas-pthread)
gcc -O2 -Wall -fopenmp $inc -o "$out/bf16_gemm" "$here/bf16_gemm.c" -lopenblas -ldnnl -ldl -lm
grep -q avx512_bf16 /proc/cpuinfo || echo "# note: this CPU has no avx512_bf16; oneDNN will fall back" >&2

wait_quiet() {  # up to ${QUIET_WAIT:-300}s for the 1-minute load to drop below ${QUIET_LOAD:-1.3}
  local deadline=$((SECONDS + ${QUIET_WAIT:-300}))
  while awk -v l="${QUIET_LOAD:-1.3}" '{exit !($1 >= l)}' /proc/loadavg && ((SECONDS < deadline)); do sleep 10; done
  echo "# $(date -u +%H:%M:%SZ) load before run: $(cut -d' ' -f1-3 /proc/loadavg)"
}

py=${TORCH_PY:-$(cd "$here" && cd "$(git rev-parse --git-common-dir)/.." && pwd)/.venv-ref/bin/python}
for t in 1 2; do
  wait_quiet | tee "$out/c_t$t.txt"
  OMP_NUM_THREADS=$t "$out/bf16_gemm" "$t" "$reps" | tee -a "$out/c_t$t.txt"
  echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/c_t$t.txt"
  if [ -x "$py" ]; then
    wait_quiet | tee "$out/torch_t$t.txt"
    OMP_NUM_THREADS=$t "$py" "$here/torch_bf16.py" "$t" "$reps" | tee -a "$out/torch_t$t.txt"
    echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/torch_t$t.txt"
  else
    echo "# no torch venv at $py (set TORCH_PY); torch bar skipped"
  fi
done
echo "# results in $out"
