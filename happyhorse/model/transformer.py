"""The single-stream audio-video Transformer (DESIGN.md section 3).

One packed sequence [video | audio | text]. The first and last `sandwich` layers keep separate
weights per modality (norms, QKV + gate, output projection, MLP); the layers between are shared.
Self-attention only, over the whole sequence, with GQA, QK-norm, a per-head sigmoid gate on each
head's output, and RoPE over (t, h, w) for video and audio (text is not rotated). No timestep
embedding by default: the network reads the noise level from its input.

Read top-down: config -> small parts (norm, RoPE, per-modality linear) -> attention, MLP, block ->
the model -> presets.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..retired import read_config

MODALITIES = ("video", "audio", "text")
# settings of earlier configs, measured and not shipped (docs/experiments.md): the network predicts x0
RETIRED = {"self_conditioning": False, "prediction": "x0"}


@dataclass
class TransformerConfig:
    dim: int = 128  # hidden width
    depth: int = 6  # layers in all
    sandwich: int = 1  # first and last `sandwich` layers have per-modality weights
    heads: int = 4  # query heads
    kv_heads: int = 2  # key/value heads (GQA); divides heads
    mlp_hidden: int = 384  # SwiGLU inner width
    video_in: int = 768  # channels of a video latent token (set by the video codec)
    audio_in: int = 400  # channels of an audio latent token (set by the audio codec)
    text_in: int = 384  # width of the text encoder's states
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-6
    timestep_conditioning: bool = False  # ablation only: add an embedding of each token's sigma
    condition_embedding: bool = True  # a learned flag on clean (given) tokens: image frame, audio
    absolute_positions: bool = False  # also add sinusoidal (t, h, w) features at the input

    def __post_init__(self):
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by heads ({self.heads})")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be divisible by kv_heads ({self.kv_heads})")
        if not 0 <= 2 * self.sandwich <= self.depth:
            raise ValueError(f"sandwich ({self.sandwich}) must be in 0..depth/2 (depth {self.depth})")
        if self.head_dim % 2 or self.head_dim < 8:
            raise ValueError(f"head_dim ({self.head_dim}) must be even and >= 8")

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def rope_dims(self) -> tuple[int, int, int]:
        """Head channels rotated by (t, h, w): a quarter for time, the rest split between h and w."""
        t = 2 * max(1, self.head_dim // 8)
        h = 2 * ((self.head_dim - t) // 4)
        return t, h, self.head_dim - t - h

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TransformerConfig:
        return cls(**read_config(d, cls, RETIRED, "transformer config"))


# ------------------------------------------------------------------------------------------ parts


class RMSNorm(nn.Module):
    """RMSNorm computed in fp32 on purpose: bf16 mean-squares lose the small channels."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (out * self.weight.float()).to(x.dtype)


