"""HappyHorsePipeline: modes, conditioning, determinism, save/load, input checks."""

import json

import numpy as np
import pytest
import torch

from happyhorse import HappyHorsePipeline
from happyhorse.media import save_audio, save_video
from happyhorse.pipeline import SchedulerConfig
from tests.conftest import tiny_pipeline


def test_every_mode_has_the_right_shapes(pipe):
    image = np.zeros((32, 32, 3), np.uint8)
    audio = (np.zeros((1, 12000), np.float32), 16000)
    for kwargs, mode in [
        ({}, "T2V"),
        ({"image": image}, "TI2V"),
        ({"audio": audio}, "TA2V"),
        ({"image": image, "audio": audio}, "TIA2V"),
    ]:
        out = pipe("a red ball", seed=0, **kwargs)
        assert out.mode == mode
        assert out.frames.shape == (1, 9, 32, 32, 3) and out.frames.dtype == np.uint8
        assert out.audio.shape == (1, 1, 12000) and out.audio.dtype == np.float32
        assert out.fps == 12.0 and out.sample_rate == 16000


def test_batch_of_prompts_and_other_sizes(pipe):
    out = pipe(["a red ball", "a blue box"], seconds=1.0, width=48, height=16)
    assert out.frames.shape == (2, 13, 16, 48, 3)  # 12 frames rounded up to 1 + 4k
    assert out.audio.shape == (2, 1, round(13 / 12 * 16000))


def test_same_seed_same_clip_other_seed_other_clip(pipe):
    a, b, c = pipe("x", seed=3), pipe("x", seed=3), pipe("x", seed=4)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)
    assert not np.array_equal(a.frames, c.frames)


