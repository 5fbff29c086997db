"""Transformer speed on this machine: forward and training step, tokens/s, GFLOP/s and % of the
measured fp32 matmul peak, for HappyHorse presets, beside diffusers' WanTransformer3DModel built to
the same parameter count and token count (diffusers is a benchmark-only dependency).

    pip install diffusers   # benchmark only
    python bench/transformer.py [--configs tiny small] [--batch 4] [--repeats 5] [--json out.json]

Token layout of the default 64x64, 2 s clip: 448 video + 84 audio + 48 text = 580 tokens. Wan gets a
latent of 16 channels, 8 x 16 x 16 with 1x2x2 patches = 512 video tokens, plus 48 text tokens through
cross-attention, so both models see 560-580 tokens per sample.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from happyhorse.model import CONFIGS, TransformerConfig, create_model
from happyhorse.train.harness import matmul_peak_flops

VIDEO, AUDIO, TEXT = 448, 84, 48


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def happyhorse_inputs(cfg: TransformerConfig, batch: int):
    g = torch.Generator().manual_seed(0)
    pos = torch.cat([torch.rand(VIDEO + AUDIO, 3, generator=g) * 8, torch.zeros(TEXT, 3)])
    return (
        torch.randn(batch, VIDEO, cfg.video_in, generator=g),
        torch.randn(batch, AUDIO, cfg.audio_in, generator=g),
        torch.randn(batch, TEXT, cfg.text_in, generator=g),
        torch.ones(batch, TEXT, dtype=torch.bool),
        pos,
    )


def bench_happyhorse(name: str, batch: int, repeats: int, peak: float) -> dict:
    torch.manual_seed(0)
    model = create_model(name)
    cfg = model.cfg
    inputs = happyhorse_inputs(cfg, batch)
    tokens = batch * (VIDEO + AUDIO + TEXT)
    flops_fwd = model.flops_per_token((VIDEO, AUDIO, TEXT)) / 3 * tokens  # forward is a third of training
    with torch.no_grad():
        t_fwd = _time(lambda: model(*inputs), repeats)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train_step():
        out = model(*inputs)
        loss = out.video.pow(2).mean() + out.audio.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    t_train = _time(train_step, repeats)
    flops_train = model.flops_per_token((VIDEO, AUDIO, TEXT)) * tokens
    return {
        "model": f"happyhorse-{name}",
        "params_M": model.num_parameters() / 1e6,
        "tokens_per_sample": VIDEO + AUDIO + TEXT,
        "forward_s": t_fwd,
        "forward_tokens_per_s": tokens / t_fwd,
        "forward_gflops": flops_fwd / t_fwd / 1e9,
        "forward_pct_peak": 100 * flops_fwd / t_fwd / peak,
        "train_step_s": t_train,
        "train_tokens_per_s": tokens / t_train,
        "train_gflops": flops_train / t_train / 1e9,
        "train_pct_peak": 100 * flops_train / t_train / peak,
    }


def matching_wan(params: int, cfg: TransformerConfig):
    """A WanTransformer3DModel of the same width, heads and depth, its FFN width fitted to `params`."""
    from diffusers import WanTransformer3DModel

    best = None
    for ffn in range(32, 16 * cfg.dim + 1, 16):
        kwargs = dict(
            num_attention_heads=cfg.heads,
            attention_head_dim=cfg.head_dim,
            in_channels=16,
            out_channels=16,
            text_dim=cfg.text_in,
            ffn_dim=ffn,
            num_layers=cfg.depth,
        )
        with torch.device("meta"):
            n = sum(p.numel() for p in WanTransformer3DModel(**kwargs).parameters())
        if best is None or abs(n - params) < abs(best[0] - params):
            best = (n, kwargs)
    torch.manual_seed(0)
    return WanTransformer3DModel(**best[1]).eval(), best[1]


def bench_wan(name: str, batch: int, repeats: int, peak: float) -> dict:
    ours = create_model(name, device="meta")
    model, kwargs = matching_wan(ours.num_parameters(), ours.cfg)
    latent = torch.randn(batch, 16, 8, 16, 16)
    text = torch.randn(batch, TEXT, ours.cfg.text_in)
    t = torch.full((batch,), 500.0)
    tokens = batch * (8 * 8 * 8 + TEXT)
    n = sum(p.numel() for p in model.parameters())
    flops_fwd = (
        2 * n + 4 * kwargs["num_layers"] * model.config.num_attention_heads * model.config.attention_head_dim * 560
    ) * tokens
    with torch.no_grad():
        t_fwd = _time(lambda: model(latent, t, text, return_dict=False), repeats)
    return {
        "model": f"diffusers-wan ~{name}",
        "params_M": n / 1e6,
        "wan_config": kwargs,
        "tokens_per_sample": 8 * 8 * 8 + TEXT,
        "forward_s": t_fwd,
        "forward_tokens_per_s": tokens / t_fwd,
        "forward_gflops": flops_fwd / t_fwd / 1e9,
        "forward_pct_peak": 100 * flops_fwd / t_fwd / peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["tiny", "small"], choices=list(CONFIGS))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-wan", action="store_true", help="skip the diffusers comparison")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    peak = matmul_peak_flops(torch.device("cpu"), n=2048)
    results = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()},
        "torch": torch.__version__,
        "fp32_matmul_peak_gflops": peak / 1e9,
        "batch": args.batch,
        "runs": [],
    }
    for name in args.configs:
        ours = bench_happyhorse(name, args.batch, args.repeats, peak)
        results["runs"].append(ours)
        if not args.no_wan:
            wan = bench_wan(name, args.batch, args.repeats, peak)
            wan["happyhorse_speedup"] = ours["forward_tokens_per_s"] / wan["forward_tokens_per_s"]
            results["runs"].append(wan)
    print(json.dumps(results, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
