#!/usr/bin/env python3
"""Golden bytes of the GGUF export's encoders (Sources/Formats/GGMLEncode.swift), from gguf-py's quantize -- the code
llama.cpp's convert_hf_to_gguf.py writes F16 / BF16 / Q8_0 files with (gguf/quants.py mirrors ggml's
quantize_row_q8_0_ref and fp32->bf16 conversion; numpy's float16 cast rounds to nearest even like ggml's).

Writes Tests/FormatsTests/Resources/encode/{input.f32, F16.bin, BF16.bin, Q8_0.bin}: 512 float32 inputs (16 Q8_0
blocks) with the edge cases the encoders must agree on -- exact halves after scaling, ties of f16 and bf16 rounding,
an all-zero block, subnormal and overflowing f16 values, a lone maximum -- and their encodings.

  scripts/reference/run.sh make_encode_fixtures.py
"""
import os

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "Tests", "FormatsTests", "Resources", "encode")


def inputs():
    rng = np.random.default_rng(15_2)
    blocks = []
    blocks.append(rng.normal(0, 0.02, 32))                      # a typical weight block
    blocks.append(rng.normal(0, 1.0, 32))
    blocks.append(np.zeros(32))                                 # d = 0
    b = np.arange(-16, 16, dtype=np.float64) + 0.5              # max |x| = 16.5 -> many exact halves after scaling
    blocks.append(b)
    b = np.zeros(32); b[0] = 127.0; b[1:] = np.arange(1, 32) + 0.5   # d = 1: x * 1/d = k + 0.5 exactly
    blocks.append(b)
    b = np.zeros(32); b[5] = -3.0                               # a lone (negative) maximum
    blocks.append(b)
    blocks.append(rng.normal(0, 1e-6, 32))                      # d subnormal in f16
    blocks.append(np.full(32, 1e-9))                            # d underflows to 0 in f16
    blocks.append(rng.normal(0, 3e4, 32) + np.sign(rng.normal(size=32)) * 6.6e4)  # f16 overflow (inf) for F16
    # f16 ties: 1 + (2k+1)·2^-11 lies exactly between two halves
    blocks.append(1.0 + (2 * np.arange(32) + 1) * 2.0 ** -11)
    # bf16 ties: 1 + (2k+1)·2^-8 (even and odd mantissas below)
    blocks.append(1.0 + (2 * np.arange(32) + 1) * 2.0 ** -8)
    blocks.append(-(1.0 + (2 * np.arange(32) + 1) * 2.0 ** -8))
    blocks.append(rng.uniform(-1, 1, 32) * 2.0 ** rng.integers(-20, 20, 32))
    for _ in range(3):
        blocks.append(rng.normal(0, 0.05, 32))
    return np.concatenate(blocks).astype(np.float32)


def main():
    from gguf import GGMLQuantizationType as T
    from gguf.quants import quantize

    os.makedirs(OUT, exist_ok=True)
    x = inputs()
    assert x.size == 512
    x.tofile(os.path.join(OUT, "input.f32"))
    with np.errstate(over="ignore"):
        for t in (T.F16, T.BF16, T.Q8_0):
            q = quantize(x.reshape(16, 32), t)
            np.ascontiguousarray(q).view(np.uint8).tofile(os.path.join(OUT, f"{t.name}.bin"))
            print(t.name, q.nbytes, "bytes")


if __name__ == "__main__":
    main()