def test_ti2v_keeps_the_image_and_ta2v_keeps_the_sound(pipe, tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    out = pipe("x", image=image)
    assert np.array_equal(out.frames[0, 0], image)
    # frame 0's latent was kept clean; decoding it alone gives the image back within codec error
    sound = (0.3 * np.sin(np.arange(12000) / 7)).astype(np.float32)
    save_audio(tmp_path / "s.wav", sound[None], 16000)
    out = pipe("x", audio=str(tmp_path / "s.wav"))
    assert np.abs(out.audio[0, 0] - sound).max() < 1e-3
    # an image of another size is scaled and centre-cropped to the output size
    out = pipe("x", image=rng.integers(0, 255, (60, 90, 3), dtype=np.uint8))
    assert out.frames.shape[2:4] == (32, 32)


def test_audio_sets_the_length_when_seconds_is_not_given(pipe):
    out = pipe("x", audio=(np.zeros(24000, np.float32), 16000))
    assert out.frames.shape[1] == 21  # 1.5 s at 12 fps = 18 frames -> 21 (1 + 4k)


def test_guidance_runs_two_branches_and_changes_the_result(pipe):
    a = pipe("a red ball", seed=0, guidance_scale=1.0)
    b = pipe("a red ball", seed=0, guidance_scale=4.0, audio_guidance_scale=2.0)
    assert not np.array_equal(a.frames, b.frames)


def test_guidance_interval_guides_only_the_noise_levels_inside_it(pipe, tmp_path):
    batches = []
    hook = pipe.transformer.register_forward_hook(lambda m, args, out: batches.append(args[0].shape[0]))
    try:
        kw = {"seed": 0, "num_inference_steps": 4, "sampler": "euler", "shift": 1.0, "guidance_scale": 4.0}
        full = pipe("a red ball", **kw)
        assert batches == [2, 2, 2, 2]  # sigmas 1, 0.75, 0.5, 0.25: guided throughout by default
        batches.clear()
        half = pipe("a red ball", guidance_interval=(0.0, 0.5), **kw)
        assert batches == [1, 1, 2, 2] and half.settings["guidance_interval"] == [0.0, 0.5]
        none = pipe("a red ball", guidance_interval=(0.1, 0.2), **{**kw})
        plain = pipe("a red ball", **{**kw, "guidance_scale": 1.0})
    finally:
        hook.remove()
    assert np.array_equal(none.frames, plain.frames)  # an interval with no step in it is no guidance
    two = ["a red ball", "a blue box slides to the left"]
    assert np.array_equal(
        pipe(two, guidance_interval=(0.1, 0.2), **kw).frames, pipe(two, **{**kw, "guidance_scale": 1.0}).frames
    )
    assert not np.array_equal(half.frames, full.frames) and not np.array_equal(half.frames, plain.frames)
    with pytest.raises(ValueError, match="guidance_interval"):
        pipe("a red ball", guidance_interval=(0.6, 0.2))
    pipe.scheduler.guidance_interval = (0.0, 0.5)
    try:
        pipe.save_pretrained(tmp_path / "m")
        loaded = HappyHorsePipeline.from_pretrained(tmp_path / "m")
    finally:
        pipe.scheduler.guidance_interval = (0.0, 1.0)
    assert loaded.scheduler.guidance_interval == (0.0, 0.5)
    assert np.array_equal(loaded("a red ball", **kw).frames, half.frames)


def test_guidance_drops_take_the_given_sound_or_frame_from_the_unconditional_branch(pipe, tmp_path):
    """With guidance_drops the unconditional half sees the given soundtrack (or first frame) as a
    generated one, noised to the step's level by the sample's own noise; the prompt half keeps it."""
    sound = (0.3 * np.sin(np.arange(12000) / 7)).astype(np.float32)
    kw = {"seed": 3, "num_inference_steps": 2, "sampler": "euler", "shift": 1.0, "guidance_scale": 4.0}
    seen = []
    hook = pipe.transformer.register_forward_hook(lambda m, args, out: seen.append([a.clone() for a in args[:8]]))
    try:
        dropped = pipe("a red ball", audio=(sound, 16000), guidance_drops=("audio",), **kw)
    finally:
        hook.remove()
    gen = torch.Generator().manual_seed(3)
    video_noise = torch.randn(seen[0][0][:1].shape, generator=gen)
    audio_noise = torch.randn(seen[0][1][:1].shape, generator=gen)
    given = seen[0][6][0]  # the prompt half's audio_clean: the whole soundtrack is given
    assert given.all() and torch.equal(seen[0][0][1], video_noise[0])  # the video is not touched
    clean_audio = seen[0][1][0]
    for (_, audio, _, _, _, video_clean, audio_clean, sigmas), sigma in zip(seen, (1.0, 0.5), strict=True):
        assert torch.equal(audio[0], clean_audio) and audio_clean[0].all()  # the prompt half keeps the sound
        assert not audio_clean[1].any() and torch.allclose(sigmas[1], torch.full_like(sigmas[1], sigma))
        torch.testing.assert_close(audio[1], (1 - sigma) * clean_audio + sigma * audio_noise[0])
        assert not video_clean.any()
    assert dropped.settings["guidance_drops"] == ["audio"]
    assert np.abs(dropped.audio[0, 0] - sound).max() < 1e-3  # the output keeps the given sound
    kept = pipe("a red ball", audio=(sound, 16000), **kw)
    assert not np.array_equal(kept.frames, dropped.frames)
    # nothing to drop, or no unconditional branch: the same clip as without
    assert np.array_equal(
        pipe("a red ball", guidance_drops=("audio", "image"), **kw).frames, pipe("a red ball", **kw).frames
    )
    plain = {**kw, "guidance_scale": 1.0}
    assert np.array_equal(
        pipe("a red ball", audio=(sound, 16000), guidance_drops=("audio",), **plain).frames,
        pipe("a red ball", audio=(sound, 16000), **plain).frames,
    )
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    with_frame = pipe("a red ball", image=image, guidance_drops=("image",), **kw)
    assert np.array_equal(with_frame.frames[0, 0], image)
    assert not np.array_equal(with_frame.frames, pipe("a red ball", image=image, **kw).frames)
    # a stored default, saved and loaded with the model
    pipe.scheduler.guidance_drops = ("audio",)
    try:
        pipe.save_pretrained(tmp_path / "m")
    finally:
        pipe.scheduler.guidance_drops = ()
    loaded = HappyHorsePipeline.from_pretrained(tmp_path / "m")
    assert loaded.scheduler.guidance_drops == ("audio",)
    assert np.array_equal(loaded("a red ball", audio=(sound, 16000), **kw).frames, dropped.frames)
    for bad in (("text",), ("audio", "audio"), "audio"):
        with pytest.raises(ValueError, match="guidance_drops: distinct names from"):
            pipe("x", guidance_drops=bad)


def test_restarts_walk_a_band_of_noise_levels_again_and_are_stored_and_checked(pipe, tmp_path, monkeypatch):
    """restarts = K: the sampler walks the band's levels K more times (one model call each, none for the
    climb), the clip changes, the settings say so; 0 leaves every seed's clip as it was; a band the
    schedule misses is refused."""
    import happyhorse.pipeline as pipeline_module

    schedules, calls = [], []
    real_sample = pipeline_module.sample

    def recording_sample(denoise, noise, sigmas, *args):
        schedules.append([round(s, 3) for s in sigmas])
        return real_sample(denoise, noise, sigmas, *args)

    monkeypatch.setattr(pipeline_module, "sample", recording_sample)
    hook = pipe.transformer.register_forward_hook(lambda *a: calls.append(1))
    kw = {"seed": 5, "num_inference_steps": 8, "shift": 2.0, "sampler": "dpmpp_2m", "guidance_scale": 1.0}
    try:
        plain = pipe("a red ball", **kw)
        none = pipe("a red ball", restarts=0, **kw)
        plain_calls = len(calls)
        twice = pipe("a red ball", restarts=2, restart_interval=(0.5, 0.8), **kw)
    finally:
        hook.remove()
    levels = [1.0, 0.933, 0.857, 0.769, 0.667, 0.545, 0.4, 0.222, 0.0]
    assert schedules[0] == schedules[1] == levels
    assert schedules[2] == levels[:7] + [0.769, 0.667, 0.545, 0.4] * 2 + levels[7:]
    assert plain_calls == 16 and len(calls) - plain_calls == 8 + 2 * 3
    assert np.array_equal(plain.frames, none.frames) and not np.array_equal(plain.frames, twice.frames)
    assert twice.settings["restarts"] == 2 and twice.settings["restart_interval"] == [0.5, 0.8]
    assert plain.settings["restarts"] == 0
    with pytest.raises(ValueError, match=r"restart_interval: need 0 < low < high < 1, got \[0.8, 0.5\]"):
        pipe("a red ball", restarts=1, restart_interval=(0.8, 0.5), **kw)
    with pytest.raises(ValueError, match=r"restarts: a whole number in \[0, 8\], got -1"):
        pipe("a red ball", restarts=-1, **kw)
    with pytest.raises(ValueError, match="restarts: the schedule of 8 steps at shift 2.0 has no levels between 0.41"):
        pipe("a red ball", restarts=1, restart_interval=(0.41, 0.44), **kw)
    with pytest.raises(ValueError, match=r"restarts: a whole number in \[0, 8\], got True"):
        pipe("a red ball", restarts=True, **kw)
    with pytest.raises(ValueError, match=r"restart_interval: two numbers \[low, high\], got '0.5'"):
        pipe("a red ball", restarts=1, restart_interval="0.5", **kw)
    pipe.scheduler.restarts, pipe.scheduler.restart_interval = 2, (0.5, 0.8)
    try:
        pipe.save_pretrained(tmp_path / "m")
    finally:
        pipe.scheduler.restarts, pipe.scheduler.restart_interval = 0, (0.5, 0.8)
    loaded = HappyHorsePipeline.from_pretrained(tmp_path / "m")
    assert (loaded.scheduler.restarts, loaded.scheduler.restart_interval) == (2, (0.5, 0.8))
    assert np.array_equal(loaded("a red ball", **kw).frames, twice.frames)
    # a stored restart belongs to the stored step count: at 2 steps ([1, .67, 0]) there is no band, so the
    # clip is sampled without it and says so; asked for explicitly, it is refused
    short = {**kw, "num_inference_steps": 2}
    dropped = loaded("a red ball", **short)
    assert dropped.settings["restarts"] == 0
    assert np.array_equal(dropped.frames, loaded("a red ball", restarts=0, **short).frames)
    with pytest.raises(ValueError, match="restarts: the schedule of 2 steps"):
        loaded("a red ball", restarts=2, **short)


def test_noise_correlation_shares_part_of_the_video_noise_over_time(pipe, tmp_path):
    """noise_correlation = rho gives every latent frame's noise a common part: correlation rho between
    frames at one place, unit variance kept; 0 leaves every seed's clip as it was; stored and checked."""
    seen = []
    hook = pipe.transformer.register_forward_hook(lambda m, args, out: seen.append((args[0].clone(), args[1].clone())))
    kw = {"seed": 5, "num_inference_steps": 2, "sampler": "euler", "guidance_scale": 1.0}
    try:
        plain = pipe("a red ball", **kw)
        same = pipe("a red ball", noise_correlation=0.0, **kw)
        shared = pipe("a red ball", noise_correlation=0.6, **kw)
    finally:
        hook.remove()
    assert np.array_equal(plain.frames, same.frames) and np.array_equal(plain.audio, same.audio)
    assert shared.settings["noise_correlation"] == 0.6 and not np.array_equal(plain.frames, shared.frames)
    # first step (one forward per step, no guidance): the noise itself; the sound's is not touched
    assert torch.equal(seen[0][0], seen[2][0]) and not torch.equal(seen[0][0], seen[4][0])
    assert torch.equal(seen[0][1], seen[4][1])
    from happyhorse.pipeline import share_over_time

    gen = torch.Generator().manual_seed(0)
    grid = (3, 16, 16)
    own = torch.randn(200, 3 * 16 * 16, 12, generator=gen)
    mixed = share_over_time(own, grid, 0.6, gen).reshape(200, 3, -1)
    assert abs(mixed.var().item() - 1.0) < 0.02
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert abs(torch.corrcoef(torch.stack([mixed[:, a].flatten(), mixed[:, b].flatten()]))[0, 1] - 0.6) < 0.02
    assert abs(torch.corrcoef(torch.stack([own[:, :256].flatten(), own[:, 256:512].flatten()]))[0, 1]) < 0.02
    with pytest.raises(ValueError, match=r"noise_correlation: must be a number in \[0, 1\), got 1.0"):
        pipe("a red ball", noise_correlation=1.0, **kw)
    pipe.scheduler.noise_correlation = 0.6
    try:
        pipe.save_pretrained(tmp_path / "m")
    finally:
        pipe.scheduler.noise_correlation = 0.0
    loaded = HappyHorsePipeline.from_pretrained(tmp_path / "m")
    assert loaded.scheduler.noise_correlation == 0.6
    assert np.array_equal(loaded("a red ball", **kw).frames, shared.frames)


def _x0(pipe, guidance: float, autoguidance: float, audio_autoguidance: float | None = None, sigma: float = 0.6):
    """The guided x0 the samplers see, for a fixed noisy input of the pipeline's default clip size."""
    torch.manual_seed(11)
    video, audio = torch.randn(1, 48, 768), torch.randn(1, 30, 400)
    text, mask = pipe.text_encoder.encode(["a red ball", ""] if guidance != 1 else ["a red ball"])
    from happyhorse.pipeline import sequence_positions

    positions = sequence_positions((3, 4, 4), 30, text.shape[1], pipe.video_codec, pipe.audio_codec, 12.0)
    denoise = pipe._denoiser(
        text,
        mask,
        positions,
        [None, None],
        guidance != 1,
        guidance,
        guidance,
        (0, 1),
        (autoguidance, autoguidance if audio_autoguidance is None else audio_autoguidance),
    )
    return denoise([video, audio], sigma)


def test_autoguidance_extrapolates_from_the_guide_model_linearly(pipe, tmp_path):
    import copy

    guide = tiny_pipeline(seed=5)
    pipe.set_guide(guide.transformer)
    c = _x0(pipe, 1.0, 1.0)  # the model alone
    g = _x0(guide, 1.0, 1.0)  # the guide alone
    for a in (2.0, 3.5):
        for mine, ci, gi in zip(_x0(pipe, 1.0, a), c, g, strict=True):
            torch.testing.assert_close(mine, gi + a * (ci - gi), atol=1e-4, rtol=1e-4)
    # with CFG too, autoguidance adds (a - 1)(c - g) to the CFG result
    cfg_only, both = _x0(pipe, 4.0, 1.0), _x0(pipe, 4.0, 2.5)
    for x, y, ci, gi in zip(both, cfg_only, c, g, strict=True):
        torch.testing.assert_close(x - y, 1.5 * (ci - gi), atol=1e-4, rtol=1e-4)
    # each modality has its own scale: video only leaves the sound's prediction as CFG made it
    video_only = _x0(pipe, 4.0, 2.5, audio_autoguidance=1.0)
    torch.testing.assert_close(video_only[0], both[0])
    torch.testing.assert_close(video_only[1], cfg_only[1])
    # a guide identical to the model steers nowhere
    pipe.set_guide(copy.deepcopy(pipe.transformer))
    for x, y in zip(_x0(pipe, 4.0, 3.0), cfg_only, strict=True):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-4)
    # one extra forward per step (batch 1, the prompt) on the guide, none on the model
    pipe.set_guide(guide.transformer)
    calls = []
    hooks = [
        m.register_forward_hook(lambda m, a, o, n=n: calls.append((n, a[0].shape[0])))
        for n, m in (("model", pipe.transformer), ("guide", pipe.guide_transformer))
    ]
    try:
        out = pipe("a red ball", seed=0, num_inference_steps=2, guidance_scale=4.0, autoguidance_scale=2.0)
    finally:
        for h in hooks:
            h.remove()
    assert calls == [("model", 2), ("guide", 1)] * 2 and out.settings["autoguidance_scale"] == 2.0
    off = pipe("a red ball", seed=0, num_inference_steps=2, guidance_scale=4.0)
    assert not np.array_equal(out.frames, off.frames)
    # the guide and the scale are saved with the model and come back
    pipe.scheduler.autoguidance_scale = 2.0
    pipe.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "guide_transformer" / "model.safetensors").is_file()
    loaded = HappyHorsePipeline.from_pretrained(tmp_path / "m")
    assert loaded.scheduler.autoguidance_scale == 2.0
    again = loaded("a red ball", seed=0, num_inference_steps=2, guidance_scale=4.0)
    assert np.array_equal(again.frames, out.frames) and np.array_equal(again.audio, out.audio)


