"""Choose a model's default sampling settings by measurement: `happyhorse eval --model` over a grid.

    python bench/sampling_defaults.py --model happyhorse/assets/default_model --count 24 \
        --grid euler:8:1 euler:16:1 euler:16:3 dpmpp_2m:8:1 --json out.json

Each grid point is SAMPLER:STEPS:GUIDANCE, optionally followed by :shift=S (the schedule's shift),
:interval=LOW-HIGH (the noise levels where guidance applies), :audio=G (the soundtrack's guidance) and
:auto=A and :audio_auto=A (autoguidance of the video and of the sound by the model directory's
guide_transformer), :skip=I+J (the guide passes over blocks I and J; without a guide_transformer
the guide is the model itself: skip-layer guidance), :local=I+J (in blocks I and J the guide's video
tokens see no other latent frame: temporal self-guidance) and :drops=audio (or image, image+audio: the
unconditional branch goes without the given soundtrack or first frame too, so guidance pushes toward
them as well as the prompt; `--modes TA2V` measures such a point on the prompts it changes) and
:corr=R (the share of the video noise's variance all latent frames share) and :contrast=D:swaps=A/B+C/D
(contrastive guidance at scale D away from the prompt with words A and B, C and D exchanged; without
:swaps, the model's stored contrast_swaps) and :refine=0 or 1 (whether the model's refiner/ redraws
the decoded frames; by default it does wherever the model has one), :selfcond=0 or 1 (whether a
self-conditioning model reads the x0 of its last step; by default it does) and :restart=LOW-HIGH (restart
sampling: on reaching the first schedule level <= LOW, re-noise to the first level <= HIGH and walk that
band again; :restarts=K times, once by default). A point without :restart= samples without a restart,
whatever the model stores, since a stored band belongs to the model's own step count.
`--dtype bfloat16` (or `--device cuda`) runs every point's transformers so, to measure what the
compute dtype costs; by default the CPU in float32, the dtype every figure of MODEL_CARD.md's grids
was measured in (`--dtype auto` is what `happyhorse generate` and `eval` run).
Every point generates the same seeded world test prompts
(T2V, TI2V, TA2V in turn) and is scored by the evaluation suite; the table shows the metrics the
default model's bars are set on (issue 5) and the generation time per clip.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from happyhorse.eval import evaluate_model
from happyhorse.eval.suite import MODES
from happyhorse.pipeline import SchedulerConfig

COLUMNS = (
    "colour_accuracy",
    "shape_accuracy",
    "direction_accuracy",
    "object_persistence_rate",
    "av_offset_ms",  # its score: the share of impacts with a sound onset within one frame
    "subject_consistency_proxy",
    "physics_residual_px",
    "seconds_per_clip",
)


def cell(metrics: dict, name: str) -> float:
    """The table's figure of a metric: av_offset_ms by its score (share within one frame), others by value."""
    m = metrics.get(name)
    if m is None:
        return float("nan")
    return m["score"] if name == "av_offset_ms" else m["value"]


