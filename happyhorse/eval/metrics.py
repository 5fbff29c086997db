"""All metrics of one clip, each as {value, unit, score} with the score in [0, 1] (higher is better).

The metric names are the contract of DESIGN.md section 7. `METRICS` documents each: what it
measures, its unit and how its score is derived; the README's evaluation section is generated from
the same table's wording.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import control, speech, sync, temporal, world
from .tracking import track_colours


@dataclass(frozen=True)
class MetricInfo:
    family: str
    unit: str
    meaning: str
    score: str  # how the score in [0, 1] follows from the value


METRICS: dict[str, MetricInfo] = {
    "temporal_flickering": MetricInfo(
        "temporal",
        "fraction",
        "VBench: 1 - MAE/255 of consecutive frames on static pixels (flow < 0.2 px)",
        "the value",
    ),
    "dynamic_degree": MetricInfo(
        "temporal",
        "fraction",
        "VBench: share of clips whose top-5 % Farneback flow passes 6 min(H,W)/256 px in round(4T/16) frame pairs",
        "the value",
    ),
    "mean_top5_flow_px": MetricInfo(
        "temporal",
        "px/frame",
        "mean of the top-5 % flow magnitudes (the quantity dynamic degree thresholds)",
        "min(1, value / 2 px)",
    ),
    "motion_smoothness": MetricInfo(
        "temporal",
        "fraction",
        "VBench with classical flow: 1 - MAE/255 of odd frames rebuilt by flow-warped interpolation, "
        "over changing pixels",
        "the value",
    ),
    "subject_consistency_proxy": MetricInfo(
        "temporal",
        "cosine",
        "proxy of VBench (DINO): hue-saturation histogram and layout of saturated pixels, "
        "similarity to first and previous frame",
        "the value",
    ),
    "background_consistency_proxy": MetricInfo(
        "temporal",
        "cosine",
        "proxy of VBench (CLIP): 8x8 blurred frame, similarity to first and previous frame",
        "the value",
    ),
    "imaging_sharpness_proxy": MetricInfo(
        "temporal", "px^2", "variance of the Laplacian (blur lowers it)", "value / (value + 100)"
    ),
    "imaging_colourfulness_proxy": MetricInfo(
        "temporal", "M (Hasler-Suesstrunk)", "colourfulness of the frames", "min(1, value / 60)"
    ),
    "imaging_exposure_proxy": MetricInfo(
        "temporal", "fraction", "share of pixels neither crushed (< 5) nor blown (> 250)", "the value"
    ),
    "physics_residual_px": MetricInfo(
        "world",
        "px",
        "RMS distance of tracked centres from constant-acceleration fits between impacts",
        "exp(-value / 1 px)",
    ),
    "gravity_consistency": MetricInfo(
        "world", "fraction", "1 - |fitted fall acceleration / world gravity - 1| over airborne runs", "the value"
    ),
    "object_permanence": MetricInfo(
        "world",
        "fraction",
        "share of frames in which each prompted object is exactly one blob (none vanishes, splits or appears)",
        "the value",
    ),
    "size_constancy": MetricInfo("world", "fraction", "1 - CV(blob area) / 0.5 per object", "the value"),
    "colour_accuracy": MetricInfo("world", "fraction", "prompted colours present in >= half the frames", "the value"),
    "shape_accuracy": MetricInfo(
        "world",
        "fraction",
        "prompted objects whose tracked shape (corner fill, top-half share; mode over frames) is the prompted one",
        "the value",
    ),
    "size_accuracy": MetricInfo(
        "world", "fraction", "prompted objects of the prompted size (small / large)", "the value"
    ),
    "count_accuracy": MetricInfo(
        "world", "fraction", "clips with exactly the prompted number of coloured objects", "the value"
    ),
    "direction_accuracy": MetricInfo(
        "world", "fraction", "thrown / sliding objects that first move in the prompted direction", "the value"
    ),
    "motion_accuracy": MetricInfo(
        "world", "fraction", "objects whose first motion (drop, throw, slide) is the prompted one", "the value"
    ),
    "bounce_count_accuracy": MetricInfo(
        "world",
        "fraction",
        "dropped / thrown objects (not struck by others) with the prompted number of floor bounces",
        "the value",
    ),
    "av_align": MetricInfo(
        "sync",
        "fraction",
        "AV-Align (Yariv et al. 2024): audio onsets and optical-flow peaks matched within 1 frame",
        "the value",
    ),
    "av_offset_ms": MetricInfo(
        "sync",
        "ms",
        "median |sound onset - visual impact| over floor and wall impacts (no sound within 500 ms counts 500)",
        "share of impacts within one frame",
    ),
    "lip_sync_offset_ms": MetricInfo(
        "speech",
        "ms",
        "|lag| in +-500 ms that best correlates the speaker's mouth opening (dark area inside the prompted "
        "face) with the voice-band envelope, near the speech VAD finds",
        "1 when within one frame, else 0 (the mean: share of clips in sync)",
    ),
    "lip_sync_confidence": MetricInfo(
        "speech", "correlation", "Pearson correlation of mouth opening and envelope at that lag", "max(0, value)"
    ),
    "mouth_movement": MetricInfo(
        "speech",
        "face share",
        "standard deviation of the mouth opening (share of the face's area) while speech plays",
        "min(1, value / 0.01): ground truth moves by 0.013-0.022",
    ),
    "speech_presence": MetricInfo(
        "speech",
        "fraction",
        "share of the clip Silero VAD calls speech",
        "min(1, value / (0.8 x the length eSpeak takes to say the prompted line / clip length))",
    ),
    "speech_similarity": MetricInfo(
        "speech",
        "fraction",
        "MFCC DTW distance to eSpeak's prompted line, scaled between the line in another voice (1) and the "
        "language's other lines (0)",
        "the value",
    ),
    "speech_wer": MetricInfo(
        "speech",
        "fraction",
        "English: word error rate of PocketSphinx decoding constrained to the prompted and the other English lines",
        "1 - value",
    ),
    "first_frame_psnr": MetricInfo(
        "fidelity", "dB", "TI2V: PSNR of frame 0 against the given image", "min(1, value / 40 dB)"
    ),
    "first_frame_ssim": MetricInfo(
        "fidelity", "fraction", "TI2V: SSIM of frame 0 against the given image", "the value"
    ),
    "last_frame_psnr": MetricInfo(
        "control", "dB", "last frame against the image given for it (through the MP4)", "min(1, value / 40 dB)"
    ),
    "keyframe_psnr": MetricInfo(
        "control", "dB", "frames at given keyframes against their images, mean", "min(1, value / 40 dB)"
    ),
    "interpolation_direction": MetricInfo(
        "control",
        "fraction",
        "first + last frame given: objects whose progress from the first frame's place towards the last's "
        "is larger over the clip's second half than its first",
        "the value",
    ),
    "seam_flicker": MetricInfo(
        "control",
        "ratio",
        "long clips: mean frame change across window seams over the mean change within windows",
        "min(1, 1.2 / value): within 20 % of the windows' own is 1",
    ),
    "seam_audio_jump": MetricInfo(
        "control",
        "ratio",
        "long clips: largest sample step within 5 ms of a seam over the 99.9th percentile of the clip's other steps",
        "min(1, 1 / value): no louder than the clip's own transients is 1",
    ),
    "cut_accuracy": MetricInfo(
        "control",
        "fraction",
        "multi-shot: clips whose detected hard cuts (a frame change 3x those around it and >= 2/255) are "
        "the requested ones, each within one frame",
        "the value",
    ),
    "subject_across_cuts": MetricInfo(
        "control", "fraction", "multi-shot: the prompted subject's colour seen in every shot", "the value"
    ),
    "reference_colour_accuracy": MetricInfo(
        "control", "fraction", "reference given: its subject's colour seen in at least half the frames", "the value"
    ),
    "reference_shape_accuracy": MetricInfo(
        "control", "fraction", "reference given: the tracked shape of that colour is the reference's", "the value"
    ),
    "seconds_per_output_second": MetricInfo(
        "speed",
        "s/s",
        "wall time to generate the clip over its length: long clips against one window's",
        "min(1, 1 / value): real time or faster is 1",
    ),
    "seconds_per_clip": MetricInfo(
        "speed",
        "s",
        "wall time to generate the clip (from its sidecar)",
        "min(1, clip length / value): real time or faster is 1",
    ),
}


def _entry(name: str, value, score) -> dict:
    info = METRICS[name]
    if value is None:
        return {"value": None, "unit": info.unit, "score": None}
    return {"value": float(value), "unit": info.unit, "score": float(min(1.0, max(0.0, score)))}


def temporal_metrics(frames: np.ndarray) -> dict:
    flow = temporal.optical_flow(frames)
    dynamic, top5 = temporal.dynamic_degree(frames, flow)
    sharp, colourful = temporal.sharpness(frames), temporal.colourfulness(frames)
    out = {
        "temporal_flickering": _entry("temporal_flickering", v := temporal.temporal_flickering(frames, flow), v),
        "dynamic_degree": _entry("dynamic_degree", float(dynamic), float(dynamic)),
        "mean_top5_flow_px": _entry("mean_top5_flow_px", top5, top5 / 2.0),
        "motion_smoothness": _entry("motion_smoothness", v := temporal.motion_smoothness(frames), v),
        "subject_consistency_proxy": _entry(
            "subject_consistency_proxy", v := temporal.subject_consistency_proxy(frames), v
        ),
        "background_consistency_proxy": _entry(
            "background_consistency_proxy", v := temporal.background_consistency_proxy(frames), v
        ),
        "imaging_sharpness_proxy": _entry("imaging_sharpness_proxy", sharp, sharp / (sharp + 100)),
        "imaging_colourfulness_proxy": _entry("imaging_colourfulness_proxy", colourful, colourful / 60),
        "imaging_exposure_proxy": _entry("imaging_exposure_proxy", v := temporal.exposure(frames), v),
    }
    return out, flow


def world_and_sync_metrics(frames, fps, audio, sample_rate, facts, flow) -> dict:
    h, w = frames.shape[1:3]
    tracks = track_colours(frames)
    raw = world.world_metrics(tracks, facts, fps, h, w)
    out = {}
    for name in (
        "colour_accuracy",
        "shape_accuracy",
        "size_accuracy",
        "count_accuracy",
        "direction_accuracy",
        "motion_accuracy",
        "bounce_count_accuracy",
        "gravity_consistency",
        "object_permanence",
        "size_constancy",
    ):
        out[name] = _entry(name, raw[name], raw[name])
    res = raw["physics_residual_px"]
    out["physics_residual_px"] = _entry("physics_residual_px", res, math.exp(-res) if res is not None else None)
    onsets = sync.audio_onsets(audio, sample_rate) if audio is not None else np.zeros(0)
    peaks = sync.video_peaks(temporal.flow_magnitude(flow).mean(axis=(1, 2))) if len(flow) else np.zeros(0, int)
    out["av_align"] = _entry("av_align", v := sync.av_align(onsets, peaks, fps), v)
    offsets = sync.impact_offsets_ms(raw["_impact_times"], onsets)
    if offsets:
        within = float(np.mean(np.abs(offsets) <= 1000 / fps))
        out["av_offset_ms"] = {
            **_entry("av_offset_ms", float(np.median(np.abs(offsets))), within),
            "impacts": len(offsets),  # so a clip's weight in the pooled share survives into report.json
        }
    else:
        out["av_offset_ms"] = {**_entry("av_offset_ms", None, None), "impacts": 0}
    present = {c: t.centres for c, t in tracks.items() if t.visible.mean() >= 0.5}
    return out, {"offsets_ms": offsets, "frame_ms": 1000 / fps, "tracks": present}


def speech_metrics(frames, fps, audio, sample_rate, said: dict) -> tuple[dict, dict]:
    """Lip sync, movement, presence, similarity and (English) WER of the line `said` (facts["speech"])."""
    from ..world.speech import speak

    line, language = said["line"], said["language"]
    spans = speech.speech_spans(audio, sample_rate) if audio is not None else []
    seconds = len(frames) / fps
    presence = min(1.0, sum(b - a for a, b in spans) / seconds)
    expected = speak(line, language, speech.REFERENCE_VOICE, sample_rate or 16000).seconds / seconds
    mouth = speech.mouth_opening(frames, said["speaker"]["colour"])
    offset, confidence = (None, None)
    if audio is not None and spans:
        offset, confidence = speech.lip_sync(mouth, fps, speech.speech_envelope(audio, sample_rate), spans)
    times = np.arange(len(frames)) / fps
    during = np.zeros(len(frames), bool)
    for a, b in spans:
        during |= (times >= a) & (times <= b)
    moving = mouth[during & ~np.isnan(mouth)]
    movement = float(moving.std()) if moving.size >= 2 else None
    out = {
        "lip_sync_offset_ms": _entry(
            "lip_sync_offset_ms",
            None if offset is None else abs(offset),
            offset is not None and abs(offset) <= 1000 / fps,
        ),
        "lip_sync_confidence": _entry("lip_sync_confidence", confidence, max(0.0, confidence or 0.0)),
        "mouth_movement": _entry("mouth_movement", movement, (movement or 0.0) / 0.01),
        "speech_presence": _entry("speech_presence", presence, presence / max(1e-6, 0.8 * expected)),
        "speech_similarity": _entry(
            "speech_similarity",
            v := speech.speech_similarity(audio, sample_rate, line, language, spans) if audio is not None else 0.0,
            v,
        ),
    }
    heard = None
    if language == "en" and audio is not None:
        wer, heard = speech.speech_wer(audio, sample_rate, line)
        out["speech_wer"] = _entry("speech_wer", wer, 1 - wer)
    extras = {"mouth": [None if np.isnan(v) else float(v) for v in mouth], "speech_spans": spans, "heard": heard}
    return out, extras


def control_metrics(frames, fps, audio, sample_rate, given: dict, facts: dict | None) -> dict:
    """Metrics of what was given besides the prompt (`given`: last_image, keyframes [(frame, image)],
    references [images], seams and cuts [frame indices]), each where it applies."""
    out = {}
    if given.get("last_image") is not None and given["last_image"].shape == frames[-1].shape:
        psnr = control.frame_psnr(frames[-1], given["last_image"])
        out["last_frame_psnr"] = _entry("last_frame_psnr", psnr, psnr / 40)
        if given.get("first_image") is not None and given["first_image"].shape == frames[0].shape:
            v = control.interpolation_direction(frames, given["first_image"], given["last_image"])
            out["interpolation_direction"] = _entry("interpolation_direction", v, v)
    keyed = [(f, im) for f, im in given.get("keyframes", []) if 0 <= f < len(frames) and im.shape == frames[f].shape]
    if keyed:
        psnr = float(np.mean([control.frame_psnr(frames[f], im) for f, im in keyed]))
        out["keyframe_psnr"] = _entry("keyframe_psnr", psnr, psnr / 40)
    if given.get("seams"):
        v = control.seam_flicker(frames, given["seams"])
        out["seam_flicker"] = _entry("seam_flicker", v, 1.2 / v if v else None)
        if audio is not None:
            v = control.seam_audio_jump(audio, sample_rate, [f / fps for f in given["seams"]])
            out["seam_audio_jump"] = _entry("seam_audio_jump", v, 1 / v if v else None)
    if given.get("cuts") is not None and given.get("shots", 1) > 1:
        v = control.cut_accuracy(frames, given["cuts"])
        out["cut_accuracy"] = _entry("cut_accuracy", v, v)
        if facts and facts.get("objects"):
            v = control.colour_in_every_shot(frames, given["cuts"], facts["objects"][0]["colour"])
            out["subject_across_cuts"] = _entry("subject_across_cuts", v, v)
    for reference in given.get("references", [])[:1]:
        colour, shape = control.reference_match(frames, reference)
        out["reference_colour_accuracy"] = _entry("reference_colour_accuracy", colour, colour)
        out["reference_shape_accuracy"] = _entry("reference_shape_accuracy", shape, shape)
    return out


def fidelity_metrics(first_frame: np.ndarray, image: np.ndarray) -> dict:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    if np.array_equal(image, first_frame):
        psnr = 100.0  # identical frames: infinite PSNR, reported as 100 dB
    else:
        psnr = min(100.0, float(peak_signal_noise_ratio(image, first_frame, data_range=255)))
    ssim = float(structural_similarity(image, first_frame, channel_axis=-1, data_range=255))
    return {
        "first_frame_psnr": _entry("first_frame_psnr", psnr, psnr / 40),
        "first_frame_ssim": _entry("first_frame_ssim", ssim, ssim),
    }


def evaluate_clip(
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int | None = None,
    facts: dict | None = None,
    image: np.ndarray | None = None,
    seconds_to_generate: float | None = None,
    suite: str = "all",
    given: dict | None = None,
) -> tuple[dict, dict]:
    """(metrics, extras) of one clip; world metrics only when `facts` names objects, speech metrics only
    when it quotes a line (`facts["speech"]`)."""
    metrics, extras = {}, {}
    temporal_out, flow = temporal_metrics(frames)
    if suite in ("temporal", "all"):
        metrics.update(temporal_out)
    # physics is measured in one fixed framing: a multi-shot world clip (facts["cuts"]) has several
    if suite in ("world", "all") and facts and facts.get("objects") and not facts.get("cuts"):
        world_out, extras = world_and_sync_metrics(frames, fps, audio, sample_rate, facts, flow)
        metrics.update(world_out)
    if suite in ("speech", "all") and facts and facts.get("speech"):
        speech_out, speech_extras = speech_metrics(frames, fps, audio, sample_rate, facts["speech"])
        metrics.update(speech_out)
        extras.update(speech_extras, language=facts["speech"]["language"])
    if image is not None and image.shape == frames[0].shape:
        metrics.update(fidelity_metrics(frames[0], image))
    if suite in ("control", "all") and given:
        metrics.update(control_metrics(frames, fps, audio, sample_rate, {**given, "first_image": image}, facts))
    if seconds_to_generate:
        clip_seconds = len(frames) / fps
        metrics["seconds_per_clip"] = _entry(
            "seconds_per_clip", seconds_to_generate, clip_seconds / seconds_to_generate
        )
        per = seconds_to_generate / clip_seconds
        metrics["seconds_per_output_second"] = _entry("seconds_per_output_second", per, 1 / per)
    return metrics, extras
