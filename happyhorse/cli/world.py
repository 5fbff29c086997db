"""`happyhorse world ...`: the procedural audio-visual physics world."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import app, console, output_dir, parse_size, progress

world_app = typer.Typer(no_args_is_help=True, help="The procedural audio-visual physics world.")
app.add_typer(world_app, name="world")


@world_app.command("sample")
def world_sample(
    seed: int = typer.Option(0, min=0, help="Seed of the first clip; clip k uses seed + k."),
    count: int = typer.Option(1, min=1, max=100_000, help="Number of clips."),
    split: str = typer.Option("train", help="train, or test (held-out compositions, lines and voices)."),
    kind: str = typer.Option(
        "physics", help="physics (objects), talk (faces saying a line), mixed (both), or shots (2-3 shots, hard cuts)."
    ),
    size: str = typer.Option("64x64", help="Frame size WIDTHxHEIGHT (even, 16..4096 each; any aspect ratio)."),
    fps: float = typer.Option(12.0, min=1, max=120, help="Frames per second."),
    seconds: float = typer.Option(2.0, min=0.1, max=60, help="Clip length in seconds."),
    sample_rate: int = typer.Option(16000, min=8000, max=96000, help="Audio sample rate in Hz."),
    stereo: bool = typer.Option(False, help="Stereo sound, panned by where each impact happens."),
    references: bool = typer.Option(
        False, help="Also write each object and face on its own as NAME_ref_COLOUR.png (subject references)."
    ),
    out: Path = typer.Option(Path("samples"), help="Output directory for NAME.mp4 + NAME.json."),
) -> None:
    """Write world clips as MP4 (H.264 + AAC) with a JSON sidecar of caption and ground truth."""
    from ..world import WorldConfig, make_clip, write_sample
    from ..world.sample import KINDS
    from ..world.scene import SPLITS

    if split not in SPLITS:
        raise typer.BadParameter(f"must be one of {', '.join(SPLITS)}, got {split!r}", param_hint="--split")
    if kind not in KINDS:
        raise typer.BadParameter(f"must be one of {', '.join(KINDS)}, got {kind!r}", param_hint="--kind")
    width, height = parse_size(size)
    if width % 2 or height % 2:  # else the MP4 would be padded and no longer match its sidecar's size
        raise typer.BadParameter(f"H.264 stores even sizes only, got {width}x{height}", param_hint="--size")
    try:
        config = WorldConfig(width, height, fps, seconds, sample_rate, 2 if stereo else 1)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--size") from None
    output_dir(out, "--out")
    with progress() as bar:
        task = bar.add_task(f"world {split}", total=count)
        for k in range(count):
            clip = make_clip(seed + k, split, config, kind=kind, references=references)
            prefix = split if kind == "physics" else f"{split}_{kind}"
            mp4, _ = write_sample(clip, out, f"{prefix}_{seed + k:06d}")
            bar.advance(task)
    console.print(f"wrote {count} clip(s) to {out}/ (last: {mp4.name}: {clip.caption})")
