"""Clips made in windows: long clips, continued clips and multi-shot clips (happyhorse/long.py)."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from happyhorse.cli import app
from happyhorse.long import Sampling, Stitcher, make_long, overlap_frames, window_frames
from happyhorse.media import read_video, save_audio, save_video
from tests.conftest import tiny_pipeline

runner = CliRunner()


def test_a_long_clip_is_windows_that_continue_each_other():
    pipe = tiny_pipeline()  # windows of 9 frames at 12 fps; a later one is given 5 of them
    window, ov = window_frames(pipe, 12.0), overlap_frames(pipe, 12.0)
    out = make_long(pipe, ["a red ball"], 3.0, Sampling(seed=2, num_inference_steps=2))
    assert out.frames.shape[:2] == (1, 36) and out.audio.shape[-1] == 3 * 16000
    step = window - ov
    assert out.settings["seams"] == list(range(window, 36, step)) and out.settings["windows"] == 1 + -(
        -(36 - window) // step
    )
    # the same request gives the same clip; another seed another
    again = make_long(pipe, ["a red ball"], 3.0, Sampling(seed=2, num_inference_steps=2))
    assert np.array_equal(out.frames, again.frames) and np.array_equal(out.audio, again.audio)


def test_the_sound_is_cross_faded_where_windows_overlap():
    pipe = tiny_pipeline()
    stitch = Stitcher(pipe, 12.0)
    window, ov = window_frames(pipe, 12.0), overlap_frames(pipe, 12.0)
    n = stitch.samples(window)
    stitch.start(np.zeros((window, 32, 32, 3), np.uint8), np.ones((1, n), np.float32))

    class Window:
        frames = np.full((1, window, 32, 32, 3), 7, np.uint8)
        audio = np.full((1, 1, n), -1.0, np.float32)

    stitch.join(Window, ov, cut=False)
    assert len(stitch.frames) == 2 * window - ov and (stitch.frames[window:] == 7).all()
    jumps = np.abs(np.diff(stitch.audio[0]))
    assert jumps.max() < 2.5 / (stitch.samples(ov) * 0.5)  # a ramp from 1 to -1, no step
    assert stitch.audio[0, 0] == 1 and stitch.audio[0, -1] == -1 and stitch.seams == [window]


def test_extend_writes_the_clip_followed_by_more_and_refuses_what_it_cannot_continue(tmp_path):
    pipe = tiny_pipeline()
    pipe.save_pretrained(tmp_path / "m")
    rng = np.random.default_rng(0)
    given = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    save_video(tmp_path / "given.mp4", given, 12.0, rng.uniform(-0.5, 0.5, (1, 16000)).astype(np.float32), 16000)
    base = ["generate", "more", "--model", str(tmp_path / "m"), "--steps", "2"]
    result = runner.invoke(
        app, [*base, "--extend", str(tmp_path / "given.mp4"), "--seconds", "1.5", "--output", str(tmp_path / "e.mp4")]
    )
    assert result.exit_code == 0, result.output
    sidecar = json.loads((tmp_path / "e.json").read_text())
    assert sidecar["mode"] == "TV2V" and sidecar["settings"]["extended_frames"] == 12
    clip = read_video(tmp_path / "e.mp4")
    assert len(clip.frames) == 12 + 18 and abs(clip.audio.shape[1] / clip.sample_rate - 2.5) < 0.05
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00" * 2000)
    save_audio(tmp_path / "sound.wav", np.zeros((1, 8000), np.float32), 16000)
    for path, needle in [("corrupt.mp4", "--extend"), ("sound.wav", "no video stream"), ("none.mp4", "no such file")]:
        bad = runner.invoke(app, [*base, "--extend", str(tmp_path / path), "--output", str(tmp_path / "x.mp4")])
        text = " ".join(bad.output.replace("│", " ").split())
        assert bad.exit_code == 2 and needle in text, (path, bad.output)
    assert not (tmp_path / "x.mp4").exists()


def test_shots_are_cut_where_their_shares_end(tmp_path):
    pipe = tiny_pipeline()
    pipe.save_pretrained(tmp_path / "m")
    base = ["generate", "--model", str(tmp_path / "m"), "--steps", "2", "--output", str(tmp_path / "s.mp4")]
    result = runner.invoke(
        app, [*base, "--shot", "a red ball", "--shot", "a blue box", "--shot", "a red ball", "--seconds", "3"]
    )
    assert result.exit_code == 0, result.output
    settings = json.loads((tmp_path / "s.json").read_text())["settings"]
    assert settings["cuts"] == [12, 24] and settings["num_frames"] == 36
    assert settings["shots"] == ["a red ball", "a blue box", "a red ball"]
    bad = runner.invoke(app, [*base, "--shot", "a", "--shot", "b", "--seconds", "1"])
    assert bad.exit_code == 2 and "2 shots need at least" in " ".join(bad.output.replace("│", " ").split())
    with pytest.raises(ValueError, match="at most 8"):
        make_long(pipe, ["x"] * 9, 20.0, Sampling())


def test_a_soundtrack_through_windows_keeps_every_sample_in_place_and_may_run_out():
    """Sound positions are absolute: a long clip made from a given soundtrack plays it back exactly (no
    sample lost or repeated at a seam), and where the soundtrack ends the windows make their own."""
    pipe = tiny_pipeline()
    rng = np.random.default_rng(0)
    sound = rng.uniform(-0.5, 0.5, (1, 48000)).astype(np.float32)
    out = make_long(pipe, ["a red ball"], 3.0, Sampling(seed=1, num_inference_steps=2), audio=(sound, 16000))
    assert out.audio.shape[-1] == 48000 and np.allclose(out.audio[0], sound, atol=1e-6)  # cross-fades round
    short = make_long(
        pipe, ["a red ball"], 3.0, Sampling(seed=1, num_inference_steps=2), audio=(sound[:, :16000], 16000)
    )
    assert short.audio.shape[-1] == 48000 and np.allclose(short.audio[0, :, :16000], sound[:, :16000], atol=1e-6)


def test_one_shot_is_the_prompt_and_extend_refuses_what_it_cannot_continue(tmp_path):
    from happyhorse.generate import GenerateRequest, call_arguments, check_request

    pipe = tiny_pipeline()
    assert call_arguments(pipe, GenerateRequest("", shots=("a red ball",)))["prompt"] == "a red ball"
    assert call_arguments(pipe, GenerateRequest("a room:", shots=("a red ball",)))["prompt"] == "a room: a red ball"
    rng = np.random.default_rng(0)
    save_video(tmp_path / "short.mp4", rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8), 12.0)
    save_video(tmp_path / "ok.mp4", rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8), 12.0)
    save_audio(tmp_path / "s.wav", np.zeros((1, 16000), np.float32), 16000)
    for request, needle in [
        (GenerateRequest("x", extend=tmp_path / "short.mp4"), "needs at least 5"),
        (GenerateRequest("x", extend=tmp_path / "ok.mp4", audio=tmp_path / "s.wav"), "audio: a continued clip"),
        (GenerateRequest("x", seconds=3.0, references=(tmp_path / "r.png",)), "references: a clip made in windows"),
        (GenerateRequest("x", keyframes=((float("inf"), tmp_path / "k.png"),)), "a number of seconds >= 0"),
    ]:
        with pytest.raises(ValueError, match=needle):
            check_request(pipe, request)
