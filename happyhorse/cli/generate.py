"""`happyhorse generate`: clips with sound from a prompt (+ image, + audio)."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import DEVICE_HELP, DTYPE_HELP, app, check_device, console, output_dir, parse_size, progress


def check_sampling(
    sampler: str | None,
    guidance_interval: tuple[float, float] | None,
    restart_interval: tuple[float, float] | None = None,
    autoguidance_interval: tuple[float, float] | None = None,
) -> None:
    """Sampling overrides of generate and eval, refused before any model loads."""
    from ..diffusion import SAMPLERS

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
    from ..generate import GenerateRequest, load_pipeline, run_generate

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
