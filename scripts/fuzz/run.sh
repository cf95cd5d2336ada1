#!/usr/bin/env bash
# Builds the libFuzzer harnesses against the package's modules and runs each target for a bounded time on ONE
# core. Usage: scripts/fuzz/run.sh [SECONDS_PER_TARGET=120] [TARGET...]
#   targets: gguf gguf_config safetensors config_json plan (default: all)
# Env: OUT (build + corpora + crashes, default /tmp/llmprune-fuzz), SKIP_BUILD=1 to reuse binaries.
# The modules are compiled straight from Sources/ with swiftc (-sanitize=fuzzer,address: coverage + ASan), one
# whole-module compile per module, then each harness is linked against the objects; no SwiftPM involved.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SECS="${1:-120}"; shift || true
TARGETS=("$@"); [ ${#TARGETS[@]} -eq 0 ] && TARGETS=(gguf gguf_config safetensors config_json plan)
OUT="${OUT:-/tmp/llmprune-fuzz}"
mkdir -p "$OUT/obj" "$OUT/bin" "$OUT/tmp"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
BLAS_INC="$(pkg-config --cflags-only-I openblas | sed 's/^-I//; s/ *$//')"
BLAS_LIB="$(pkg-config --libs-only-L openblas | sed 's/^-L//; s/ *$//')"
SAN=(-sanitize=fuzzer,address)
COMMON=(-O -parse-as-library -I "$OUT/obj" -I "$ROOT/Sources/CBLAS" -Xcc -I"$BLAS_INC" -j 1 -num-threads 0)

module() {   # module NAME SWIFT_VERSION
    local name=$1 ver=$2
    echo "== compiling module $name" >&2
    swiftc "${SAN[@]}" "${COMMON[@]}" -swift-version "$ver" -wmo -module-name "$name" \
        -emit-module -emit-module-path "$OUT/obj/$name.swiftmodule" -c -o "$OUT/obj/$name.o" \
        "$ROOT"/Sources/"$name"/*.swift
}

harness() {  # harness TARGET
    echo "== linking harness $1" >&2
    swiftc "${SAN[@]}" "${COMMON[@]}" -swift-version 6 -module-name "Fuzz_$1" \
        "$ROOT/scripts/fuzz/harness/Common.swift" "$ROOT/scripts/fuzz/harness/$1.swift" \
        "$OUT"/obj/*.o -L "$BLAS_LIB" -lopenblas -o "$OUT/bin/$1"
}

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    module Support 6
    module Formats 6
    module Tokenizer 6
    module TensorCore 5
    module LlamaModel 5
    module Pruning 5
    for t in "${TARGETS[@]}"; do harness "$t"; done
fi

# Seed corpora (copied fresh each run; libFuzzer adds what it finds to the same directory).
seed() {
    local t=$1 dir="$OUT/corpus/$1"
    mkdir -p "$dir"
    case $t in
    gguf|gguf_config)
        cp "$ROOT"/Tests/LlamaModelTests/Resources/tiny.gguf "$ROOT"/Tests/LlamaModelTests/Resources/tiny_q8.gguf "$dir/"
        cp "$ROOT"/scripts/fuzz/seeds/*.gguf "$dir/" 2>/dev/null || true ;;
    safetensors)
        cp "$ROOT"/Tests/LlamaModelTests/Resources/tiny/model.safetensors "$dir/tiny.safetensors"
        cp "$ROOT"/Tests/LoRATests/Resources/adapter_step1.safetensors "$dir/adapter.safetensors"
        cp "$ROOT"/scripts/fuzz/seeds/*.index.json "$dir/" ;;
    config_json)
        cp "$ROOT"/Tests/LlamaModelTests/Resources/tiny/config.json "$dir/tiny.json"
        cp "$ROOT"/Tests/LlamaModelTests/Resources/tiny_untied/config.json "$dir/tiny_untied.json"
        cp "$ROOT"/Tests/LoRATests/Resources/model/config.json "$dir/lora_model.json"
        cp "$ROOT"/scripts/fuzz/seeds/config_*.json "$dir/" 2>/dev/null || true ;;
    plan)
        cp "$ROOT"/scripts/fuzz/seeds/plan_*.json "$dir/" ;;
    esac
}

for t in "${TARGETS[@]}"; do
    seed "$t"
    mkdir -p "$OUT/crashes/$t"
    echo "== fuzzing $t for ${SECS}s" >&2
    ( cd "$OUT/crashes/$t" &&
      FUZZ_TMP="$OUT/tmp" FUZZ_SHARD="$ROOT/Tests/LlamaModelTests/Resources/tiny/model.safetensors" \
      SWIFT_BACKTRACE=enable=no ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=0:malloc_limit_mb=2048" \
      "$OUT/bin/$t" -max_total_time="$SECS" -workers=1 -jobs=1 -rss_limit_mb=2560 -malloc_limit_mb=2048 \
          -timeout=10 -max_len=65536 -print_final_stats=1 -dict="$ROOT/scripts/fuzz/json.dict" \
          "$OUT/corpus/$t" ) > "$OUT/$t.log" 2>&1 || echo "!! $t stopped with a finding (see $OUT/$t.log, $OUT/crashes/$t)" >&2
    # -jobs=1 runs the fuzzer in one child process; its fuzz-0.log is also echoed into $OUT/$t.log.
    rm -f "$OUT/crashes/$t/fuzz-0.log"
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs" "$OUT/$t.log" | sed "s/^/$t: /" >&2 || true
done