def test_autoguidance_interval_runs_the_guide_only_at_the_noise_levels_inside_it(pipe, tmp_path):
    """The guide's forward is what the interval saves: outside it a step is plain CFG, inside it unchanged."""
    pipe.set_guide(tiny_pipeline(seed=5).transformer)
    calls = []
    hooks = [
        m.register_forward_hook(lambda m, a, o, n=n: calls.append(n))
        for n, m in (("model", pipe.transformer), ("guide", pipe.guide_transformer))
    ]
    kw = {"seed": 0, "num_inference_steps": 4, "sampler": "euler", "shift": 1.0, "guidance_scale": 4.0}
    try:
        full = pipe("a red ball", autoguidance_scale=2.0, **kw)  # sigmas 1, 0.75, 0.5, 0.25
        assert calls == ["model", "guide"] * 4
        calls.clear()
        high = pipe("a red ball", autoguidance_scale=2.0, autoguidance_interval=(0.6, 1.0), **kw)
        assert calls == ["model", "guide", "model", "guide", "model", "model"]
        assert high.settings["autoguidance_interval"] == [0.6, 1.0]
        calls.clear()
        # inside the guidance interval only: no guide where classifier-free guidance is off too
        pipe("a red ball", autoguidance_scale=2.0, guidance_interval=(0.0, 0.8), **kw)
        assert calls == ["model", "model", "guide", "model", "guide", "model", "guide"]
        none = pipe("a red ball", autoguidance_scale=2.0, autoguidance_interval=(0.1, 0.2), **kw)
        plain = pipe("a red ball", **kw)
        explicit = pipe("a red ball", autoguidance_scale=2.0, autoguidance_interval=(0.0, 1.0), **kw)
    finally:
        for h in hooks:
            h.remove()
    assert np.array_equal(none.frames, plain.frames) and np.array_equal(none.audio, plain.audio)
    assert np.array_equal(explicit.frames, full.frames)  # the default interval is every level
    assert not np.array_equal(high.frames, full.frames) and not np.array_equal(high.frames, plain.frames)
    for bad in ((0.7, 0.2), (0.0, 1.5)):
        with pytest.raises(ValueError, match=r"autoguidance_interval: need 0 <= low <= high <= 1"):
            pipe("a red ball", autoguidance_interval=bad)
    pipe.scheduler.autoguidance_scale, pipe.scheduler.autoguidance_interval = 2.0, (0.6, 1.0)
    try:
        pipe.save_pretrained(tmp_path / "m")
    finally:
        pipe.scheduler.autoguidance_scale, pipe.scheduler.autoguidance_interval = 1.0, (0.0, 1.0)
        pipe.set_guide(None)
    loaded = HappyHorsePipeline.from_pretrained(tmp_path / "m")
    assert loaded.scheduler.autoguidance_interval == (0.6, 1.0)
    assert np.array_equal(loaded("a red ball", **kw).frames, high.frames)


