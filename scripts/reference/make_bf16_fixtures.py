#!/usr/bin/env python3
"""Golden fixture for TensorCore.BF16Matmul: products with a frozen weight, inputs rounded to bf16 (round to nearest
even, torch's Tensor.to(torch.bfloat16)), products and sums of the rounded values in float64 (an fp32-accumulating
kernel differs from it only by fp32 summation error), output fp32.

For a weight W [OUT × IN] (PyTorch Linear layout) and activations X [M × IN], dY [M × OUT]:
  forward   Y  = X · Wᵀ            (the projection)
  accumulate Y = C + X · Wᵀ         (C given: the residual the o/down projections add into)
  backward  dX = dY · W            (the input gradient through the frozen weight)
The inputs are fp32 quotients of small integers (below), which Swift computes bit for bit the same, so the fixture
holds only the outputs (9 significant digits: an fp32 round-trips).

Output: Tests/TensorCoreTests/Resources/bf16_matmul.json
Run: scripts/reference/run.sh make_bf16_fixtures.py [--out FILE]
"""
import argparse
import json
from pathlib import Path

import torch

OUT, IN = 33, 70          # odd sizes: oneDNN pads the bf16 pairs (VNNI) and the 16/64 blocks
CASES = [1, 5, 20]        # M: a generation step, a few rows, more rows than a 16-row tile


def pattern(count, mul, mod, den):
    """fp32 ((i·mul) mod mod − mod/2) / den for i < count; the test builds the same values."""
    i = torch.arange(count, dtype=torch.int64)
    return (((i * mul) % mod) - mod // 2).to(torch.float32) / torch.tensor(den, dtype=torch.float32)


def digits(t):
    return [float(f"{v:.9g}") for v in t.flatten().tolist()]


def bf16(t):
    return t.to(torch.bfloat16).to(torch.float64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "Tests/TensorCoreTests/Resources/bf16_matmul.json"))
    args = ap.parse_args()
    w = pattern(OUT * IN, 29, 89, 211).reshape(OUT, IN)
    cases = []
    for m in CASES:
        x = pattern(m * IN, 37, 101, 53).reshape(m, IN)
        dy = pattern(m * OUT, 31, 97, 67).reshape(m, OUT)
        c = pattern(m * OUT, 13, 61, 7).reshape(m, OUT)
        cases.append(dict(
            m=m,
            y=digits((bf16(x) @ bf16(w).T).float()),
            y_acc=digits((c.double() + bf16(x) @ bf16(w).T).float()),
            dx=digits((bf16(dy) @ bf16(w)).float()),
        ))
    doc = dict(out=OUT, inp=IN, cases=cases, torch=torch.__version__)
    Path(args.out).write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
