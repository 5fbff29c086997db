"""`happyhorse train`, `train-codec`, `train-refiner`, `distill`: training runs."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import app, console, output_dir, progress


@app.command("train")
def train_command(
    config: str = typer.Argument(..., help="A preset (tiny, small, base) or a .toml/.json config file."),
    out: Path = typer.Option(Path("runs/default"), help="Run directory; DIR/model is a model directory."),
    resume: bool = typer.Option(False, help="Continue from DIR/checkpoint (with the run's saved config)."),
    max_steps: int = typer.Option(None, min=1, help="Stop after this many steps (default: the config's)."),
    minutes: float = typer.Option(None, min=0.01, help="Stop (and checkpoint) after this much wall time."),
    anneal_steps: int = typer.Option(
        None, min=1, help="Cool down from the step resumed from: lr falls linearly to 2 % over N steps, then stop."
    ),
    init_from: Path = typer.Option(
        None, "--init", help="Fine-tune: start from this model directory's weights (same architecture)."
    ),
) -> None:
    """Train the model by flow matching on world clips; run under torchrun for DDP/FSDP."""
    from ..train import load_config, train

    try:
        cfg = load_config(config, {"init_from": str(init_from)} if init_from else None)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="CONFIG") from None
    output_dir(out, "--out")
    try:
        summary = train(
            cfg, out, resume=resume, max_steps=max_steps, minutes=minutes, log=console.print, anneal_steps=anneal_steps
        )
    except (FileNotFoundError, ValueError) as exc:
        if "init_from" not in str(exc):
            raise
        raise typer.BadParameter(str(exc).removeprefix("init_from: "), param_hint="--init") from None
    if summary.get("log"):
        console.print(f"step {summary['step']}: loss {summary['log']['loss']:.4f}; model in {out}/model")


@app.command("train-codec")
def train_codec_command(
    config: Path = typer.Argument(..., help="A .toml/.json codec config (e.g. configs/video_codec.toml)."),
    out: Path = typer.Option(Path("runs/video_codec"), help="Run directory; DIR/codec is the trained codec."),
    resume: bool = typer.Option(False, help="Continue from DIR/checkpoint (with the run's saved config)."),
    max_steps: int = typer.Option(None, min=1, help="Stop after this many steps (default: the config's)."),
    minutes: float = typer.Option(None, min=0.01, help="Stop (and checkpoint) after this much wall time."),
    init_from: Path = typer.Option(
        None, "--init", help="Continue this codec run's checkpoint (weights, optimizer, step) under CONFIG."
    ),
    settings: list[str] = typer.Option(
        None, "--set", help="KEY=VALUE over CONFIG, the value in TOML (e.g. --set object_margin=0); repeatable."
    ),
) -> None:
    """Train the learned video codec (an autoencoder) on world clips; a training config names DIR/codec."""
    import tomllib

    from rich.progress import Progress

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
    output_dir(out, "--out")
    with Progress(console=console) as bar:
        task = bar.add_task("codec", total=max_steps or cfg.max_steps)
        try:
            summary = train_codec(
                cfg,
                out,
                resume=resume,
                max_steps=max_steps,
                minutes=minutes,
                log=console.print,
                progress=lambda step, end: bar.update(task, completed=step, total=end),
                init_from=init_from,
            )
        except (FileNotFoundError, ValueError) as exc:
            if "init_from" not in str(exc):
                raise
            raise typer.BadParameter(str(exc).removeprefix("init_from: "), param_hint="--init") from None
    if summary:
        console.print(
            f"step {summary.get('step')}: PSNR {summary.get('psnr', float('nan')):.2f} dB "
            f"(objects {summary.get('object_psnr', float('nan')):.2f} dB); codec in {out}/codec"
        )


@app.command("train-refiner")
def train_refiner_command(
    config: Path = typer.Argument(..., help="A .toml/.json refiner config (e.g. configs/refiner.toml)."),
    model: Path = typer.Option(None, help="The model whose samples it learns to redraw (default: the embedded one)."),
    out: Path = typer.Option(Path("runs/refiner"), help="Run directory (resumes); DIR/refiner is the trained refiner."),
    minutes: float = typer.Option(None, min=0.01, help="Stop training (and checkpoint) after this much wall time."),
    max_steps: int = typer.Option(
        None, min=1, help="Training steps in all (default: the config's); more extends a finished run."
    ),
) -> None:
    """Train a refiner that redraws a model's decoded frames, from its own SDEdit samples of world clips."""
    from ..train.refiner import RunDirectoryError, load_refiner_config, run_refiner

    if model is not None and not (model / "model_index.json").is_file():
        raise typer.BadParameter(f"{model} is not a model directory (no model_index.json)", param_hint="--model")
    try:
        cfg = load_refiner_config(config, {"max_steps": max_steps} if max_steps else None)
    except (TypeError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="CONFIG") from None
    output_dir(out, "--out")
    with progress() as bar:
        tasks = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        try:
            refiner = run_refiner(cfg, model, out, minutes=minutes, log=console.print, progress=report)
        except RunDirectoryError as exc:
            raise typer.BadParameter(str(exc), param_hint="--out") from None
        except ValueError as exc:  # a setting the pairs cannot meet (window, validation_clips)
            raise typer.BadParameter(str(exc), param_hint="CONFIG") from None
    console.print(f"refiner in {refiner}: python scripts/ship_default_model.py MODEL --refiner {refiner}")


@app.command("distill")
def distill_command(
    teacher: Path = typer.Option(None, help="Model directory to distill (default: the embedded default model)."),
    out: Path = typer.Option(Path("runs/distill"), help="Run directory; DIR/model is the few-step model."),
    steps: int = typer.Option(4, min=1, max=64, help="The student's sampling steps (renoise, no guidance)."),
    guidance: float = typer.Option(None, min=0.0, max=30.0, help="The teacher's guidance (default: its own)."),
    batch_size: int = typer.Option(8, min=1, help="Clips per student update."),
    lr: float = typer.Option(1e-5, min=1e-9, max=1.0, help="Student and fake-denoiser learning rate."),
    fake_updates: int = typer.Option(5, min=1, max=50, help="Fake-denoiser updates per student update."),
    max_steps: int = typer.Option(
        None, min=1, help="Student updates in the run (default 1000; with --resume, extends it)."
    ),
    minutes: float = typer.Option(None, min=0.01, help="Stop (and checkpoint) after this much wall time."),
    resume: bool = typer.Option(False, help="Continue from DIR/checkpoint (with the run's saved config)."),
    seed: int = typer.Option(0, help="World seed of the prompts and conditions."),
    precision: str = typer.Option(
        "auto", help="auto (bfloat16 autocast on a GPU and on a CPU with native bfloat16), float32 or bfloat16."
    ),
) -> None:
    """Distill a model to a few steps without guidance (DMD-2); the result loads like any model."""
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
    try:
        summary = distill(cfg, out, resume=resume, max_steps=max_steps, minutes=minutes, log=console.print)
    except ValueError as exc:
        if not str(exc).startswith("out: "):
            raise
        raise typer.BadParameter(str(exc).removeprefix("out: "), param_hint="--out") from None
    console.print(f"step {summary['step']}: few-step model in {out}/model ({steps} steps, no guidance)")