def test_skip_layer_guidance_guides_by_the_model_minus_some_blocks(pipe, tmp_path):
    """With no guide model, guide_skip_blocks make the guide the model itself passing over those blocks."""
    import copy

    kw = {"seed": 0, "num_inference_steps": 2, "guidance_scale": 4.0}
    shorter = copy.deepcopy(pipe.transformer)
    del shorter.blocks[1]
    pipe_with_guide = copy.copy(pipe)
    pipe_with_guide.guide_transformer = shorter  # the same guide as a separate model
    skipped = pipe("a red ball", autoguidance_scale=2.0, guide_skip_blocks=(1,), **kw)
    assert (
        np.abs(skipped.frames.astype(int) - pipe_with_guide("a red ball", autoguidance_scale=2.0, **kw).frames).max()
        <= 1
    )
    assert skipped.settings["guide_skip_blocks"] == [1]
    assert not np.array_equal(skipped.frames, pipe("a red ball", **kw).frames)
    pipe.scheduler.guide_skip_blocks, pipe.scheduler.autoguidance_scale = (1,), 2.0
    try:
        pipe.save_pretrained(tmp_path / "m")
    finally:
        pipe.scheduler.guide_skip_blocks, pipe.scheduler.autoguidance_scale = (), 1.0
    loaded = HappyHorsePipeline.from_pretrained(tmp_path / "m")
    assert loaded.scheduler.guide_skip_blocks == (1,) and loaded.guide_transformer is None
    assert np.array_equal(loaded("a red ball", **kw).frames, skipped.frames)
    for bad in ((2,), (0, 0), (-1,)):  # the tiny model has blocks 0 and 1
        with pytest.raises(ValueError, match="guide_skip_blocks: distinct block numbers in 0..1"):
            pipe("x", autoguidance_scale=2.0, guide_skip_blocks=bad)


