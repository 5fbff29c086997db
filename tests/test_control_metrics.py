"""The control metrics, validated on world clips as the others are: ground truth near its best, a
corrupted copy clearly worse (happyhorse/eval/control.py)."""

import numpy as np

from happyhorse.eval.control import (
    colour_in_every_shot,
    cut_accuracy,
    detect_cuts,
    frame_psnr,
    interpolation_direction,
    reference_match,
    seam_audio_jump,
    seam_flicker,
)
from happyhorse.world import make_clip
from happyhorse.world.render import render_reference
from happyhorse.world.scene import COLOURS, ObjectSpec


def test_interpolation_direction_follows_the_given_frames_and_not_the_reverse():
    forward, backward = [], []
    for seed in range(24):
        clip = make_clip(seed, "test")
        v = interpolation_direction(clip.frames, clip.frames[0], clip.frames[-1])
        if v is not None:
            forward.append(v)
            backward.append(interpolation_direction(clip.frames[::-1], clip.frames[0], clip.frames[-1]))
    assert len(forward) >= 20 and np.mean(forward) >= 0.85 and np.mean(backward) <= 0.15
    image = make_clip(0).frames[5]
    assert frame_psnr(image, image) == 100.0 and frame_psnr(image, 255 - image) < 10


def test_seams_of_ground_truth_are_ordinary_and_a_jump_or_click_is_not():
    ordinary, jumped, quiet, clicked = [], [], [], []
    for seed in range(16):
        clip = make_clip(seed, "test")
        ordinary.append(seam_flicker(clip.frames, [8, 16]))
        brighter = clip.frames.astype(int)
        brighter[8:] += 25
        jumped.append(seam_flicker(np.clip(brighter, 0, 255).astype(np.uint8), [8, 16]))
        seams = [8 / clip.fps, 16 / clip.fps]
        quiet.append(seam_audio_jump(clip.audio, clip.sample_rate, seams))
        click = clip.audio.copy()
        click[:, int(seams[0] * clip.sample_rate)] += 1.5
        clicked.append(seam_audio_jump(click, clip.sample_rate, seams))
    assert np.median(ordinary) < 1.2 and min(jumped) > 2 * max(np.median(ordinary), 1)
    assert np.median(quiet) < 1 and min(clicked) > 1.5


def test_cuts_are_found_where_two_clips_are_joined_and_nowhere_in_one():
    joined = 0
    for seed in range(16):
        a, b = make_clip(seed, "test"), make_clip(seed + 100, "test")
        assert detect_cuts(a.frames) == [], seed
        both = np.concatenate([a.frames[:12], b.frames[12:]])
        joined += cut_accuracy(both, [12])
        assert cut_accuracy(a.frames, [12]) == 0.0
    assert joined >= 15
    a = make_clip(1, "test")
    colour = a.meta["facts"]["objects"][0]["colour"]
    assert colour_in_every_shot(a.frames, [12], colour) == 1.0
    missing = next(c for c in COLOURS if c not in {o["colour"] for o in a.meta["facts"]["objects"]})
    assert colour_in_every_shot(a.frames, [12], missing) == 0.0


def test_a_reference_of_the_subject_matches_its_clip_and_another_colour_does_not():
    hits, misses = [], []
    for seed in range(12):
        clip = make_clip(seed, "test", references=True)
        hits.append(reference_match(clip.frames, clip.meta["references"][clip.meta["subject"]]))
        absent = next(c for c in COLOURS if c not in clip.meta["references"])
        other = render_reference(ObjectSpec("ball", absent, "large", "rubber", "rest", (0, 0), (0, 0)), 64, 64)
        misses.append(reference_match(clip.frames, other)[0])
    assert all(colour == 1.0 for colour, _ in hits) and np.mean([s for _, s in hits if s is not None]) >= 0.8
    assert not any(misses)


def test_eval_generates_and_scores_the_control_modes(tmp_path):
    from happyhorse.eval import evaluate_model
    from happyhorse.eval.suite import CONTROL_MODES
    from tests.conftest import tiny_pipeline

    tiny_pipeline().save_pretrained(tmp_path / "m")
    report = evaluate_model(tmp_path / "m", tmp_path / "e", "control", count=4, modes=CONTROL_MODES)
    by_mode = report["by_mode"]
    assert set(by_mode) == set(CONTROL_MODES)
    assert "last_frame_psnr" in by_mode["FLF2V"] and "reference_colour_accuracy" in by_mode["R2V"]
    assert {"seam_flicker", "seam_audio_jump"} <= set(by_mode["LONG"]) and "cut_accuracy" in by_mode["SHOTS"]
    long_clip = next((tmp_path / "e" / "clips").glob("*_LONG.mp4"))
    from happyhorse.media import read_video

    assert len(read_video(long_clip).frames) == 15 * 12


def test_multi_shot_world_clips_cut_where_their_ground_truth_says(tmp_path):
    from happyhorse.media import read_video, save_video

    found = 0
    for seed in range(12):
        clip = make_clip(seed, "test", kind="shots")
        again = make_clip(seed, "test", kind="shots")
        assert np.array_equal(clip.frames, again.frames) and np.array_equal(clip.audio, again.audio)
        shots, cuts = clip.meta["shots"], clip.meta["cuts"]
        assert cuts == [s["start"] for s in shots[1:]] and clip.caption.count("Cut to") == len(cuts)
        assert clip.frames.shape == (24, 64, 64, 3) and clip.audio.shape == (1, 32000)
        assert [s["framing"] for s in shots] == ["wide", "close", "wide"][: len(shots)]
        for s in shots[1:]:  # a close-up frames the subject: its pixel lies inside the frame
            if s["framing"] == "close":
                x, y = clip.meta["frames"][s["start"]]["objects"][0]["pixel"]
                assert 0 <= x < 64 and 0 <= y < 64
        path = save_video(tmp_path / f"{seed}.mp4", clip.frames, clip.fps, clip.audio, clip.sample_rate)
        found += detect_cuts(read_video(path).frames) == cuts
        path.unlink()
    assert found >= 9  # through H.264; motion in a close-up can look like a cut
