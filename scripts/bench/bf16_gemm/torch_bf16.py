"""The bar: torch's own fp32 and bf16 products on the same shapes and threads as bf16_gemm.c.

fwd: F.linear(x, W) with x [M×K], W [N×K]; bwd: dY [M×N] @ W [N×K]. bf16 = both operands bf16 (what autocast
does on CPU; torch returns bf16, so the output rounding is included), weights converted once outside the timing.
Best of REPS after one warm-up. Usage: torch_bf16.py THREADS [REPS]
"""
import sys, time
import torch
import torch.nn.functional as F

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
torch.set_num_threads(threads)
torch.manual_seed(0)


def best(fn):
    fn()
    b = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); b = min(b, time.perf_counter() - t0)
    return b


print(f"# torch {torch.__version__} threads={torch.get_num_threads()} reps={reps} (best of) "
      f"mkldnn_bf16={torch.backends.mkldnn.is_available()} cpu_capability={torch.backends.cpu.get_cpu_capability()}")
print(f"{'dir':4} {'M':>5} {'N':>5} {'K':>5} {'weight':9} {'fp32':>9} {'bf16':>9} {'x':>6} {'maxerr':>9}")
shapes = [(576, 576, "q/o"), (192, 576, "k/v"), (1536, 576, "gate/up"), (576, 1536, "down"), (49152, 576, "lm_head")]
with torch.inference_mode():
    for M in (512, 2048):
        for n, k, name in shapes:
            W = (torch.rand(n, k) * 2 - 1) * 0.05
            Wb = W.to(torch.bfloat16)
            for d in ("fwd", "bwd"):
                A = torch.rand(M, k if d == "fwd" else n) * 2 - 1
                f32 = (lambda: F.linear(A, W)) if d == "fwd" else (lambda: A @ W)
                Ab = A.to(torch.bfloat16)
                b16 = (lambda: F.linear(Ab, Wb)) if d == "fwd" else (lambda: Ab @ Wb)
                t32, t16 = best(f32), best(b16)
                ref = f32()
                err = ((b16().float() - ref).abs().max() / ref.abs().max()).item()
                flop = 2.0 * M * n * k * 1e-9
                nc, kc = (n, k) if d == "fwd" else (k, n)
                print(f"{d:4} {M:5d} {nc:5d} {kc:5d} {name:9} {flop / t32:9.1f} {flop / t16:9.1f} {t32 / t16:6.2f} {err:9.2e}",
                      flush=True)