def test_temporal_self_guidance_guides_by_the_model_without_attention_between_frames(pipe, tmp_path):
    """guide_frame_local_blocks make the guide the model whose video tokens, in those blocks, see no
    other latent frame: the same clip as a separate guide module doing exactly that."""
    import copy

    from torch import nn

    class FrameLocal(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model, self.cfg, self.blocks = model, model.cfg, model.blocks

        def forward(self, *args, **kw):
            return self.model(*args, **{**kw, "frame_local_blocks": (0, 1)})

    kw = {"seed": 0, "num_inference_steps": 2, "guidance_scale": 4.0}
    local = pipe("a red ball", autoguidance_scale=2.0, guide_frame_local_blocks=(0, 1), **kw)
    pipe_with_guide = copy.copy(pipe)
    pipe_with_guide.guide_transformer = FrameLocal(pipe.transformer)
    assert np.array_equal(local.frames, pipe_with_guide("a red ball", autoguidance_scale=2.0, **kw).frames)
    assert local.settings["guide_frame_local_blocks"] == [0, 1]
    assert not np.array_equal(local.frames, pipe("a red ball", **kw).frames)
    skipped = pipe("a red ball", autoguidance_scale=2.0, guide_skip_blocks=(1,), **kw)
    assert not np.array_equal(local.frames, skipped.frames)
    pipe.scheduler.guide_frame_local_blocks, pipe.scheduler.autoguidance_scale = (0, 1), 2.0
    try:
        pipe.save_pretrained(tmp_path / "m")
    finally:
        pipe.scheduler.guide_frame_local_blocks, pipe.scheduler.autoguidance_scale = (), 1.0
    loaded = HappyHorsePipeline.from_pretrained(tmp_path / "m")
    assert loaded.scheduler.guide_frame_local_blocks == (0, 1)
    assert np.array_equal(loaded("a red ball", **kw).frames, local.frames)
    with pytest.raises(ValueError, match="guide_frame_local_blocks: distinct block numbers in 0..1"):
        pipe("x", autoguidance_scale=2.0, guide_frame_local_blocks=(2,))
    with pytest.raises(ValueError, match="guide_frame_local_blocks: a list of block numbers"):
        SchedulerConfig.from_dict({"guide_frame_local_blocks": 3})  # as a stored config.json might hold
    for bad in (0, 1):  # the type is checked before whether there is a guide
        with pytest.raises(ValueError, match="guide_frame_local_blocks: must be a tuple"):
            pipe("x", autoguidance_scale=2.0, guide_frame_local_blocks=bad)
    with pytest.raises(ValueError, match=r"guide_frame_local_blocks: \[1\] also in guide_skip_blocks"):
        pipe("x", autoguidance_scale=2.0, guide_skip_blocks=(1,), guide_frame_local_blocks=(0, 1))


def test_autoguidance_refuses_a_missing_or_mismatched_guide(pipe):
    with pytest.raises(ValueError, match="autoguidance_scale: 2.0 needs a guide"):
        pipe("x", autoguidance_scale=2.0)
    with pytest.raises(ValueError, match="autoguidance_scale"):
        pipe("x", autoguidance_scale=float("inf"))
    with pytest.raises(ValueError, match="audio_autoguidance_scale: 3 needs a guide"):
        pipe("x", audio_autoguidance_scale=3)
    with pytest.raises(ValueError, match="guide_skip_blocks: must be a tuple"):
        pipe("x", autoguidance_scale=2.0, guide_skip_blocks=1)
    from happyhorse.model import SingleStreamTransformer

    other = SingleStreamTransformer(
        pipe.transformer.cfg.__class__.from_dict({**pipe.transformer.cfg.to_dict(), "video_in": 96})
    )
    with pytest.raises(ValueError, match=r"guide_transformer: .*video_in \(768, got 96\)"):
        pipe.set_guide(other)
    assert pipe.guide_transformer is None


def test_save_and_load_round_trip(pipe, tmp_path):
    before = pipe("a green triangle", seed=1)
    pipe.save_pretrained(tmp_path / "m")
    names = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert names == ["audio_codec", "model_index.json", "scheduler", "text_encoder", "transformer", "video_codec"]
    for component in ("transformer", "video_codec", "audio_codec", "text_encoder", "scheduler"):
        assert (tmp_path / "m" / component / "config.json").is_file()
    assert (tmp_path / "m" / "transformer" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "m" / "model_index.json").read_text())["_class_name"] == "HappyHorsePipeline"
    loaded = HappyHorsePipeline.from_pretrained(tmp_path / "m")
    after = loaded("a green triangle", seed=1)
    assert np.array_equal(before.frames, after.frames) and np.array_equal(before.audio, after.audio)
    # saving again over an existing directory replaces it whole
    tiny_pipeline(seed=5).save_pretrained(tmp_path / "m")
    assert not np.array_equal(
        HappyHorsePipeline.from_pretrained(tmp_path / "m")("a green triangle", seed=1).frames, before.frames
    )


