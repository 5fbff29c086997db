"""`happyhorse train`, `train-codec`, `distill`: training runs, all in one run loop
(happyhorse/train/harness.py); this module adds the progress bar and the preview clips."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import app, console, output_dir, progress, refused, require_extra

# the options every run command shares
RESUME = typer.Option(False, help="Continue from DIR/checkpoint (with the run's saved config).")
MAX_STEPS = typer.Option(None, min=1, help="Stop after this many steps (default: the config's).")
MINUTES = typer.Option(None, min=0.01, help="Stop (and checkpoint) after this much wall time.")

PREVIEW_SEEDS = (0, 1, 2, 3)  # test-split clips whose captions (and, for odd seeds, first frames) are previewed


def write_previews(model_dir: Path, directory: Path) -> None:
    """Preview clips of an exported model: test-split prompts in T2V, and TI2V from the clip's frame 0."""
    from ..media import save_video
    from ..pipeline import HappyHorsePipeline
    from ..world import make_clip

    pipe = HappyHorsePipeline.from_pretrained(model_dir, "auto", "auto")  # where the run trains, if a GPU
    world = pipe.components.world_config()
    for seed in PREVIEW_SEEDS:
        clip = make_clip(seed, "test", world, ground_truth=False)
        result = pipe(clip.caption, image=clip.frames[0] if seed % 2 else None, seed=seed)
        name = f"{seed:02d}_{result.mode}"
        save_video(directory / f"{name}.mp4", result.frames[0], result.fps, result.audio[0], result.sample_rate)
        (directory / f"{name}.txt").write_text(clip.caption + "\n")


class _Bar:
    """A progress bar the run loop advances (`progress(step, end)`), started on its first step."""

    def __init__(self, what: str):
        self.what, self.bar, self.task = what, None, None

    def __call__(self, step: int, end: int) -> None:
        if self.bar is None:
            self.bar = progress()
            self.bar.start()
            self.task = self.bar.add_task(self.what, total=end, completed=step - 1)
        self.bar.update(self.task, completed=step, total=end)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@app.command("train")
def train_command(
    ctx: typer.Context,
    config: str = typer.Argument(..., help="A preset (tiny, small, base) or a .toml/.json config file."),
    out: Path = typer.Option(Path("runs/default"), help="Run directory; DIR/model is a model directory."),
    resume: bool = RESUME,
    max_steps: int = MAX_STEPS,
    minutes: float = MINUTES,
    init_from: Path = typer.Option(
        None, "--init", help="Fine-tune: start from this model directory's weights (same architecture)."
    ),
) -> None:
    """Train the model by flow matching on world clips; run under torchrun for DDP/FSDP."""
    require_extra("train")
    from ..train import load_config, train

    try:
        cfg = load_config(config, {"init_from": str(init_from)} if init_from else None)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="CONFIG") from None
    output_dir(out, "--out")

    def previews(model_dir: Path, step: int, last: bool) -> None:
        if cfg.sample_every and (step % cfg.sample_every == 0 or last):
            write_previews(model_dir, out / "samples" / f"step_{step:06d}")

    bar = _Bar("training")
    try:
        summary = train(cfg, out, resume, max_steps, minutes, log=console.print, progress=bar, on_export=previews)
    except (FileNotFoundError, ValueError) as exc:
        raise refused(exc, ctx) from None
    finally:
        bar.stop()
    if summary.get("log"):
        console.print(f"step {summary['step']}: loss {summary['log']['loss']:.4f}; model in {out}/model")