def parse_point(text: str) -> dict:
    """SAMPLER:STEPS:GUIDANCE, then optional shift=S, interval=LOW-HIGH (the guidance interval), audio=G,
    auto=A, audio_auto=A (autoguidance), auto_interval=LOW-HIGH (the noise levels where the guide runs),
    skip=I+J (blocks the guide passes over), local=I+J (blocks where
    the guide's video tokens see no other latent frame), drops=audio (given conditions the unconditional
    branch goes without), corr=R (time-shared share of the video noise),
    contrast=D (contrastive guidance), swaps=A/B+C/D (the words it exchanges), refine=0|1, selfcond=0|1
    (whether a self-conditioning model reads its last step's x0), restart=LOW-HIGH and restarts=K (restart
    sampling), clamp=0|1 (clamp the guided video x0 to the pixel range at every step)."""
    try:
        sampler, steps, guidance, *extra = text.split(":")
        point = {"sampler": sampler, "steps": int(steps), "guidance": float(guidance)}
        for item in extra:
            key, value = item.split("=")
            if key == "shift":
                point["shift"] = float(value)
            elif key == "interval":
                low, high = (float(v) for v in value.split("-"))
                if not 0 <= low <= high <= 1:
                    raise ValueError(value)
                point["guidance_interval"] = (low, high)
            elif key == "audio":
                point["audio_guidance"] = float(value)
            elif key == "auto":
                point["autoguidance"] = float(value)
            elif key == "auto_interval":
                low, high = (float(v) for v in value.split("-"))
                point["autoguidance_interval"] = SchedulerConfig(
                    autoguidance_interval=(low, high)
                ).autoguidance_interval
            elif key == "audio_auto":
                point["audio_autoguidance"] = float(value)
            elif key == "skip":
                point["guide_skip_blocks"] = tuple(int(v) for v in value.split("+"))
            elif key == "local":
                point["guide_frame_local_blocks"] = tuple(int(v) for v in value.split("+"))
            elif key == "drops":
                point["guidance_drops"] = SchedulerConfig(guidance_drops=tuple(value.split("+"))).guidance_drops
            elif key == "contrast":
                point["contrast_guidance"] = SchedulerConfig(
                    contrast_guidance_scale=float(value)
                ).contrast_guidance_scale
            elif key == "swaps":
                pairs = tuple(tuple(pair.split("/")) for pair in value.split("+"))
                point["contrast_swaps"] = SchedulerConfig(contrast_swaps=pairs).contrast_swaps
            elif key == "corr":
                point["noise_correlation"] = SchedulerConfig(noise_correlation=float(value)).noise_correlation
            elif key == "refine":
                if value not in ("0", "1"):
                    raise ValueError(value)
                point["refine"] = value == "1"
            elif key == "selfcond":
                if value not in ("0", "1"):
                    raise ValueError(value)
                point["self_condition"] = value == "1"
            elif key == "restart":
                low, high = (float(v) for v in value.split("-"))
                point["restart_interval"] = SchedulerConfig(restart_interval=(low, high)).restart_interval
            elif key == "restarts":
                point["restarts"] = SchedulerConfig(restarts=int(value)).restarts
            elif key == "clamp":
                if value not in ("0", "1"):
                    raise ValueError(value)
                point["clamp_x0"] = value == "1"
            else:
                raise ValueError(key)
        # a point's steps and its restart go together: none unless it names a band (then once by default)
        point.setdefault("restarts", 1 if "restart_interval" in point else 0)
        return point
    except ValueError:
        raise SystemExit(
            "--grid: expected SAMPLER:STEPS:GUIDANCE[:shift=S][:interval=LOW-HIGH][:audio=G][:auto=A]"
            "[:audio_auto=A][:auto_interval=LOW-HIGH][:skip=I+J][:local=I+J][:drops=image+audio][:corr=R][:contrast=D][:swaps=A/B+C/D]"
            "[:refine=0|1][:selfcond=0|1][:restart=LOW-HIGH][:restarts=K][:clamp=0|1] such as "
            "euler:16:1 or "
            f"dpmpp_2m:8:5:shift=3:interval=0.1-0.9, got {text!r}"
        ) from None


def quantize_linear_layers() -> None:
    """Make every pipeline this process loads quantize its transformers' Linear layers to int8 on load
    (dynamic quantization: int8 weights, activations quantized per call). Measured, not offered by the CLI:
    on 120 prompts it cost a third of count accuracy (MODEL_CARD.md, Speed)."""
    import warnings

    import torch

    import happyhorse.generate as generate

    load = generate.load_pipeline

    def load_quantized(*args, **kwargs):
        pipe = load(*args, **kwargs)
        with warnings.catch_warnings():  # torch.ao's quantization API warns that it moves to torchao
            warnings.simplefilter("ignore")
            for name in ("transformer", "guide_transformer"):
                model = getattr(pipe, name)
                if model is not None:
                    setattr(pipe, name, torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, torch.qint8))
        return pipe

    generate.load_pipeline = load_quantized


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the embedded default model)")
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument(
        "--first", type=int, default=0, help="the first test prompt (choose on one range, confirm on another)"
    )
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="only these modes' prompts")
    parser.add_argument("--grid", nargs="+", default=["euler:8:1", "euler:16:1", "euler:16:3", "dpmpp_2m:8:1"])
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: the CPU)")
    parser.add_argument(
        "--dtype", default=None, help="auto (the CLI's), float32, bfloat16 or float16 (default: float32 on the CPU)"
    )
    parser.add_argument(
        "--int8-linear",
        action="store_true",
        help="quantize both transformers' Linear layers to int8 (dynamic, torch.ao); float32 elsewhere",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.int8_linear:
        quantize_linear_layers()
    rows = []
    reference = None
    for text in args.grid:
        point = parse_point(text)
        with tempfile.TemporaryDirectory() as tmp:
            report = evaluate_model(
                args.model,
                tmp,
                "all",
                args.count,
                sampling=point,
                first=args.first,
                modes=tuple(args.modes),
                device=args.device,
                dtype=args.dtype,
            )
        reference = reference or report["reference"]["metrics"]
        # per-clip metrics too, so two points can be compared clip by clip (same prompts and seeds)
        clips = [{"name": Path(c["path"]).name, "metrics": c["metrics"]} for c in report["clips"]]
        row = {"point": text, **point, "metrics": report["metrics"], "clips": clips}
        rows.append(row)
        print(f"{text:16s} " + " ".join(f"{cell(report['metrics'], n):9.3f}" for n in COLUMNS), flush=True)
    print("columns:", ", ".join(COLUMNS), "(av_offset_ms: share within one frame)")
    print(f"{'ground truth':16s} " + " ".join(f"{cell(reference, n):9.3f}" for n in COLUMNS))
    if args.json:
        summary = {
            "count": args.count,
            "first": args.first,
            "modes": args.modes,
            "device": args.device,
            "dtype": args.dtype,
            "rows": rows,
            "reference": reference,
        }
        args.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
