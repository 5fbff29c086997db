"""report.json and report.html: aggregated and per-clip metrics, with plots (matplotlib, embedded)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from ..media import read_video, write_json_atomic
from .metrics import METRICS


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def score_bars(named: dict[str, dict]) -> str:
    """Per-metric score bars, one colour per report (model, reference, ...)."""
    plt = _plt()
    names = [m for m in METRICS if any(m in r for r in named.values())]
    names += [m for m in ("object_persistence_rate",) if any(m in r for r in named.values())]
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(names) + 1))
    height = 0.8 / max(1, len(named))
    for k, (label, metrics) in enumerate(named.items()):
        scores = [metrics.get(m, {}).get("score") or 0 for m in names]
        ax.barh(np.arange(len(names)) + k * height, scores, height, label=label)
    ax.set_yticks(np.arange(len(names)) + height * (len(named) - 1) / 2, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("score (higher is better)")
    ax.legend(fontsize=8)
    return _png(fig)


def sync_histogram(clips: list[dict]) -> str | None:
    offsets = [o for c in clips for o in c.get("extras", {}).get("offsets_ms", [])]
    if not offsets:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(offsets, bins=np.linspace(-500, 500, 41), color="tab:purple")
    frame = clips[0]["extras"].get("frame_ms", 83.3)
    for x in (-frame, frame):
        ax.axvline(x, color="grey", ls="--", lw=1)
    ax.set_xlabel("sound onset - visual impact (ms); dashed: one frame")
    ax.set_ylabel("impacts")
    return _png(fig)


def trajectory_overlays(clips: list[dict], count: int = 4) -> list[tuple[str, str]]:
    """First frame of a few clips with each tracked object's path drawn over it."""
    plt = _plt()
    out = []
    for clip in [c for c in clips if c.get("extras", {}).get("tracks")][:count]:
        frames = read_video(clip["path"]).frames
        fig, ax = plt.subplots(figsize=(3, 3 * frames.shape[1] / frames.shape[2]))
        ax.imshow(frames[0])
        for colour, centres in clip["extras"]["tracks"].items():
            xy = np.array([c if c is not None else (np.nan, np.nan) for c in centres])
            ax.plot(xy[:, 0], xy[:, 1], "-o", ms=2, lw=1, color="white", mec=colour, mfc=colour)
        ax.axis("off")
        out.append((clip["prompt"] or Path(clip["path"]).name, _png(fig)))
    return out


def lip_sync_plots(clips: list[dict], count: int = 4) -> list[tuple[str, str]]:
    """For a few clips that quote a line: the speaker's mouth opening per frame against the voice-band
    envelope, the speech the VAD found shaded, and the lip-sync offset measured."""
    from .speech import ENVELOPE_RATE, speech_envelope

    plt = _plt()
    out = []
    for clip in [c for c in clips if c.get("extras", {}).get("mouth")][:count]:
        video = read_video(clip["path"])
        mouth = np.array([np.nan if v is None else v for v in clip["extras"]["mouth"]], dtype=float)
        fig, ax = plt.subplots(figsize=(6, 2.2))
        for a, b in clip["extras"]["speech_spans"]:
            ax.axvspan(a, b, color="0.9")
        ax.plot(np.arange(len(mouth)) / video.fps, mouth, "-o", ms=3, color="tab:red", label="mouth opening")
        ax.set_ylabel("mouth / face area")
        ax.set_xlabel("seconds")
        if video.audio is not None:
            envelope = speech_envelope(video.audio, video.sample_rate)
            twin = ax.twinx()
            twin.plot(np.arange(len(envelope)) / ENVELOPE_RATE, envelope, color="tab:blue", lw=1, label="envelope")
            twin.set_ylabel("voice envelope")
        offset = clip["metrics"].get("lip_sync_offset_ms", {}).get("value")
        ax.set_title(
            "lip-sync offset: " + ("none found" if offset is None else f"{offset:.0f} ms (absolute)"), fontsize=9
        )
        out.append((clip["prompt"] or Path(clip["path"]).name, _png(fig)))
    return out


def frame_strips(clips: list[dict], count: int = 4, every: int = 4) -> list[tuple[str, str]]:
    plt = _plt()
    out = []
    for clip in clips[:count]:
        frames = read_video(clip["path"]).frames[::every]
        fig, ax = plt.subplots(figsize=(1.2 * len(frames), 1.4))
        ax.imshow(np.concatenate(list(frames), axis=1))
        ax.axis("off")
        out.append((clip["prompt"] or Path(clip["path"]).name, _png(fig)))
    return out


def _table(metrics: dict, reference: dict | None) -> str:
    rows = []
    for name, entry in metrics.items():
        info = METRICS.get(name)
        ref = (reference or {}).get(name, {})
        fmt = lambda v: "" if v is None else f"{v:.4g}"  # noqa: E731
        score = fmt(entry["score"])
        if "score_interval_95" in entry:  # the pooled sync share: its 95 % interval over whole clips
            score += " (95 %: {:.3f} to {:.3f}, {} impacts)".format(*entry["score_interval_95"], entry["impacts"])
        rows.append(
            f"<tr><td>{name}</td><td>{fmt(entry['value'])}</td><td>{html.escape(entry['unit'])}</td>"
            f"<td>{score}</td><td>{fmt(ref.get('value'))}</td><td>{fmt(ref.get('score'))}</td>"
            f"<td>{entry.get('clips', '')}</td><td>{html.escape(info.meaning if info else '')}</td></tr>"
        )
    columns = ("metric", "value", "unit", "score", "reference value", "reference score", "clips", "meaning")
    head = "<tr>" + "".join(f"<th>{c}</th>" for c in columns) + "</tr>"
    return f"<table>{head}{''.join(rows)}</table>"


STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse;font-size:13px}"
    "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}img{max-width:100%}"
)


def _figures(title: str, figures: list[tuple[str, str]]) -> str:
    """A section of captioned images; empty without images."""
    if not figures:
        return ""
    items = "".join(
        f"<figure><img src='{src}'><figcaption>{html.escape(t)}</figcaption></figure>" for t, src in figures
    )
    return f"<h2>{html.escape(title)}</h2>{items}"


def write_report(report: dict, out: str | Path) -> tuple[Path, Path]:
    """Write out/report.json (the contract of DESIGN.md section 7) and out/report.html."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "report.json"
    public = {**report, "clips": [{k: v for k, v in c.items() if k != "extras"} for c in report["clips"]]}
    write_json_atomic(json_path, json.dumps(public, indent=1))
    reference = (report.get("reference") or {}).get("metrics")
    parts = [f"<h1>HappyHorse evaluation</h1><p>model: {html.escape(str(report.get('model')))}</p>"]
    parts.append(
        "<pre>"
        + html.escape(json.dumps({"settings": report["settings"], "timings": report["timings"]}, indent=1))
        + "</pre>"
    )
    parts.append("<h2>Metrics</h2>" + _table(report["metrics"], reference))
    bars = {"model" if reference else "clips": report["metrics"]}
    if reference:
        bars["ground truth"] = reference
    parts.append(f"<img src='{score_bars(bars)}'>")
    by_mode = report.get("by_mode", {})
    for mode, metrics in by_mode.items() if len(by_mode) > 1 else ():
        parts.append(f"<h3>{html.escape(mode)}</h3>" + _table(metrics, None))
    by_language = report.get("by_language", {})
    reference_by_language = (report.get("reference") or {}).get("by_language", {})
    for language, metrics in by_language.items():
        speech = {k: v for k, v in metrics.items() if METRICS.get(k) and METRICS[k].family == "speech"}
        ref = {k: v for k, v in reference_by_language.get(language, {}).items() if k in speech}
        parts.append(f"<h3>Speech in {html.escape(language)}</h3>" + _table(speech, ref or None))
    parts.append(_figures("Lip sync: mouth opening against the voice", lip_sync_plots(report["clips"])))
    hist = sync_histogram(report["clips"])
    if hist:
        parts.append(f"<h2>Audio-video sync</h2><img src='{hist}'>")
    parts.append(_figures("Tracked trajectories", trajectory_overlays(report["clips"])))
    parts.append(_figures("Frames", frame_strips(report["clips"])))
    html_path = out / "report.html"
    write_json_atomic(
        html_path,
        f"<!doctype html><meta charset='utf-8'><title>HappyHorse eval</title><style>{STYLE}</style>{''.join(parts)}",
    )
    return json_path, html_path


def _read_report(path: str | Path) -> dict:
    """A report.json's content, or a ValueError naming the file when it is not one."""
    try:
        report = json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a report.json (not JSON: {exc})") from None
    metrics = report.get("metrics") if isinstance(report, dict) else None
    if not isinstance(metrics, dict) or not all(isinstance(m, dict) for m in metrics.values()):
        raise ValueError(f"{path}: not a report.json (no 'metrics' object of metric objects)")
    return report


def compare_reports(a: str | Path, b: str | Path, out: str | Path) -> tuple[Path, Path]:
    """Two report.json side by side: compare.json (per metric a, b, b - a) and compare.html."""
    ra, rb = _read_report(a), _read_report(b)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name in dict.fromkeys([*ra["metrics"], *rb["metrics"]]):
        va, vb = ra["metrics"].get(name, {}), rb["metrics"].get(name, {})
        sa, sb = va.get("score"), vb.get("score")
        rows[name] = {"a": va, "b": vb, "score_delta": (sb - sa) if sa is not None and sb is not None else None}
    comparison = {"a": str(a), "b": str(b), "metrics": rows}
    json_path = out / "compare.json"
    write_json_atomic(json_path, json.dumps(comparison, indent=1))
    cells = []
    for n, r in rows.items():
        delta = "" if r["score_delta"] is None else f"{r['score_delta']:+.4f}"
        values = [
            r["a"].get("value", ""),
            r["b"].get("value", ""),
            r["a"].get("score", ""),
            r["b"].get("score", ""),
            delta,
        ]
        cells.append(f"<tr><td>{n}</td>" + "".join(f"<td>{v}</td>" for v in values) + "</tr>")
    body = "".join(cells)
    columns = ("metric", "A value", "B value", "A score", "B score", "B - A score")
    table = "<table><tr>" + "".join(f"<th>{c}</th>" for c in columns) + f"</tr>{body}</table>"
    img = score_bars({f"A: {Path(a).parent.name}": ra["metrics"], f"B: {Path(b).parent.name}": rb["metrics"]})
    html_path = out / "compare.html"
    write_json_atomic(
        html_path,
        f"<!doctype html><meta charset='utf-8'><style>{STYLE}</style><h1>Comparison</h1>"
        f"<p>A: {html.escape(str(a))}<br>B: {html.escape(str(b))}</p>{table}<img src='{img}'>",
    )
    return json_path, html_path