def test_half_precision_weights_halve_the_file_and_keep_the_clip(pipe, tmp_path):
    import torch
    from safetensors.torch import load_file

    pipe.save_pretrained(tmp_path / "fp32")
    pipe.save_pretrained(tmp_path / "fp16", weights_dtype=torch.float16)
    size = {d: (tmp_path / d / "transformer" / "model.safetensors").stat().st_size for d in ("fp32", "fp16")}
    assert size["fp16"] < 0.55 * size["fp32"]
    assert {t.dtype for t in load_file(str(tmp_path / "fp16" / "transformer" / "model.safetensors")).values()} == {
        torch.float16
    }
    full = HappyHorsePipeline.from_pretrained(tmp_path / "fp32")("a green triangle", seed=1)
    half = HappyHorsePipeline.from_pretrained(tmp_path / "fp16")("a green triangle", seed=1)
    assert np.abs(full.frames.astype(int) - half.frames.astype(int)).max() <= 3  # of 255
    with pytest.raises(ValueError, match="weights_dtype"):
        pipe.save_pretrained(tmp_path / "int", weights_dtype=torch.int8)


def test_device_and_dtype_resolve_by_name_and_refuse_what_cannot_run():
    from happyhorse.pipeline import cpu_has_fast_bfloat16, resolve_device, resolve_dtype

    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_dtype(None, torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cpu")) == (torch.bfloat16 if cpu_has_fast_bfloat16() else torch.float32)
    assert resolve_dtype("auto", torch.device("cuda")) == resolve_dtype(None, torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    for bad, needle in [("tpu", "device: must be one of auto, cpu, cuda, cuda:N"), ("cuda:x", "device")]:
        with pytest.raises(ValueError, match=needle):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda:0")
    with pytest.raises(ValueError, match="dtype: must be one of auto, float32"):
        resolve_dtype("fp8", torch.device("cpu"))
    with pytest.raises(ValueError, match="float16 is for GPUs"):
        resolve_dtype(torch.float16, torch.device("cpu"))


def test_bfloat16_on_the_cpu_computes_the_transformers_in_it_and_keeps_the_clip(pipe):
    full = pipe("a green triangle", seed=1)
    pipe.to("cpu", "bfloat16")
    assert {p.dtype for p in pipe.transformer.parameters()} == {torch.bfloat16}
    half = pipe("a green triangle", seed=1)
    assert (half.settings["dtype"], full.settings["dtype"]) == ("bfloat16", "float32")
    assert half.frames.dtype == np.uint8 and half.audio.dtype == np.float32
    assert 0 < np.abs(full.frames.astype(int) - half.frames.astype(int)).mean() < 4  # of 255
    assert pipe.to().dtype == torch.float32  # None: the device's default


def test_loading_a_non_model_directory_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        HappyHorsePipeline.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"width": 30}, "width"),
        ({"height": 0}, "height"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"guidance_scale": float("nan")}, "guidance_scale"),
        ({"audio_guidance_scale": -1}, "audio_guidance_scale"),
        ({"seconds": 0}, "seconds"),
        ({"seconds": 500}, "seconds"),
        ({"sampler": "heun"}, "sampler"),
        ({"image": np.zeros((8, 8), np.uint8)}, "image"),
        ({"image": np.zeros((8, 8, 3), np.float32)}, "image"),
        ({"audio": (np.zeros((3, 100)), 16000)}, "audio"),
        ({"audio": (np.zeros(100), 100)}, "audio"),
        ({"audio": [0.0, 1.0]}, "audio"),
    ],
)
def test_check_inputs_names_the_bad_argument(pipe, kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        pipe("x", **kwargs)


def test_bad_prompt_and_unreadable_files(pipe, tmp_path):
    with pytest.raises(ValueError, match="prompt"):
        pipe(["x", 3])
    with pytest.raises(ValueError, match="prompt"):
        pipe("x" * 5000)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="not a readable image"):
        pipe("x", image=str(tmp_path / "bad.png"))
    save_video(tmp_path / "silent.mp4", np.zeros((4, 16, 16, 3), np.uint8), 12)
    with pytest.raises(ValueError, match="no audio stream"):
        pipe("x", audio=str(tmp_path / "silent.mp4"))


