"""Speed-up of the frozen-base products of one SmolLM2-135M LoRA step, from a bf16_gemm output file.

Per token the step runs, in every one of the 30 layers, the forward products q, o (576x576), k, v (192x576),
gate, up (1536x576), down (576x1536) and the same seven input-gradient products in the backward; once per token
the lm_head forward and its input gradient (49152x576). The adapters (rank 8) and attention are left out here.
Time per token = sum(FLOP / rate) over those products at the rates of one token count M of the table.
Usage: lora_estimate.py c_t2.txt [M]
"""
import sys

rows = {}
m_want = int(sys.argv[2]) if len(sys.argv) > 2 else 512
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) < 13 or f[0] not in ("fwd", "bwd") or int(f[1]) != m_want:
        continue
    rows[(f[0], f[4])] = dict(sgemm=float(f[5]), kern=float(f[8]), cvt=float(f[10]))
count = {"q/o": 2, "k/v": 2, "gate/up": 2, "down": 1}
size = {"q/o": 576 * 576, "k/v": 192 * 576, "gate/up": 1536 * 576, "down": 576 * 1536, "lm_head": 49152 * 576}
t = dict(sgemm=0.0, kern=0.0, cvt=0.0)
flop = 0.0
for d in ("fwd", "bwd"):
    for w, n in list(count.items()) + [("lm_head", None)]:
        fl = 2.0 * size[w] * (30 * n if n else 1)
        flop += fl
        for k in t:
            t[k] += fl / (rows[(d, w)][k] * 1e9)
print(f"M={m_want}: frozen-base products {flop / 1e6:.1f} MFLOP/token; "
      f"fp32 sgemm {t['sgemm'] * 1e3:.3f} ms/token, bf16 kernel {t['kern'] * 1e3:.3f}, bf16 + activation cvt "
      f"{t['cvt'] * 1e3:.3f}; speed-up {t['sgemm'] / t['kern']:.2f}x (kernel), {t['sgemm'] / t['cvt']:.2f}x (with cvt)")
