"""The `happyhorse` command: a thin Typer layer over the Python API (DESIGN.md section 5)."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

app = typer.Typer(add_completion=False, no_args_is_help=True, help="HappyHorse: joint video + audio generation.")
world_app = typer.Typer(no_args_is_help=True, help="The procedural audio-visual physics world.")
app.add_typer(world_app, name="world")
console = Console(stderr=True)

from .arena.cli import arena_app  # noqa: E402 - after `app`, the sub-app registers beside `world`

app.add_typer(arena_app, name="arena")


def parse_size(value: str, option: str = "--size") -> tuple[int, int]:
    """'WxH' -> (W, H), with an error that names the option and the allowed form."""
    try:
        width, height = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(
            f"expected WIDTHxHEIGHT such as 64x64 or 112x64, got {value!r}", param_hint=option
        ) from None
    return width, height


def output_dir(path: Path, option: str) -> Path:
    """Create the directory `path` (with its parents) for a command's output, or fail naming `option`:
    a path under a regular file, or one this user cannot write in, is refused before any work."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot create the directory {path}: {exc.strerror or exc}", param_hint=option
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise typer.BadParameter(f"cannot write in {path}", param_hint=option)
    return path


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
    seed: int = typer.Option(0, min=0, help="Seed of the first clip; clip k uses seed + k."),
    count: int = typer.Option(1, min=1, max=100_000, help="Number of clips."),
    split: str = typer.Option("train", help="train, or test (held-out compositions)."),
    size: str = typer.Option("64x64", help="Frame size WIDTHxHEIGHT (even, 16..4096 each; any aspect ratio)."),
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
            clip = make_clip(seed + k, split, config)
            mp4, _ = write_sample(clip, out, f"{split}_{seed + k:06d}")
            bar.advance(task)
    console.print(f"wrote {count} clip(s) to {out}/ (last: {mp4.name}: {clip.caption})")


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
    from .train import load_config, train

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

    from .train.codec import load_codec_config, train_codec

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
    from .train.refiner import RunDirectoryError, load_refiner_config, run_refiner

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
    from .distill import DistillConfig, distill
    from .train.config import precision_problem

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


def check_sampling(
    sampler: str | None,
    guidance_interval: tuple[float, float] | None,
    restart_interval: tuple[float, float] | None = None,
    autoguidance_interval: tuple[float, float] | None = None,
) -> None:
    """Sampling overrides of generate and eval, refused before any model loads."""
    from .diffusion import SAMPLERS

    if sampler is not None and sampler not in SAMPLERS:
        raise typer.BadParameter(f"must be one of {', '.join(SAMPLERS)}, got {sampler!r}", param_hint="--sampler")
    for flag, interval in (
        ("--guidance-interval", guidance_interval),
        ("--autoguidance-interval", autoguidance_interval),
    ):
        if interval is not None and not 0 <= interval[0] <= interval[1] <= 1:
            raise typer.BadParameter(f"need 0 <= LOW <= HIGH <= 1, got {interval[0]} {interval[1]}", param_hint=flag)
    if restart_interval is not None and not 0 < restart_interval[0] < restart_interval[1] < 1:
        raise typer.BadParameter(
            f"need 0 < LOW < HIGH < 1, got {restart_interval[0]} {restart_interval[1]}",
            param_hint="--restart-interval",
        )


def check_device(device: str, dtype: str) -> None:
    """--device and --dtype of generate, eval and serve, refused before any model loads."""
    from .pipeline import resolve_device, resolve_dtype

    try:
        chosen = resolve_device(device)
    except ValueError as exc:
        raise typer.BadParameter(str(exc).removeprefix("device: "), param_hint="--device") from None
    try:
        resolve_dtype(dtype, chosen)
    except ValueError as exc:
        raise typer.BadParameter(str(exc).removeprefix("dtype: "), param_hint="--dtype") from None


