"""Any frames given: last frames, keyframes, a clip to continue and subject references, in the pipeline,
the CLI and training (happyhorse/conditioning.py)."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from happyhorse import Condition
from happyhorse.cli import app
from happyhorse.media import save_image
from happyhorse.world import make_clip, write_sample
from tests.conftest import TINY_RUN, tiny_pipeline

runner = CliRunner()


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(n)]


def test_given_frames_are_the_outputs_and_change_the_rest_of_the_clip():
    pipe = tiny_pipeline()
    first, last, middle, subject = _images(4)
    plain = pipe("a red ball", seed=3)
    assert np.array_equal(plain.frames, pipe("a red ball", seed=3, conditions=[]).frames)
    out = pipe(
        "a red ball",
        image=first,
        seed=3,
        conditions=[Condition(image=last, frame_index=-1), Condition(image=middle, frame_index=4)],
    )
    assert out.mode == "TIK2V" and out.frames.shape == plain.frames.shape
    assert np.array_equal(out.frames[0, 0], first) and np.array_equal(out.frames[0, -1], last)
    assert np.array_equal(out.frames[0, 4], middle)
    assert out.settings["conditions"] == [{"frame_index": 8}, {"frame_index": 4}]
    # the stills are attended to: a reference alone changes the clip, and another reference changes it again
    a = pipe("a red ball", seed=3, conditions=[Condition(image=subject, reference=True)])
    b = pipe("a red ball", seed=3, conditions=[Condition(image=first, reference=True)])
    assert a.mode == "TR2V" and not np.array_equal(a.frames, plain.frames) and not np.array_equal(a.frames, b.frames)


def test_a_clip_is_continued_from_its_whole_latent_frames():
    pipe = tiny_pipeline()
    given = np.stack(_images(6, seed=1))  # 6 frames: latent frames 0 and 1 (frames 0..4) are whole
    out = pipe("a red ball", seed=0, conditions=[Condition(video=given)], seconds=1.5)
    assert out.mode == "TV2V" and out.settings["conditions"] == [{"video_frames": 5}]
    assert np.array_equal(out.frames[0, :5], given[1:])  # the last whole latent frames of what was given
    with pytest.raises(ValueError, match="leave nothing to make"):
        pipe("a red ball", conditions=[Condition(video=np.stack(_images(9)))], seconds=0.75)


def test_bad_conditions_are_refused_by_name():
    pipe = tiny_pipeline()
    image = _images(1)[0]
    with pytest.raises(ValueError, match=r"frame_index 40 is outside the clip's 9 frames \(allowed: -9 .. 8\)"):
        pipe("x", conditions=[Condition(image=image, frame_index=40)])
    with pytest.raises(ValueError, match="the first frame is given twice"):
        pipe("x", image=image, conditions=[Condition(video=np.stack([image] * 5))])
    with pytest.raises(ValueError, match="exactly one of image or video"):
        Condition()
    with pytest.raises(ValueError, match="must be a list of happyhorse.Condition"):
        pipe("x", conditions=[image])


def test_generate_takes_last_image_keyframes_and_references(tmp_path):
    pipe = tiny_pipeline()
    pipe.save_pretrained(tmp_path / "m")
    paths = [save_image(tmp_path / f"{k}.png", im) for k, im in enumerate(_images(3))]
    base = ["generate", "a red ball", "--model", str(tmp_path / "m"), "--output", str(tmp_path / "a.mp4")]
    flags = ["--last-image", str(paths[0]), "--keyframe", f"0.25={paths[1]}", "--reference", str(paths[2])]
    result = runner.invoke(app, base + flags)
    assert result.exit_code == 0, result.output
    for args, needle in [
        (["--keyframe", str(paths[1])], "expected T=PATH"),
        (["--keyframe", f"9={paths[1]}"], "outside the clip"),
        (["--reference", str(tmp_path / "none.png")], "no such file"),
    ]:
        bad = runner.invoke(app, base[:-1] + [str(tmp_path / "b.mp4")] + args)
        text = " ".join(bad.output.replace("│", " ").split())
        assert bad.exit_code == 2 and needle in text, (args, bad.output)
    assert not (tmp_path / "b.mp4").exists()


def test_world_references_show_each_subject_alone_and_leave_the_clip_unchanged(tmp_path):
    clip = make_clip(3, kind="mixed", references=True)
    colours = {o["colour"] for o in clip.meta["facts"]["objects"]} | {f["colour"] for f in clip.meta["facts"]["faces"]}
    assert set(clip.meta["references"]) == colours and clip.meta["subject"] in colours
    assert np.array_equal(clip.frames, make_clip(3, kind="mixed").frames)
    for image in clip.meta["references"].values():
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert np.abs(image.astype(int) - image[0, 0]).sum(-1).astype(bool).mean() > 0.2  # a large subject
    write_sample(clip, tmp_path, "c")
    assert sorted(p.name for p in tmp_path.glob("c_ref_*.png")) == sorted(f"c_ref_{c}.png" for c in colours)


def test_training_gives_stills_in_slots_that_a_sample_may_lack():
    """Stills (last frame, keyframe, reference) share a step's sequence layout; a slot a sample is not
    given is masked, and a masked slot is the same as no slot."""
    from happyhorse.train.config import TrainConfig
    from happyhorse.train.data import StepBatches
    from happyhorse.train.trainer import build_run_components, prepare_step, step_loss, step_stills, world_of

    cfg = TrainConfig(**{**TINY_RUN, "batch_size": 4, "p_keyframes": 1.0, "p_reference": 1.0, "p_prefix": 1.0})
    assert step_stills(cfg, 0, 9)[0] == 8 and step_stills(cfg, 0, 9)[-1] is None
    assert step_stills(replace(cfg, p_keyframes=0.0, p_reference=0.0), 0, 9) == []
    parts = build_run_components(cfg)
    torch.nn.init.normal_(parts.transformer.video_out.weight, std=0.05)
    batch = next(iter(StepBatches(world_of(cfg), 4, 0, 0, 1, kinds={"physics": 1, "talk": 1}, references=True)))
    x = prepare_step(cfg, parts, batch, "cpu")
    nv = 3 * 4 * 4
    assert x.video_x0.shape[1] == nv + 3 * 16 and x.video_clean[:, nv:].all()
    assert x.video_clean[:, : 2 * 16].all()  # p_prefix = 1: the first two latent frames are given
    x.video_keep[:, nv:] = False
    masked = step_loss(parts.transformer, x, cfg)[0]
    rows = torch.cat([torch.arange(nv), torch.arange(nv + 48, x.positions.shape[0])])
    bare = replace(
        x,
        video_x0=x.video_x0[:, :nv],
        video_t=x.video_t[:, :nv],
        video_noise=x.video_noise[:, :nv],
        video_clean=x.video_clean[:, :nv],
        positions=x.positions[rows],
        video_keep=None,
    )
    assert torch.allclose(masked, step_loss(parts.transformer, bare, cfg)[0], atol=1e-5)
    x.video_keep[:, nv:] = True
    assert not torch.allclose(masked, step_loss(parts.transformer, x, cfg)[0], atol=1e-4)


def test_a_frame_index_0_condition_is_the_first_frame_in_place():
    pipe = tiny_pipeline()
    first = _images(1)[0]
    a = pipe("a red ball", first, seed=5)
    b = pipe("a red ball", seed=5, conditions=[Condition(image=first, frame_index=0)])
    c = pipe("a red ball", seed=5, conditions=[Condition(image=first, frame_index=-9)])  # 9 frames: also 0
    assert a.mode == b.mode == c.mode == "TI2V"
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.frames, c.frames)
    with pytest.raises(ValueError, match="first frame is given twice"):
        pipe("x", first, conditions=[Condition(image=first, frame_index=-9)])
