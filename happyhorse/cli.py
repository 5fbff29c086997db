"""The `happyhorse` command: a thin Typer layer over the Python API (DESIGN.md section 5)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

app = typer.Typer(add_completion=False, no_args_is_help=True, help="HappyHorse: joint video + audio generation.")
world_app = typer.Typer(no_args_is_help=True, help="The procedural audio-visual physics world.")
app.add_typer(world_app, name="world")
console = Console(stderr=True)


def parse_size(value: str, option: str = "--size") -> tuple[int, int]:
    """'WxH' -> (W, H), with an error that names the option and the allowed form."""
    try:
        width, height = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(
            f"expected WIDTHxHEIGHT such as 64x64 or 112x64, got {value!r}", param_hint=option
        ) from None
    return width, height


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


@world_app.command("sample")
def world_sample(
    seed: int = typer.Option(0, help="Seed of the first clip; clip k uses seed + k."),
    count: int = typer.Option(1, min=1, max=100_000, help="Number of clips."),
    split: str = typer.Option("train", help="train, or test (held-out compositions)."),
    size: str = typer.Option("64x64", help="Frame size WIDTHxHEIGHT (16..4096 each; any aspect ratio)."),
    fps: float = typer.Option(12.0, min=1, max=120, help="Frames per second."),
    seconds: float = typer.Option(2.0, min=0.1, max=60, help="Clip length in seconds."),
    sample_rate: int = typer.Option(16000, min=8000, max=96000, help="Audio sample rate in Hz."),
    stereo: bool = typer.Option(False, help="Stereo sound, panned by where each impact happens."),
    out: Path = typer.Option(Path("samples"), help="Output directory for NAME.mp4 + NAME.json."),
) -> None:
    """Write world clips as MP4 (H.264 + AAC) with a JSON sidecar of caption and ground truth."""
    from .world import WorldConfig, make_clip, write_sample
    from .world.scene import SPLITS

    if split not in SPLITS:
        raise typer.BadParameter(f"must be one of {', '.join(SPLITS)}, got {split!r}", param_hint="--split")
    width, height = parse_size(size)
    try:
        config = WorldConfig(width, height, fps, seconds, sample_rate, 2 if stereo else 1)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--size") from None
    with progress() as bar:
        task = bar.add_task(f"world {split}", total=count)
        for k in range(count):
            clip = make_clip(seed + k, split, config)
            mp4, _ = write_sample(clip, out, f"{split}_{seed + k:06d}")
            bar.advance(task)
    console.print(f"wrote {count} clip(s) to {out}/ (last: {mp4.name}: {clip.caption})")


def main() -> None:
    app()