DEVICE_HELP = "auto (the GPU where there is one, else the CPU), cpu, cuda or cuda:N."
DTYPE_HELP = (
    "auto (bfloat16 on a GPU and on a CPU with native bfloat16, else float32), float32, bfloat16 or float16 (GPU only)."
)


@app.command("generate")
def generate_command(
    prompt: str = typer.Argument(None, help="What to generate (omit with --prompts-file)."),
    image: Path = typer.Option(None, help="First frame (PNG/JPEG): image-to-video."),
    audio: Path = typer.Option(None, help="Soundtrack (WAV/MP3/MP4): the video follows the sound."),
    model: Path = typer.Option(None, help="Model directory (default: the embedded default model)."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives the same clip."),
    steps: int = typer.Option(None, min=1, max=1000, help="Sampling steps (default: the model's)."),
    guidance: float = typer.Option(None, min=0, max=30, help="Guidance scale (default: the model's)."),
    audio_guidance: float = typer.Option(
        None, min=0, max=30, help="Guidance scale of the soundtrack (default: the model's)."
    ),
    autoguidance: float = typer.Option(
        None,
        min=0,
        max=30,
        help="Autoguidance of the video by the model's guide model; 1 = off (default: the model's).",
    ),
    audio_autoguidance: float = typer.Option(
        None, min=0, max=30, help="Autoguidance of the soundtrack; 1 = off (default: the model's)."
    ),
    autoguidance_interval: tuple[float, float] = typer.Option(
        None, help="LOW HIGH: run the guide model only at noise levels in [LOW, HIGH] (default: the model's)."
    ),
    contrast_guidance: float = typer.Option(
        None,
        min=0,
        max=30,
        help="Contrastive guidance away from the prompt with the model's swap words exchanged (or from "
        "--contrast-prompt); 1 = off (default: the model's).",
    ),
    contrast_prompt: str = typer.Option(None, help="The prompt contrastive guidance pushes away from."),
    sampler: str = typer.Option(None, help="euler, dpmpp_2m, dpmpp_2m_sde or renoise (default: the model's)."),
    shift: float = typer.Option(None, min=0.1, max=20, help="Noise schedule shift (default: the model's)."),
    guidance_interval: tuple[float, float] = typer.Option(
        None, help="LOW HIGH: guide only at noise levels in [LOW, HIGH] (default: the model's)."
    ),
    restarts: int = typer.Option(
        None,
        min=0,
        max=8,
        help="Restart sampling: walk the --restart-interval band again N times (default: the model's).",
    ),
    restart_interval: tuple[float, float] = typer.Option(
        None,
        help="LOW HIGH: on reaching the first schedule level <= LOW, re-noise to the first level <= HIGH and "
        "sample down again (default: the model's).",
    ),
    seconds: float = typer.Option(None, min=0.1, max=20, help="Clip length (default: the model's, or the audio's)."),
    size: str = typer.Option(None, help="WIDTHxHEIGHT (default: the model's)."),
    refine: bool = typer.Option(
        None, "--refine/--no-refine", help="Redraw the frames with the model's refiner (default: if it has one)."
    ),
    self_condition: bool = typer.Option(
        None,
        "--self-condition/--no-self-condition",
        help="Give each step the last step's x0 (default: if the model has self-conditioning).",
    ),
    output: Path = typer.Option(Path("happyhorse.mp4"), help="Output MP4; a JSON sidecar is written beside it."),
    prompts_file: Path = typer.Option(None, help="One prompt per line: load the model once, write OUT_000.mp4 ..."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    dtype: str = typer.Option("auto", help=DTYPE_HELP),
) -> None:
    """Generate a video with sound (MP4: H.264 + AAC) and a JSON sidecar of every setting."""
    from .generate import GenerateRequest, load_pipeline, run_generate

    if (prompt is None) == (prompts_file is None):
        raise typer.BadParameter("give exactly one of PROMPT or --prompts-file", param_hint="PROMPT")
    for name, path in (("--image", image), ("--audio", audio), ("--prompts-file", prompts_file)):
        if path is not None and not path.is_file():
            raise typer.BadParameter(f"no such file: {path}", param_hint=name)
    if output.suffix.lower() != ".mp4":
        raise typer.BadParameter(f"must end in .mp4, got {output.name!r}", param_hint="--output")
    check_sampling(sampler, guidance_interval, restart_interval, autoguidance_interval)
    check_device(device, dtype)
    width = height = None
    if size is not None:
        width, height = parse_size(size)
    if prompts_file is not None:
        prompts = [line.strip() for line in prompts_file.read_text().splitlines() if line.strip()]
        if not prompts:
            raise typer.BadParameter("the file holds no prompt", param_hint="--prompts-file")
        outputs = [output.with_name(f"{output.stem}_{k:03d}.mp4") for k in range(len(prompts))]
    else:
        prompts, outputs = [prompt], [output]
    try:
        pipe = load_pipeline(model, device, dtype)
    except (FileNotFoundError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--model") from None
    output_dir(output.parent, "--output")
    with progress() as bar:
        task = bar.add_task("generating", total=len(prompts))
        for text, path in zip(prompts, outputs, strict=True):
            request = GenerateRequest(
                text,
                image,
                audio,
                seed,
                steps,
                guidance,
                seconds,
                width,
                height,
                sampler,
                shift,
                guidance_interval,
                audio_guidance,
                autoguidance,
                audio_autoguidance,
                contrast_prompt=contrast_prompt,
                contrast_guidance=contrast_guidance,
                refine=refine,
                self_condition=self_condition,
                restarts=restarts,
                restart_interval=restart_interval,
                autoguidance_interval=autoguidance_interval,
            )
            try:
                result = run_generate(pipe, request, path)
            except ValueError as exc:
                raise typer.BadParameter(str(exc)) from None
            bar.advance(task)
            console.print(f"{path} ({result['mode']}, {result['timings']['total_s']:.2f} s)")


@app.command("eval")
def eval_command(
    clips: Path = typer.Option(None, help="Directory of NAME.mp4 (+ NAME.json sidecars) to evaluate."),
    model: Path = typer.Option(None, help="Model directory: generate the world test prompts, then evaluate."),
    default_model: bool = typer.Option(False, "--default-model", help="Evaluate the embedded default model."),
    suite: str = typer.Option("all", help="world, temporal or all."),
    out: Path = typer.Option(Path("eval_out"), help="Where report.json and report.html go."),
    count: int = typer.Option(30, min=1, max=10_000, help="Test prompts to generate with --model."),
    first: int = typer.Option(0, min=0, max=1_000_000, help="With --model: the first test prompt's number."),
    compare: list[Path] = typer.Option(None, help="A report.json to compare; give it twice (A, then B)."),
    steps: int = typer.Option(None, min=1, max=1000, help="With --model: sampling steps (default: the model's)."),
    guidance: float = typer.Option(None, min=0, max=30, help="With --model: guidance scale (default: the model's)."),
    audio_guidance: float = typer.Option(None, min=0, max=30, help="With --model: the soundtrack's guidance scale."),
    autoguidance: float = typer.Option(None, min=0, max=30, help="With --model: video autoguidance by its guide."),
    audio_autoguidance: float = typer.Option(None, min=0, max=30, help="With --model: the soundtrack's autoguidance."),
    autoguidance_interval: tuple[float, float] = typer.Option(
        None, help="With --model: LOW HIGH, run the guide only at noise levels in [LOW, HIGH]."
    ),
    sampler: str = typer.Option(None, help="With --model: euler, dpmpp_2m, dpmpp_2m_sde or renoise."),
    shift: float = typer.Option(None, min=0.1, max=20, help="With --model: noise schedule shift."),
    guidance_interval: tuple[float, float] = typer.Option(
        None, help="With --model: LOW HIGH, guide only at noise levels in [LOW, HIGH]."
    ),
    restarts: int = typer.Option(None, min=0, max=8, help="With --model: restart sampling, this many times."),
    restart_interval: tuple[float, float] = typer.Option(
        None, help="With --model: LOW HIGH, the noise band each restart walks again."
    ),
    refine: bool = typer.Option(
        None, "--refine/--no-refine", help="With --model: redraw with its refiner (default: if it has one)."
    ),
    self_condition: bool = typer.Option(
        None,
        "--self-condition/--no-self-condition",
        help="With --model: each step reads the last one's x0 (default: if the model has self-conditioning).",
    ),
    device: str = typer.Option("auto", help="With --model: " + DEVICE_HELP),
    dtype: str = typer.Option("auto", help="With --model: " + DTYPE_HELP),
) -> None:
    """Measure clips or a model: temporal, physics, prompt-following and sync metrics, with plots."""
    from .eval import compare_reports, evaluate_clips, evaluate_model, write_report
    from .media import MediaError

    if compare:
        if len(compare) != 2:
            raise typer.BadParameter(f"give exactly two reports, got {len(compare)}", param_hint="--compare")
        for path in compare:
            if not path.is_file():
                raise typer.BadParameter(f"no such report: {path}", param_hint="--compare")
        try:
            json_path, html_path = compare_reports(compare[0], compare[1], output_dir(out, "--out"))
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--compare") from None
        console.print(f"wrote {json_path} and {html_path}")
        return
    if suite not in ("world", "temporal", "all"):
        raise typer.BadParameter(f"must be world, temporal or all, got {suite!r}", param_hint="--suite")
    chosen = [
        name for name, value in (("--clips", clips), ("--model", model), ("--default-model", default_model)) if value
    ]
    if len(chosen) != 1:
        raise typer.BadParameter(
            "give exactly one of --clips DIR, --model DIR or --default-model", param_hint="--clips"
        )
    check_sampling(sampler, guidance_interval, restart_interval, autoguidance_interval)
    check_device(device, dtype)
    sampling = {
        "steps": steps,
        "guidance": guidance,
        "sampler": sampler,
        "shift": shift,
        "guidance_interval": guidance_interval,
        "audio_guidance": audio_guidance,
        "autoguidance": autoguidance,
        "audio_autoguidance": audio_autoguidance,
        "autoguidance_interval": autoguidance_interval,
        "refine": refine,
        "self_condition": self_condition,
        "restarts": restarts,
        "restart_interval": restart_interval,
    }
    generating = any(v is not None for v in sampling.values()) or first or (device, dtype) != ("auto", "auto")
    if clips is not None and generating:
        raise typer.BadParameter(
            "these apply to --model only: --first, --steps, --guidance, --audio-guidance, --autoguidance, "
            "--audio-autoguidance, --autoguidance-interval, --sampler, --shift, --guidance-interval, --restarts, "
            "--restart-interval, --refine, --self-condition, --device, --dtype",
            param_hint="--steps",
        )
    if clips is not None and not clips.is_dir():
        raise typer.BadParameter(f"not a directory: {clips}", param_hint="--clips")
    if model is not None and not (model / "model_index.json").is_file():
        raise typer.BadParameter(f"{model} is not a model directory (no model_index.json)", param_hint="--model")
    output_dir(out, "--out")
    with progress() as bar:
        if clips is not None:
            task = bar.add_task("evaluating", total=len(list(clips.glob("*.mp4"))))
            try:
                report = evaluate_clips(clips, suite, progress=lambda: bar.advance(task))
            except (FileNotFoundError, MediaError) as exc:  # MediaError names the clip it cannot read
                raise typer.BadParameter(str(exc), param_hint="--clips") from None
        else:
            task = bar.add_task("generating", total=count)
            try:
                report = evaluate_model(
                    model,
                    out,
                    suite,
                    count,
                    progress=lambda: bar.advance(task),
                    sampling=sampling,
                    first=first,
                    device=device,
                    dtype=dtype,
                )
            except FileNotFoundError as exc:
                raise typer.BadParameter(str(exc), param_hint="--model") from None
            except ValueError as exc:  # a sampling setting the model refuses; the message names it
                raise typer.BadParameter(str(exc)) from None
    json_path, html_path = write_report(report, out)
    for name, entry in report["metrics"].items():
        line = f"{name:32s} {entry['value']:10.4g} {entry['unit']:12s} score {entry['score']:.3f}"
        if "score_interval_95" in entry:  # the pooled sync share, over `impacts` impacts
            low, high = entry["score_interval_95"]
            line += f" [{low:.3f}, {high:.3f}] over {entry['impacts']} impacts"
        console.print(line)
    console.print(f"wrote {json_path} and {html_path}")


@app.command("serve")
def serve_command(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, min=0, max=65535, help="TCP port."),
    model: Path = typer.Option(None, help="Model directory (default: the embedded default model)."),
    db: str = typer.Option(None, help="SQLAlchemy URL of the job store (default: sqlite:///DATA/jobs.sqlite)."),
    data: Path = typer.Option(Path("serve_data"), help="Where clips, thumbnails and uploads are kept."),
    workers: int = typer.Option(1, min=1, max=64, help="Generation threads, one model load each."),
    api_key: str = typer.Option(
        None, envvar="HAPPYHORSE_API_KEYS", help="Comma-separated bearer tokens required on /v1 (default: open)."
    ),
    admin_key: str = typer.Option(
        None, envvar="HAPPYHORSE_ADMIN_KEY", help="Bearer token for /v1/admin (default: admin routes off)."
    ),
    price_per_hour: float = typer.Option(2.0, min=0, help="Price of one hour of worker compute, for job costs."),
    max_seconds: float = typer.Option(12.0, min=0.1, max=20, help="Longest clip a request may ask for."),
    max_jobs_per_client: int = typer.Option(8, min=1, help="Unfinished jobs one client may have."),
    max_queued: int = typer.Option(256, min=1, help="Jobs waiting in all; beyond it requests get 429."),
    keep_hours: float = typer.Option(
        None, min=0.001, help="Delete finished jobs and their files this many hours after (default: keep all)."
    ),
    trusted_proxies: str = typer.Option(
        "127.0.0.1",
        envvar="FORWARDED_ALLOW_IPS",
        help="Comma-separated proxy addresses whose X-Forwarded-For names the client (per-client caps, limits).",
    ),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    dtype: str = typer.Option("auto", help=DTYPE_HELP),
) -> None:
    """Serve the OpenAI-shaped video API (/v1/videos), the studio page (/) and /health, /metrics."""
    import uvicorn
    from sqlalchemy.engine import make_url

    from .serve import ServeConfig, check_model_dir, create_app

    try:
        check_model_dir(model)
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc), param_hint="--model") from None
    check_device(device, dtype)
    keys = tuple(k.strip() for k in (api_key or "").split(",") if k.strip())
    try:
        config = ServeConfig(
            model=model,
            device=device,
            dtype=dtype,
            data_dir=data,
            db_url=db,
            workers=workers,
            api_keys=keys,
            admin_key=admin_key or None,
            price_per_hour=price_per_hour,
            max_seconds=max_seconds,
            max_jobs_per_client=max_jobs_per_client,
            max_queued=max_queued,
            keep_hours=keep_hours,
        )
        application = create_app(config)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    except Exception as exc:  # e.g. an unreachable or malformed --db URL
        raise typer.BadParameter(f"{type(exc).__name__}: {exc}", param_hint="--db") from None
    shown = make_url(config.database_url).render_as_string(hide_password=True)
    console.print(f"serving {config.model_dir} on http://{host}:{port}/ (jobs in {shown})")
    uvicorn.run(
        application, host=host, port=port, log_level="info", proxy_headers=True, forwarded_allow_ips=trusted_proxies
    )


def main() -> None:
    app()
