"""The single-stream Transformer, its named configs (`CONFIGS`) and `create_model`."""

from __future__ import annotations

import torch

from .transformer import MODALITIES, SingleStreamTransformer, TransformerConfig, TransformerOutput

# Named presets, small to large. Input widths match the default codecs (4x8x8 RGB pixel patches,
# 400-sample audio patches, MiniLM's 384-d states); a run may override them from its codecs.
CONFIGS: dict[str, TransformerConfig] = {
    # trains on a 2-core laptop CPU
    "tiny": TransformerConfig(dim=128, depth=6, sandwich=1, heads=4, kv_heads=2, mlp_hidden=352),
    "small": TransformerConfig(dim=256, depth=8, sandwich=2, heads=8, kv_heads=4, mlp_hidden=704),
    "base": TransformerConfig(dim=512, depth=12, sandwich=2, heads=8, kv_heads=4, mlp_hidden=1408),
    "1b": TransformerConfig(dim=2048, depth=20, sandwich=2, heads=16, kv_heads=4, mlp_hidden=5632),
    # the published HappyHorse 1.0 / daVinci-MagiHuman shape: 40 layers, 4 per-modality at each end,
    # hidden 5120, 40 query / 8 KV heads of 128; latent inputs of a learned video / audio VAE
    "15b": TransformerConfig(
        dim=5120,
        depth=40,
        sandwich=4,
        heads=40,
        kv_heads=8,
        mlp_hidden=13696,
        video_in=192,
        audio_in=128,
        text_in=3584,
    ),
}


def create_model(name_or_config: str | TransformerConfig, device: str | torch.device | None = None):
    """Build a SingleStreamTransformer from a preset name or a config; `device="meta"` allocates nothing."""
    if isinstance(name_or_config, str):
        if name_or_config not in CONFIGS:
            raise ValueError(f"model config: unknown name {name_or_config!r}; known: {', '.join(CONFIGS)}")
        config = TransformerConfig.from_dict(CONFIGS[name_or_config].to_dict())
    else:
        config = name_or_config
    with torch.device(device or "cpu"):
        return SingleStreamTransformer(config)


__all__ = ["CONFIGS", "MODALITIES", "SingleStreamTransformer", "TransformerConfig", "TransformerOutput", "create_model"]