@app.command("train-codec")
def train_codec_command(
    ctx: typer.Context,
    config: Path = typer.Argument(..., help="A .toml/.json codec config (e.g. configs/video_codec.toml)."),
    out: Path = typer.Option(Path("runs/video_codec"), help="Run directory; DIR/codec is the trained codec."),
    resume: bool = RESUME,
    max_steps: int = MAX_STEPS,
    minutes: float = MINUTES,
    init_from: Path = typer.Option(
        None, "--init", help="Continue this codec run's checkpoint (weights, optimizer, step) under CONFIG."
    ),
    settings: list[str] = typer.Option(
        None, "--set", help="KEY=VALUE over CONFIG, the value in TOML (e.g. --set object_margin=0); repeatable."
    ),
) -> None:
    """Train the learned video codec (an autoencoder) on world clips; a training config names DIR/codec."""
    require_extra("train")
    import tomllib

    from ..train.codec import load_codec_config, train_codec

    overrides = {}
    for item in settings or []:
        key, _, value = item.partition("=")
        try:
            overrides[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE with a TOML value", param_hint="--set") from None
    try:
        cfg = load_codec_config(config, overrides)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="CONFIG") from None
    if init_from is not None and not (init_from / "checkpoint" / "state.json").is_file():
        raise typer.BadParameter(f"{init_from} is not a codec run directory (no checkpoint/)", param_hint="--init")
    output_dir(out, "--out")
    bar = _Bar("codec")
    try:
        summary = train_codec(cfg, out, resume, max_steps, minutes, console.print, bar, init_from=init_from)
    except (FileNotFoundError, ValueError) as exc:
        raise refused(exc, ctx) from None
    finally:
        bar.stop()
    figures = summary.get("export") or {}
    if figures:
        console.print(
            f"step {summary['step']}: PSNR {figures['psnr']:.2f} dB (objects {figures['object_psnr']:.2f} dB); "
            f"codec in {out}/codec"
        )


@app.command("distill")
def distill_command(
    ctx: typer.Context,
    teacher: Path = typer.Option(None, help="Model directory to distill (default: the embedded default model)."),
    out: Path = typer.Option(Path("runs/distill"), help="Run directory; DIR/model is the few-step model."),
    steps: int = typer.Option(4, min=1, max=64, help="The student's sampling steps (renoise, no guidance)."),
    guidance: float = typer.Option(
        None, min=0.0, max=30.0, help="The teacher's classifier-free guidance (default: its own)."
    ),
    batch_size: int = typer.Option(8, min=1, help="Clips per student update."),
    lr: float = typer.Option(1e-5, min=1e-9, max=1.0, help="Student and fake-denoiser learning rate."),
    fake_updates: int = typer.Option(5, min=1, max=50, help="Fake-denoiser updates per student update."),
    max_steps: int = typer.Option(
        None, min=1, help="Student updates in the run (default 1000; with --resume, extends it)."
    ),
    minutes: float = MINUTES,
    resume: bool = RESUME,
    seed: int = typer.Option(0, help="World seed of the prompts and conditions."),
    precision: str = typer.Option(
        "auto", help="auto (bfloat16 autocast on a GPU and on a CPU with native bfloat16), float32 or bfloat16."
    ),
) -> None:
    """Distill a model to a few steps without guidance (DMD-2); the result loads like any model."""
    require_extra("train")
    from ..distill import DistillConfig, distill
    from ..train.config import precision_problem

    if teacher is not None and not (teacher / "model_index.json").is_file():
        raise typer.BadParameter(f"{teacher} is not a model directory (no model_index.json)", param_hint="--teacher")
    if problem := precision_problem(precision):
        raise typer.BadParameter(problem, param_hint="--precision")
    cfg = DistillConfig(
        teacher=str(teacher) if teacher else None,
        student_steps=steps,
        guidance_scale=guidance,
        batch_size=batch_size,
        lr=lr,
        fake_lr=lr,
        fake_updates=fake_updates,
        max_steps=max_steps or 1000,
        seed=seed,
        precision=precision,
    )
    output_dir(out, "--out")
    bar = _Bar("distilling")
    try:
        summary = distill(cfg, out, resume, max_steps, minutes, log=console.print, progress=bar)
    except (FileNotFoundError, ValueError) as exc:
        raise refused(exc, ctx) from None
    finally:
        bar.stop()
    console.print(f"step {summary['step']}: few-step model in {out}/model ({steps} steps, no guidance)")
