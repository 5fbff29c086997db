"""Codecs between media and the model's tokens: text encoders, video and audio codecs."""

from .audio import PatchAudioCodec
from .base import Codec
from .text import HashTextEncoder, MiniLMTextEncoder, TextEncoder
from .video import AutoencoderVideoCodec, PatchVideoCodec

__all__ = [
    "AutoencoderVideoCodec",
    "Codec",
    "HashTextEncoder",
    "MiniLMTextEncoder",
    "PatchAudioCodec",
    "PatchVideoCodec",
    "TextEncoder",
]