def rope_angles(positions: torch.Tensor, dims: tuple[int, int, int], theta: float) -> torch.Tensor:
    """positions [N, 3] (t, h, w) -> angles [N, head_dim / 2], fp32; zero rows leave a token unrotated."""
    parts = []
    for axis, d in enumerate(dims):
        inv_freq = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64, device=positions.device) / d)
        parts.append(positions[:, axis : axis + 1].double() * inv_freq[None])
    return torch.cat(parts, dim=-1).float()


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (2i, 2i+1) of x [B, H, N, D] by angles [N, D/2]; in fp32 on purpose."""
    xf = x.float().unflatten(-1, (-1, 2))  # (B, H, N, D/2, 2)
    cos, sin = angles.cos()[None, None], angles.sin()[None, None]
    x0, x1 = xf[..., 0], xf[..., 1]
    out = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)
    return out.flatten(-2).to(x.dtype)


class PerModality(nn.Module):
    """One module per modality applied to that modality's slice of the packed sequence, or one
    shared module applied to all of it."""

    def __init__(self, make, separate: bool):
        super().__init__()
        self.separate = separate
        self.parts = nn.ModuleList([make() for _ in (MODALITIES if separate else (0,))])

    def forward(self, x: torch.Tensor, lengths: tuple[int, int, int]) -> torch.Tensor:
        if not self.separate:
            return self.parts[0](x)
        pieces = torch.split(x, lengths, dim=1)
        return torch.cat([part(piece) for part, piece in zip(self.parts, pieces, strict=True)], dim=1)


class Attention(nn.Module):
    """GQA self-attention with QK-norm and a per-head sigmoid output gate.

    The QKV projection emits, besides q, k and v, one logit per query head; each head's output is
    multiplied by sigmoid(logit) before the output projection, which lets a head switch itself off
    for a token (and removes attention sinks).
    """

    def __init__(self, cfg: TransformerConfig, separate: bool):
        super().__init__()
        self.cfg = cfg
        hd = cfg.head_dim
        self.qkv_dims = (cfg.heads * hd, cfg.kv_heads * hd, cfg.kv_heads * hd, cfg.heads)
        self.qkv = PerModality(lambda: nn.Linear(cfg.dim, sum(self.qkv_dims), bias=False), separate)
        self.q_norm = PerModality(lambda: RMSNorm(hd, cfg.norm_eps), separate)
        self.k_norm = PerModality(lambda: RMSNorm(hd, cfg.norm_eps), separate)
        self.proj = PerModality(lambda: nn.Linear(cfg.heads * hd, cfg.dim, bias=False), separate)

    def forward(self, x, lengths, angles, attn_mask):
        b, n, _ = x.shape
        hd = self.cfg.head_dim
        q, k, v, gate = self.qkv(x, lengths).split(self.qkv_dims, dim=-1)
        q = self.q_norm(q.unflatten(-1, (self.cfg.heads, hd)), lengths).transpose(1, 2)  # (B, H, N, hd)
        k = self.k_norm(k.unflatten(-1, (self.cfg.kv_heads, hd)), lengths).transpose(1, 2)  # (B, Hkv, N, hd)
        v = v.unflatten(-1, (self.cfg.kv_heads, hd)).transpose(1, 2)
        q, k = apply_rope(q, angles), apply_rope(k, angles)
        # kv heads shared by groups of query heads, expanded by hand: `enable_gqa=True` is picked up by
        # cuDNN attention on Hopper (torch 2.11, cuDNN 9.19), which pairs query and kv heads differently
        # from every other backend; a model trained on an H200 that way was noise on the CPU
        groups = self.cfg.heads // self.cfg.kv_heads
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, H, N, hd)
        out = out * torch.sigmoid(gate).transpose(1, 2)[..., None]  # per-head gate
        return self.proj(out.transpose(1, 2).reshape(b, n, -1), lengths)


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    """Pre-norm block: x + attn(norm(x)); x + mlp(norm(x)). Per-modality weights if `separate`."""

    def __init__(self, cfg: TransformerConfig, separate: bool):
        super().__init__()
        self.separate = separate
        self.attn_norm = PerModality(lambda: RMSNorm(cfg.dim, cfg.norm_eps), separate)
        self.attn = Attention(cfg, separate)
        self.mlp_norm = PerModality(lambda: RMSNorm(cfg.dim, cfg.norm_eps), separate)
        self.mlp = PerModality(lambda: SwiGLU(cfg.dim, cfg.mlp_hidden), separate)

    def forward(self, x, lengths, angles, attn_mask):
        x = x + self.attn(self.attn_norm(x, lengths), lengths, angles, attn_mask)
        return x + self.mlp(self.mlp_norm(x, lengths), lengths)


def sigma_embedding(sigma: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of sigma in [0, 1] (per token) -> [..., dim]; used only for the ablation."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=sigma.device) / half)
    args = sigma.float()[..., None] * 1000 * freqs
    return torch.cat([args.cos(), args.sin()], dim=-1)


POSITION_FREQUENCIES = 8


def position_features(positions: torch.Tensor) -> torch.Tensor:
    """Sinusoidal features of (t, h, w) positions [N, 3] -> [N, 3 * 2 * POSITION_FREQUENCIES].

    RoPE tells a token only where others are relative to it; these tell it where it is (top, bottom),
    which a model predicting x0 from nearly pure noise needs. Geometric frequencies, 0.02..3 rad/cell.
    """
    freqs = torch.exp(torch.linspace(math.log(0.02), math.log(3.0), POSITION_FREQUENCIES, device=positions.device))
    args = positions.float()[..., None] * freqs  # (N, 3, F)
    return torch.cat([args.sin(), args.cos()], dim=-1).flatten(1)


# ------------------------------------------------------------------------------------------ model


@dataclass
class TransformerOutput:
    video: torch.Tensor  # [B, Nv, video_in]
    audio: torch.Tensor  # [B, Na, audio_in]


class SingleStreamTransformer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.video_in = nn.Linear(cfg.video_in, cfg.dim)
        self.audio_in = nn.Linear(cfg.audio_in, cfg.dim)
        self.text_in = nn.Linear(cfg.text_in, cfg.dim)
        self.modality = nn.Parameter(torch.zeros(len(MODALITIES), cfg.dim))
        if cfg.condition_embedding:
            self.clean_flag = nn.Parameter(torch.zeros(cfg.dim))
        if cfg.absolute_positions:
            self.position_in = nn.Linear(3 * 2 * POSITION_FREQUENCIES, cfg.dim)
        if cfg.timestep_conditioning:
            self.sigma_mlp = nn.Sequential(nn.Linear(256, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim))
        self.blocks = nn.ModuleList(
            [Block(cfg, separate=i < cfg.sandwich or i >= cfg.depth - cfg.sandwich) for i in range(cfg.depth)]
        )
        self.video_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.audio_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.video_out = nn.Linear(cfg.dim, cfg.video_in)
        self.audio_out = nn.Linear(cfg.dim, cfg.audio_in)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        # 1. every linear layer: Xavier-uniform weights, zero biases (as DiT)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for block in self.blocks:
            for qkv in block.attn.qkv.parts:
                # 2. gate rows of each QKV projection at zero: every head starts half open, sigmoid(0)
                nn.init.zeros_(qkv.weight[-self.cfg.heads :])
            # 3. residual outputs scaled down with depth (GPT-2), so the stream starts near identity
            for linear in [*block.attn.proj.parts, *(m.down for m in block.mlp.parts)]:
                linear.weight.data.mul_(1 / math.sqrt(2 * self.cfg.depth))
        # 4. output heads at zero: the first prediction is 0 (mid-grey x0, silent audio)
        for head in (self.video_out, self.audio_out):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        video: torch.Tensor,  # [B, Nv, video_in] noisy (or clean, where given) video latent tokens
        audio: torch.Tensor,  # [B, Na, audio_in]
        text: torch.Tensor,  # [B, Nt, text_in] text encoder states
        text_mask: torch.Tensor,  # [B, Nt] bool, True for real tokens
        positions: torch.Tensor,  # [Nv + Na + Nt, 3] (t, h, w); text rows are zero (unrotated)
        video_clean: torch.Tensor | None = None,  # [B, Nv] bool: given (conditioning) tokens
        audio_clean: torch.Tensor | None = None,  # [B, Na] bool
        sigma: torch.Tensor | None = None,  # [B, Nv + Na] per-token noise level; ablation only
        video_mask: torch.Tensor | None = None,  # [B, Nv] bool, False for padding slots (never attended to)
    ) -> TransformerOutput:
        cfg = self.cfg
        b, nv, na, nt = video.shape[0], video.shape[1], audio.shape[1], text.shape[1]
        lengths = (nv, na, nt)
        hv = self.video_in(video) + self.modality[0]
        ha = self.audio_in(audio) + self.modality[1]
        ht = self.text_in(text) + self.modality[2]
        if cfg.condition_embedding:
            if video_clean is not None:
                hv = hv + video_clean[..., None].to(hv.dtype) * self.clean_flag
            if audio_clean is not None:
                ha = ha + audio_clean[..., None].to(ha.dtype) * self.clean_flag
        x = torch.cat([hv, ha, ht], dim=1)  # (B, N, dim)
        if cfg.absolute_positions:  # text rows stay zero: text has no position
            features = position_features(positions[: nv + na])
            x = x + F.pad(self.position_in(features.to(x.dtype)), (0, 0, 0, nt))
        if cfg.timestep_conditioning:
            if sigma is None:
                raise ValueError("sigma: required when timestep_conditioning is on")
            emb = self.sigma_mlp(sigma_embedding(sigma, 256).to(x.dtype))  # (B, Nv + Na, dim)
            x = x + F.pad(emb, (0, 0, 0, nt))
        angles = rope_angles(positions, cfg.rope_dims, cfg.rope_theta)  # (N, hd/2)
        real_video = torch.ones(b, nv, dtype=torch.bool, device=x.device) if video_mask is None else video_mask
        keep = torch.cat([real_video, torch.ones(b, na, dtype=torch.bool, device=x.device), text_mask], dim=1)
        attn_mask = keep[:, None, None, :]  # (B, 1, 1, N): padded video slots and text are never attended to
        for block in self.blocks:
            x = block(x, lengths, angles, attn_mask)
        out_v = self.video_out(self.video_norm(x[:, :nv]))
        out_a = self.audio_out(self.audio_norm(x[:, nv : nv + na]))
        return TransformerOutput(video=out_v, audio=out_a)

    def active_parameters(self, lengths: tuple[int, int, int]) -> float:
        """Parameters one token multiplies by, averaged over the [video, audio, text] mix: a token
        passes only its own modality's copy of a sandwich layer and its own input/output layers."""
        shared = sum(p.numel() for b in self.blocks if not b.separate for p in b.parameters())
        per_modality = [0, 0, 0]
        for block in self.blocks:
            if block.separate:
                for module in block.modules():
                    if isinstance(module, PerModality):
                        for m, part in enumerate(module.parts):
                            per_modality[m] += sum(p.numel() for p in part.parameters(recurse=True))
        io = [
            self.video_in.weight.numel() + self.video_out.weight.numel(),
            self.audio_in.weight.numel() + self.audio_out.weight.numel(),
            self.text_in.weight.numel(),
        ]
        total = sum(lengths)
        return shared + sum(n * (per_modality[m] + io[m]) for m, n in enumerate(lengths)) / max(total, 1)

    def flops_per_token(self, lengths: tuple[int, int, int] | int) -> float:
        """Training FLOPs per token (forward + backward): 6 x active parameters + attention (nanoGPT's
        12 L d T), for a sequence of `lengths` = (video, audio, text) tokens."""
        if isinstance(lengths, int):
            lengths = (lengths, 0, 0)
        return 6 * self.active_parameters(lengths) + 12 * self.cfg.depth * self.cfg.dim * sum(lengths)
