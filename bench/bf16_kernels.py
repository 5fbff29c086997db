"""Why bfloat16 speeds the default clip up by a third and not by half on this CPU: kernel by kernel.

    python bench/bf16_kernels.py

Prints, in float32 and in bfloat16: the GFLOPS of the model's largest projection (1 680 tokens, 256 ->
768: a guided step's three rows of ~560 tokens), of PyTorch's CPU attention at the model's shapes
(2 rows, 4 heads of 64 over 560 tokens), and the CPU time `torch.profiler` counts in one default clip
(`pipe(...)`), in all and in matmuls and attention.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from happyhorse import HappyHorsePipeline

PROMPT = "A red ball drops and bounces twice."


def gflops(fn, flops: float, repeats: int = 50) -> float:
    for _ in range(3):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return flops * repeats / (time.perf_counter() - start) / 1e9


def clip_profile(pipe) -> dict:
    """CPU seconds of one clip: in all, in matmuls (mm, addmm) and in attention."""
    pipe(PROMPT, seed=0)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        pipe(PROMPT, seed=1)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    matmul = sum(e.self_cpu_time_total for e in events if e.key in ("aten::mm", "aten::addmm")) / 1e6
    attention = sum(e.self_cpu_time_total for e in events if "scaled_dot_product" in e.key) / 1e6
    return {"total_s": total, "matmul_s": matmul, "attention_s": attention}


def main() -> None:
    pipe = HappyHorsePipeline.from_pretrained()
    for dtype in (torch.float32, torch.bfloat16):
        x, w = torch.randn(1680, 256, dtype=dtype), torch.randn(768, 256, dtype=dtype)
        q = torch.randn(2, 4, 560, 64, dtype=dtype)
        kv = torch.randn(2, 4, 560, 64, dtype=dtype)
        projection = gflops(lambda x=x, w=w: x @ w.T, 2 * 1680 * 256 * 768, 200)
        attention = gflops(lambda q=q, kv=kv: F.scaled_dot_product_attention(q, kv, kv), 2 * 2 * 2 * 4 * 560 * 560 * 64)
        clip = clip_profile(pipe.to("cpu", dtype))
        print(
            f"{str(dtype):15s} projection {projection:5.0f} GFLOPS, attention {attention:5.0f} GFLOPS; "
            f"one clip: {clip['total_s']:.2f} s CPU in all, matmuls {clip['matmul_s']:.2f} s, "
            f"attention {clip['attention_s']:.2f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
