"""`happyhorse eval`: metrics of clips or of a model beside ground truth."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import DEVICE_HELP, DTYPE_HELP, app, check_device, console, output_dir, progress, refused, require_extra
from .generate import AUDIO_GUIDANCE, GUIDANCE, STEPS


@app.command("eval")
def eval_command(
    ctx: typer.Context,
    clips: Path = typer.Option(None, help="Directory of NAME.mp4 (+ NAME.json sidecars) to evaluate."),
    model: Path = typer.Option(None, help="Model directory: generate the world test prompts, then evaluate."),
    default_model: bool = typer.Option(False, "--default-model", help="Evaluate the embedded default model."),
    suite: str = typer.Option("all", help="world, temporal, speech, control or all."),
    kind: str = typer.Option(
        "physics", help="With --model: the world clips the test prompts come from: physics, talk or mixed."
    ),
    modes: list[str] = typer.Option(
        None,
        "--mode",
        help="With --model (repeatable): T2V, TI2V, TA2V (default: all three), or FLF2V, R2V, LONG, SHOTS.",
    ),
    out: Path = typer.Option(Path("eval_out"), help="Where report.json and report.html go."),
    count: int = typer.Option(30, min=1, max=10_000, help="Test prompts to generate with --model."),
    first: int = typer.Option(0, min=0, max=1_000_000, help="With --model: the first test prompt's number."),
    compare: list[Path] = typer.Option(None, help="A report.json to compare; give it twice (A, then B)."),
    num_inference_steps: int = STEPS,
    guidance_scale: float = GUIDANCE,
    audio_guidance_scale: float = AUDIO_GUIDANCE,
    device: str = typer.Option("auto", help="With --model: " + DEVICE_HELP),
    dtype: str = typer.Option("auto", help="With --model: " + DTYPE_HELP),
) -> None:
    """Measure clips or a model: temporal, physics, prompt-following and sync metrics, with plots."""
    require_extra("eval")
    from ..eval import compare_reports, evaluate_clips, evaluate_model, write_report
    from ..media import MediaError

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
    from ..eval.suite import MODES, SUITES
    from ..world.sample import KINDS

    if suite not in SUITES:
        raise typer.BadParameter(f"must be one of {', '.join(SUITES)}, got {suite!r}", param_hint="--suite")
    if kind not in KINDS:
        raise typer.BadParameter(f"must be one of {', '.join(KINDS)}, got {kind!r}", param_hint="--kind")
    chosen = [
        name for name, value in (("--clips", clips), ("--model", model), ("--default-model", default_model)) if value
    ]
    if len(chosen) != 1:
        raise typer.BadParameter(
            "give exactly one of --clips DIR, --model DIR or --default-model", param_hint="--clips"
        )
    check_device(device, dtype)
    overrides = {
        name: value
        for name, value in (
            ("num_inference_steps", num_inference_steps),
            ("guidance_scale", guidance_scale),
            ("audio_guidance_scale", audio_guidance_scale),
        )
        if value is not None
    }
    if clips is not None and (overrides or first or modes or kind != "physics" or (device, dtype) != ("auto", "auto")):
        raise typer.BadParameter(
            "these apply to --model only: --first, --kind, --mode, --steps, --guidance, --audio-guidance, "
            "--device, --dtype",
            param_hint="--clips",
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
                    overrides=overrides,
                    first=first,
                    modes=tuple(modes) if modes else MODES,
                    kind=kind,
                    device=device,
                    dtype=dtype,
                )
            except FileNotFoundError as exc:
                raise typer.BadParameter(str(exc), param_hint="--model") from None
            except ValueError as exc:  # a setting the model refuses; the message names it
                raise refused(exc, ctx) from None
    json_path, html_path = write_report(report, out)
    for name, entry in report["metrics"].items():
        line = f"{name:32s} {entry['value']:10.4g} {entry['unit']:12s} score {entry['score']:.3f}"
        if "score_interval_95" in entry:  # the pooled sync share, over `impacts` impacts
            low, high = entry["score_interval_95"]
            line += f" [{low:.3f}, {high:.3f}] over {entry['impacts']} impacts"
        console.print(line)
    console.print(f"wrote {json_path} and {html_path}")