def test_text_cache_evicts_without_losing_the_batch():
    from happyhorse.codecs import HashTextEncoder

    encoder = HashTextEncoder(dim=8)
    encoder._cache_size = 3
    first, _ = encoder.encode(["a", "b c", "d"])
    states, mask = encoder.encode(["a", "e", "f g h", "d"])  # "a" and "d" cached, two new ones evict
    assert states.shape == (4, 4, 8) and mask.sum(1).tolist() == [2, 2, 4, 2]
    assert torch.equal(states[0, :2], first[0, :2]) and len(encoder._cache) == 3


def test_swap_words_exchanges_whole_words_both_ways():
    from happyhorse.pipeline import swap_words

    swaps = (("left", "right"), ("big", "small"))
    assert swap_words("A big ball flies to the left. Right after, a small box slides right.", swaps) == (
        "A small ball flies to the right. Left after, a big box slides left."
    )
    assert swap_words("the leftmost brightness", swaps) == "the leftmost brightness"  # whole words only
    assert swap_words("a ball falls", swaps) == "a ball falls" and swap_words("left", ()) == "left"


def test_contrastive_guidance_pushes_away_from_the_swapped_prompt(pipe, tmp_path):
    """x0 += (d - 1)(c - n): n the prediction for the prompt with the swap words exchanged, one more
    forward per step (batch 1); a prompt with nothing to swap costs nothing and changes nothing."""
    from happyhorse.pipeline import sequence_positions

    torch.manual_seed(11)
    video, audio = torch.randn(1, 48, 768), torch.randn(1, 30, 400)
    text, mask = pipe.text_encoder.encode(["a ball thrown to the left", "", "a ball thrown to the right"])
    positions = sequence_positions((3, 4, 4), 30, text.shape[1], pipe.video_codec, pipe.audio_codec, 12.0)

    def x0(contrast, rows=slice(0, 2), guidance=4.0):
        denoise = pipe._denoiser(
            text[rows], mask[rows], positions, [None, None], guidance != 1, guidance, guidance, contrast=contrast
        )
        return denoise([video, audio], 0.6)

    plain, c, n = x0(None), x0(None, slice(0, 1), 1.0), x0(None, slice(2, 3), 1.0)
    contrasted = x0((text[2:], mask[2:], 3.0))
    torch.testing.assert_close(contrasted[0], plain[0] + 2.0 * (c[0] - n[0]), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(contrasted[1], plain[1])  # the sound is left as CFG made it
    calls = []
    hook = pipe.transformer.register_forward_hook(lambda m, a, o: calls.append(a[0].shape[0]))
    kw = {"seed": 0, "num_inference_steps": 2, "guidance_scale": 4.0}
    try:
        out = pipe("a ball thrown to the left", contrast_guidance_scale=3.0, contrast_swaps=[["left", "right"]], **kw)
        calls_swapped, calls[:] = list(calls), []
        still = pipe("a ball falls", contrast_guidance_scale=3.0, contrast_swaps=[["left", "right"]], **kw)
    finally:
        hook.remove()
    assert calls_swapped == [2, 1] * 2 and calls == [2] * 2
    assert out.settings["contrast_prompt"] == ["a ball thrown to the right"]
    assert not np.array_equal(out.frames, pipe("a ball thrown to the left", **kw).frames)
    assert np.array_equal(still.frames, pipe("a ball falls", **kw).frames) and still.settings["contrast_prompt"] is None
    given = pipe("a ball", contrast_prompt="a box", contrast_guidance_scale=2.0, **kw)
    assert given.settings["contrast_prompt"] == ["a box"]
    with pytest.raises(ValueError, match="needs a contrast_prompt or contrast_swaps"):
        pipe("a ball thrown to the left", contrast_guidance_scale=3.0, **kw)
    with pytest.raises(ValueError, match="contrast_prompt: one string per prompt"):
        pipe(["a", "b"], contrast_prompt=["c"], contrast_guidance_scale=2.0, **kw)
    with pytest.raises(ValueError, match="contrast_swaps: a list of"):
        pipe("a", contrast_swaps=[["left"]], contrast_guidance_scale=2.0, **kw)
    with pytest.raises(ValueError, match="contrast_guidance_scale: must be a number in"):
        pipe("a", contrast_prompt="b", contrast_guidance_scale=-1.0, **kw)
    # stored defaults come back with the model and give the same clip
    pipe.scheduler.contrast_guidance_scale, pipe.scheduler.contrast_swaps = 3.0, (("left", "right"),)
    try:
        pipe.save_pretrained(tmp_path / "m")
    finally:
        pipe.scheduler.contrast_guidance_scale, pipe.scheduler.contrast_swaps = 1.0, ()
    loaded = HappyHorsePipeline.from_pretrained(tmp_path / "m")
    assert loaded.scheduler.contrast_swaps == (("left", "right"),)
    assert np.array_equal(loaded("a ball thrown to the left", **kw).frames, out.frames)


def test_self_conditioning_gives_each_branch_its_own_last_estimate(tmp_path):
    pipe = tiny_pipeline(self_conditioning=True)
    model = pipe.transformer
    plain = tiny_pipeline()  # the same weights without self-conditioning: at zero, the same clip
    model.load_state_dict(
        {**plain.transformer.state_dict(), **{k: v for k, v in model.state_dict().items() if "_self_in" in k}}
    )
    same = pipe("a red ball", seed=0, guidance_scale=3.0)
    other = plain("a red ball", seed=0, guidance_scale=3.0)
    assert np.array_equal(same.frames, other.frames) and np.array_equal(same.audio, other.audio)
    torch.nn.init.normal_(model.video_self_in.weight, std=0.2)
    torch.nn.init.normal_(model.audio_self_in.weight, std=0.2)
    calls = []

    def record(module, args, kwargs, out):
        calls.append((args[0].shape[0], bool(kwargs.get("skip_blocks")), kwargs.get("self_condition"), out))

    hook = model.register_forward_hook(record, with_kwargs=True)
    try:  # CFG (main branch, batch 2) and skip-layer autoguidance by the model itself (guide branch, batch 1)
        out = pipe("a red ball", seed=0, guidance_scale=3.0, autoguidance_scale=2.0, guide_skip_blocks=(1,))
    finally:
        hook.remove()
    assert [(n, skip) for n, skip, _, _ in calls] == [(2, False), (1, True)] * 3
    assert calls[0][2] is None and calls[1][2] is None  # the first step has no estimate, as in training
    for k in range(2, 6):  # each call reads the x0 its branch predicted one step before (prediction x0)
        given, earlier = calls[k][2], calls[k - 2][3]
        torch.testing.assert_close(given[0], earlier.video.float())
        torch.testing.assert_close(given[1], earlier.audio.float())
    assert not np.array_equal(out.frames, pipe("a red ball", seed=0, guidance_scale=3.0).frames)
    assert out.settings["self_condition"] is True
    # without the estimate the model is the plain one (its self inputs see nothing); a model without
    # the input refuses to be asked for it
    off = pipe("a red ball", seed=0, guidance_scale=3.0, self_condition=False)
    assert off.settings["self_condition"] is False and np.array_equal(off.frames, other.frames)
    with pytest.raises(ValueError, match="self_condition: this model has no self-conditioning input"):
        plain("a red ball", self_condition=True)
    assert plain("a red ball", seed=0, guidance_scale=3.0).settings["self_condition"] is False
    # the flag and the weights are saved with the model and come back
    pipe.save_pretrained(tmp_path / "m")
    loaded = HappyHorsePipeline.from_pretrained(tmp_path / "m")
    assert loaded.transformer.cfg.self_conditioning
    again = loaded("a red ball", seed=0, guidance_scale=3.0, autoguidance_scale=2.0, guide_skip_blocks=(1,))
    assert np.array_equal(again.frames, out.frames) and np.array_equal(again.audio, out.audio)


def test_clamp_x0_keeps_every_guided_video_prediction_in_the_pixel_range(pipe, tmp_path, monkeypatch):
    """clamp_x0: each step's guided video x0 lies in [-1, 1] (strong guidance pushes it out without),
    the clip changes and says so, the stored default round-trips; bad values and codecs with no pixel
    range are refused by name."""
    import happyhorse.pipeline as pipeline_module
    from happyhorse.codecs import AutoencoderVideoCodec
    from happyhorse.model import TransformerConfig
    from happyhorse.pipeline import build_pipeline

    ranges = []
    real_sample = pipeline_module.sample

    def recording_sample(denoise, *args):
        def recorded(xs, sigma):
            x0s = denoise(xs, sigma)
            ranges[-1].append((x0s[0].min().item(), x0s[0].max().item()))
            return x0s

        ranges.append([])
        return real_sample(recorded, *args)

    monkeypatch.setattr(pipeline_module, "sample", recording_sample)
    kw = {"seed": 2, "sampler": "dpmpp_2m", "guidance_scale": 30.0}
    free = pipe("a red ball", **kw)
    clamped = pipe("a red ball", clamp_x0=True, **kw)
    assert max(max(-lo, hi) for lo, hi in ranges[0]) > 1.2  # without the clamp guidance leaves the range
    assert all(lo >= -1.0 and hi <= 1.0 for lo, hi in ranges[1])
    assert not np.array_equal(free.frames, clamped.frames)
    assert (free.settings["clamp_x0"], clamped.settings["clamp_x0"]) == (False, True)
    pipe.scheduler.clamp_x0 = True
    try:
        pipe.save_pretrained(tmp_path / "m")
    finally:
        pipe.scheduler.clamp_x0 = False
    loaded = HappyHorsePipeline.from_pretrained(tmp_path / "m")
    assert loaded.scheduler.clamp_x0 is True
    assert np.array_equal(loaded("a red ball", **kw).frames, clamped.frames)
    assert np.array_equal(loaded("a red ball", clamp_x0=False, **kw).frames, free.frames)
    with pytest.raises(ValueError, match="clamp_x0: true or false, got 'yes'"):
        pipe("a red ball", clamp_x0="yes")
    codec = AutoencoderVideoCodec(4, 8, 8, latent_channels=8, channels=(8, 8, 8, 8)).eval()
    cfg = TransformerConfig(dim=32, depth=2, sandwich=1, heads=2, kv_heads=1, mlp_hidden=64)
    learned = build_pipeline(cfg, text_encoder="hash", video_codec=codec, defaults=pipe.defaults)
    with pytest.raises(ValueError, match=r"clamp_x0: the video codec \(video_autoencoder\) has unbounded latents"):
        learned("a red ball", clamp_x0=True, num_inference_steps=1)
