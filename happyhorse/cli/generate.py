"""`happyhorse generate`: clips with sound from a prompt (+ image, + audio)."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import DEVICE_HELP, DTYPE_HELP, app, check_device, console, output_dir, parse_size, progress, refused

# the options every generating command shares, named as the request's fields (generate.GenerateRequest)
STEPS = typer.Option(None, "--steps", "--num-inference-steps", help="Sampling steps (default: the model's).")
GUIDANCE = typer.Option(None, "--guidance", "--guidance-scale", help="Classifier-free guidance of the video.")
AUDIO_GUIDANCE = typer.Option(
    None, "--audio-guidance", "--audio-guidance-scale", help="Classifier-free guidance of the sound."
)


@app.command("generate")
def generate_command(
    ctx: typer.Context,
    prompt: str = typer.Argument(None, help="What to generate (omit with --prompts-file)."),
    image: Path = typer.Option(None, help="First frame (PNG/JPEG): image-to-video."),
    audio: Path = typer.Option(None, help="Soundtrack (WAV/MP3/MP4): the video follows the sound."),
    last_image: Path = typer.Option(None, help="Last frame (PNG/JPEG); with --image: first + last frame."),
    keyframes: list[str] = typer.Option(
        None, "--keyframe", help="T=PATH: the clip shows image PATH at T seconds (repeatable)."
    ),
    references: list[Path] = typer.Option(
        None, "--reference", help="An image of the subject on its own: the clip shows it (repeatable)."
    ),
    extend: Path = typer.Option(
        None, help="An MP4 to continue, video and sound: writes it followed by --seconds more."
    ),
    shots: list[str] = typer.Option(
        None, "--shot", help="One shot's prompt (repeatable): one MP4, hard cuts between, --seconds shared."
    ),
    model: Path = typer.Option(None, help="Model directory (default: the embedded default model)."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives the same clip."),
    num_inference_steps: int = STEPS,
    guidance_scale: float = GUIDANCE,
    audio_guidance_scale: float = AUDIO_GUIDANCE,
    seconds: float = typer.Option(None, help="Clip length (default: the model's, or the audio's)."),
    size: str = typer.Option(None, help="WIDTHxHEIGHT (default: the model's)."),
    fps: float = typer.Option(None, help="Frames per second (default: the model's)."),
    output: Path = typer.Option(Path("happyhorse.mp4"), help="Output MP4; a JSON sidecar is written beside it."),
    prompts_file: Path = typer.Option(None, help="One prompt per line: load the model once, write OUT_000.mp4 ..."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    dtype: str = typer.Option("auto", help=DTYPE_HELP),
) -> None:
    """Generate a video with sound (MP4: H.264 + AAC) and a JSON sidecar of every setting."""
    from ..generate import GenerateRequest, check_request, load_pipeline, run_generate

    if prompt is not None and prompts_file is not None or (prompt is None and prompts_file is None and not shots):
        raise typer.BadParameter("give exactly one of PROMPT or --prompts-file (or --shot)", param_hint="PROMPT")
    keyed = []
    for text in keyframes or []:
        time, sep, path = text.partition("=")
        try:
            keyed.append((float(time), Path(path)))
        except ValueError:
            sep = ""
        if not sep or not path:
            raise typer.BadParameter(f"expected T=PATH with T in seconds, got {text!r}", param_hint="--keyframe")
    given = [("--image", image), ("--audio", audio), ("--prompts-file", prompts_file), ("--last-image", last_image)]
    given.append(("--extend", extend))
    given += [("--keyframe", p) for _, p in keyed] + [("--reference", p) for p in references or []]
    for name, path in given:
        if path is not None and not path.is_file():
            raise typer.BadParameter(f"no such file: {path}", param_hint=name)
    if output.suffix.lower() != ".mp4":
        raise typer.BadParameter(f"must end in .mp4, got {output.name!r}", param_hint="--output")
    check_device(device, dtype)
    width, height = parse_size(size) if size is not None else (None, None)
    if prompts_file is not None:
        prompts = [line.strip() for line in prompts_file.read_text().splitlines() if line.strip()]
        if not prompts:
            raise typer.BadParameter("the file holds no prompt", param_hint="--prompts-file")
        outputs = [output.with_name(f"{output.stem}_{k:03d}.mp4") for k in range(len(prompts))]
    else:
        prompts, outputs = [prompt or ""], [output]
    fields = dict(seed=seed, seconds=seconds, height=height, width=width, fps=fps, last_image=last_image)
    fields.update(keyframes=tuple(keyed), references=tuple(references or ()), extend=extend, shots=tuple(shots or ()))
    fields.update(num_inference_steps=num_inference_steps, guidance_scale=guidance_scale)
    requests = [
        GenerateRequest(text, image, audio, audio_guidance_scale=audio_guidance_scale, **fields) for text in prompts
    ]
    try:
        pipe = load_pipeline(model, device, dtype)
    except (FileNotFoundError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--model") from None
    try:
        for request in requests:  # every request refused before the first clip is made
            check_request(pipe, request)
    except ValueError as exc:
        raise refused(exc, ctx) from None
    output_dir(output.parent, "--output")
    with progress() as bar:
        task = bar.add_task("generating", total=len(requests))
        for request, path in zip(requests, outputs, strict=True):
            try:
                result = run_generate(pipe, request, path)
            except ValueError as exc:  # e.g. an image or soundtrack the media layer cannot read
                raise refused(exc, ctx) from None
            bar.advance(task)
            console.print(f"{path} ({result['mode']}, {result['timings']['total_s']:.2f} s)")
