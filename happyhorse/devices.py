"""Where the networks compute and in what precision: device and dtype names, resolved once."""

from __future__ import annotations

import re

import torch

DEVICES = ("auto", "cpu", "cuda", "cuda:N")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def dtype_name(dtype: torch.dtype) -> str:
    """The name `resolve_dtype` takes for a dtype ("bfloat16"), as sidecars and reports record it."""
    return str(dtype).removeprefix("torch.")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """A device by name; "auto" (or None) is the GPU where there is one, else the CPU."""
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not (device == "cpu" or re.fullmatch(r"cuda(:\d+)?", str(device))):
        raise ValueError(f"device: must be one of {', '.join(DEVICES)}, got {device!r}")
    if device != "cpu" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} asked for, but this machine has no CUDA GPU (use cpu or auto)")
    return torch.device(device)


def cpu_has_fast_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX); elsewhere torch emulates it,
    slower than float32."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes: assume not
        return False


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """The dtype the transformers compute in. None: bfloat16 on a GPU, float32 on the CPU. "auto": the
    fastest measured not to change the evaluation (MODEL_CARD.md, Speed): bfloat16 on a GPU and on a
    CPU that multiplies it natively, else float32. float16 is for GPUs only: CPUs have no fast kernels."""
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" or cpu_has_fast_bfloat16() else torch.float32
    if isinstance(dtype, torch.dtype):
        chosen = dtype
    elif dtype in DTYPES:
        chosen = DTYPES[dtype]
    else:
        raise ValueError(f"dtype: must be one of auto, {', '.join(DTYPES)}, got {dtype!r}")
    if chosen not in DTYPES.values():
        raise ValueError(f"dtype: must be one of {', '.join(DTYPES)}, got {chosen}")
    if chosen == torch.float16 and device.type == "cpu":
        raise ValueError("dtype: float16 is for GPUs; on the CPU use float32 or bfloat16")
    return chosen
