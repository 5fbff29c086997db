"""How strongly the text states the model reads tell one prompt fact from another.

The default model follows colour (0.98) but draws T2V directions at chance (0.51 on test prompts
120-359). This asks whether the prompt even says "left" and "right" apart in what the transformer
sees: for world test captions, one fact word at a time is swapped for another of its kind (left <->
right, a colour for another, a shape word for another), and the MiniLM token state at that word is
compared across the two captions, layer by layer (0 = the input embeddings, 6 = the last hidden
layer, what `MiniLMTextEncoder` gives the model), with the whole caption's relative change in the
last layer beside it.

    python bench/text_contrast.py --count 60 --json text_contrast.json
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import torch

from happyhorse.codecs.text import MiniLMTextEncoder
from happyhorse.world import COLOURS, WorldConfig, make_clip
from happyhorse.world.caption import SHAPE_WORDS

GROUPS = {
    "direction": ["left", "right"],
    "colour": list(COLOURS),
    "shape": sorted({w for words in SHAPE_WORDS.values() for w in words}),
}


def swaps(caption: str, group: list[str]) -> list[tuple[str, str, str]]:
    """(other caption, word, replacement): the first word of the group in the caption, swapped for the
    group's next member (so each caption gives one pair per group it mentions)."""
    for word in group:
        match = re.search(rf"\b{word}\b", caption)
        if match:
            other = group[(group.index(word) + 1) % len(group)]
            return [(caption[: match.start()] + other + caption[match.end() :], word, other)]
    return []


def contrast(tokenizer, model, a: str, b: str) -> dict | None:
    """Cosine of the two captions' states at the first differing token, per layer; the last layer's
    relative change over the whole caption. None when the swap changes the token count."""
    ta, tb = tokenizer(a, return_tensors="pt"), tokenizer(b, return_tensors="pt")
    ia, ib = ta["input_ids"][0], tb["input_ids"][0]
    if ia.shape != ib.shape:
        return None
    with torch.no_grad():
        ha = model(**ta, output_hidden_states=True).hidden_states
        hb = model(**tb, output_hidden_states=True).hidden_states
    k = int((ia != ib).nonzero()[0])
    cos = [float(torch.cosine_similarity(x[0, k], y[0, k], dim=0)) for x, y in zip(ha, hb, strict=True)]
    rel = float((ha[-1][0] - hb[-1][0]).norm() / ha[-1][0].norm())
    return {"cos_by_layer": cos, "caption_change": rel}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=60, help="test captions (prompts 0 .. count - 1)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    tokenizer, model = MiniLMTextEncoder()._load()
    world = WorldConfig(64, 64, 12.0, 25 / 12, 16000, 1)
    captions = [make_clip(i, "test", world, ground_truth=False).caption for i in range(args.count)]
    results = {}
    for name, group in GROUPS.items():
        rows = [
            r
            for caption in captions
            for other, _, _ in swaps(caption, group)
            for r in [contrast(tokenizer, model, caption, other)]
            if r is not None
        ]
        cos = np.array([r["cos_by_layer"] for r in rows])
        results[name] = {
            "pairs": len(rows),
            "cos_by_layer": cos.mean(0).round(3).tolist(),
            "caption_change": round(float(np.mean([r["caption_change"] for r in rows])), 3),
        }
        layers = " ".join(f"{c:.2f}" for c in results[name]["cos_by_layer"])
        print(
            f"{name:9s} {len(rows):3d} pairs  cosine at the word, layers 0..{cos.shape[1] - 1}: {layers}  "
            f"caption change (last layer) {results[name]['caption_change']:.3f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"count": args.count, "groups": results}, indent=1))


if __name__ == "__main__":
    main()
