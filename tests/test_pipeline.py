"""HappyHorsePipeline: modes, conditioning, determinism, save/load, input checks."""

import dataclasses
import inspect
import json

import numpy as np
import pytest
import torch

from happyhorse import HappyHorsePipeline, SamplingConfig
from happyhorse.diffusion.guidance import AutoGuidance, ClassifierFreeGuidance
from happyhorse.media import save_audio, save_video
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


def sampling(pipe, **fields) -> SamplingConfig:
    """The pipeline's sampling config with `fields` replaced: what a model directory would store."""
    return dataclasses.replace(pipe.sampling, **fields)


CFG4 = ClassifierFreeGuidance(4.0, 4.0)


def test_the_call_takes_product_arguments_only(pipe):
    """diffusers' names, at most 16 parameters; how a model samples is not among them."""
    params = inspect.signature(HappyHorsePipeline.__call__).parameters
    assert len(params) <= 16
    assert {"num_inference_steps", "guidance_scale", "audio_guidance_scale", "seconds", "height", "width"} <= set(
        params
    )
    with pytest.raises(TypeError):
        pipe("x", sampler="euler")
    out = pipe("x", output_type="pt")
    assert out.frames.dtype == torch.uint8 and out.audio.dtype == torch.float32


def test_guidance_interval_guides_only_the_noise_levels_inside_it(pipe, tmp_path):
    batches = []
    hook = pipe.transformer.register_forward_hook(lambda m, args, out: batches.append(args[0].shape[0]))
    kw = {"seed": 0, "num_inference_steps": 4}
    try:
        pipe.sampling = sampling(pipe, guidance=(CFG4,))
        full = pipe("a red ball", **kw)
        assert batches == [2, 2, 2, 2]  # sigmas 1, 0.75, 0.5, 0.25: guided throughout by default
        batches.clear()
        pipe.sampling = sampling(pipe, guidance=(ClassifierFreeGuidance(4.0, 4.0, (0.0, 0.5)),))
        half = pipe("a red ball", **kw)
        assert batches == [1, 1, 2, 2] and half.settings["sampling"]["guidance"][0]["interval"] == [0.0, 0.5]
        pipe.save_pretrained(tmp_path / "m")
        pipe.sampling = sampling(pipe, guidance=(ClassifierFreeGuidance(4.0, 4.0, (0.1, 0.2)),))
        none = pipe("a red ball", **kw)
        two = ["a red ball", "a blue box slides to the left"]
        none_two = pipe(two, **kw)
        pipe.sampling = sampling(pipe, guidance=())
        plain = pipe("a red ball", **kw)
        plain_two = pipe(two, **kw)
    finally:
        hook.remove()
    assert np.array_equal(none.frames, plain.frames)  # an interval with no step in it is no guidance
    assert np.array_equal(none_two.frames, plain_two.frames)
    assert not np.array_equal(half.frames, full.frames) and not np.array_equal(half.frames, plain.frames)
    with pytest.raises(ValueError, match="classifier_free.interval: need 0 <= low <= high <= 1"):
        ClassifierFreeGuidance(4.0, 4.0, (0.6, 0.2))
    loaded = HappyHorsePipeline.from_pretrained(tmp_path / "m")
    assert loaded.sampling.classifier_free.interval == (0.0, 0.5)
    assert np.array_equal(loaded("a red ball", **kw).frames, half.frames)


def test_a_call_overrides_steps_and_guidance_scales_of_the_stored_config(pipe):
    pipe.sampling = sampling(pipe, guidance=(ClassifierFreeGuidance(4.0, 2.0, (0.0, 0.5)),))
    out = pipe("a red ball", num_inference_steps=2, guidance_scale=6.0)
    assert out.settings["num_inference_steps"] == 2 and out.settings["guidance_scale"] == 6.0
    assert out.settings["sampling"]["guidance"][0] == {
        "type": "classifier_free",
        "scale": 6.0,
        "audio_scale": 2.0,
        "interval": [0.0, 0.5],
    }
    assert pipe.sampling.classifier_free.scale == 4.0  # the stored config is left as it was
    # a model stored without guidance gains a term over every level from a call's scale
    pipe.sampling = sampling(pipe, guidance=())
    assert pipe("x", guidance_scale=3.0).settings["sampling"]["guidance"][0]["interval"] == [0.0, 1.0]


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
    kw = {"seed": 5, "num_inference_steps": 8}
    try:
        pipe.sampling = sampling(pipe, shift=2.0, sampler="dpmpp_2m")
        plain = pipe("a red ball", **kw)
        plain_calls = len(calls)
        pipe.sampling = sampling(pipe, restarts=2, restart_interval=(0.5, 0.8))
        twice = pipe("a red ball", **kw)
    finally:
        hook.remove()
    levels = [1.0, 0.933, 0.857, 0.769, 0.667, 0.545, 0.4, 0.222, 0.0]
    assert schedules[0] == levels
    assert schedules[1] == levels[:7] + [0.769, 0.667, 0.545, 0.4] * 2 + levels[7:]
    assert plain_calls == 8 and len(calls) - plain_calls == 8 + 2 * 3
    assert not np.array_equal(plain.frames, twice.frames)
    assert twice.settings["sampling"]["restarts"] == 2 and twice.settings["sampling"]["restart_interval"] == [0.5, 0.8]
    assert plain.settings["sampling"]["restarts"] == 0
    with pytest.raises(ValueError, match=r"restart_interval: need 0 < low < high < 1, got \[0.8, 0.5\]"):
        sampling(pipe, restart_interval=(0.8, 0.5))
    for bad in (-1, True):
        with pytest.raises(ValueError, match=r"restarts: a whole number in \[0, 8\]"):
            sampling(pipe, restarts=bad)
    with pytest.raises(ValueError, match="restart_interval: the schedule of 8 steps at shift 2 has no levels between"):
        sampling(pipe, num_inference_steps=8, restarts=1, restart_interval=(0.41, 0.44))
    with pytest.raises(ValueError, match=r"restart_interval: two numbers \[low, high\], got '0.5'"):
        sampling(pipe, restart_interval="0.5")
    pipe.save_pretrained(tmp_path / "m")
    loaded = HappyHorsePipeline.from_pretrained(tmp_path / "m")
    assert (loaded.sampling.restarts, loaded.sampling.restart_interval) == (2, (0.5, 0.8))
    assert np.array_equal(loaded("a red ball", **kw).frames, twice.frames)
    # a stored restart belongs to the stored step count: at 2 steps ([1, .67, 0]) there is no band, so the
    # clip is sampled without it and says so
    dropped = loaded("a red ball", seed=5, num_inference_steps=2)
    assert dropped.settings["sampling"]["restarts"] == 0
    loaded.sampling = sampling(loaded, restarts=0)
    assert np.array_equal(dropped.frames, loaded("a red ball", seed=5, num_inference_steps=2).frames)


def test_noise_correlation_shares_part_of_the_video_noise_over_time(pipe, tmp_path):
    """noise_correlation = rho gives every latent frame's noise a common part: correlation rho between
    frames at one place, unit variance kept; 0 leaves every seed's clip as it was; stored and checked."""
    from happyhorse.diffusion.noise import share_over_time

    seen = []
    hook = pipe.transformer.register_forward_hook(lambda m, args, out: seen.append((args[0].clone(), args[1].clone())))
    kw = {"seed": 5, "num_inference_steps": 2}
    try:
        plain = pipe("a red ball", **kw)
        again = pipe("a red ball", **kw)
        pipe.sampling = sampling(pipe, noise_correlation=0.6)
        shared = pipe("a red ball", **kw)
    finally:
        hook.remove()
    assert np.array_equal(plain.frames, again.frames) and np.array_equal(plain.audio, again.audio)
    assert shared.settings["sampling"]["noise_correlation"] == 0.6 and not np.array_equal(plain.frames, shared.frames)
    # first step (one forward per step, no guidance): the noise itself; the sound's is not touched
    assert torch.equal(seen[0][0], seen[2][0]) and not torch.equal(seen[0][0], seen[4][0])
    assert torch.equal(seen[0][1], seen[4][1])
    gen = torch.Generator().manual_seed(0)
    own = torch.randn(200, 3 * 16 * 16, 12, generator=gen)
    mixed = share_over_time(own, (3, 16, 16), 0.6, gen).reshape(200, 3, -1)
    assert abs(mixed.var().item() - 1.0) < 0.02
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert abs(torch.corrcoef(torch.stack([mixed[:, a].flatten(), mixed[:, b].flatten()]))[0, 1] - 0.6) < 0.02
    assert abs(torch.corrcoef(torch.stack([own[:, :256].flatten(), own[:, 256:512].flatten()]))[0, 1]) < 0.02
    with pytest.raises(ValueError, match=r"noise_correlation: must be a number in \[0, 1\), got 1.0"):
        sampling(pipe, noise_correlation=1.0)
    pipe.save_pretrained(tmp_path / "m")
    loaded = HappyHorsePipeline.from_pretrained(tmp_path / "m")
    assert loaded.sampling.noise_correlation == 0.6
    assert np.array_equal(loaded("a red ball", **kw).frames, shared.frames)


def _x0(pipe, guidance: float, autoguidance: float, audio_autoguidance: float | None = None, sigma: float = 0.6):
    """The guided x0 the samplers see, for a fixed noisy input of the pipeline's default clip size."""
    from happyhorse.model.positions import sequence_positions

    torch.manual_seed(11)
    video, audio = torch.randn(1, 48, 768), torch.randn(1, 30, 400)
    text, mask = pipe.text_encoder.encode(["a red ball", ""] if guidance != 1 else ["a red ball"])
    positions = sequence_positions((3, 4, 4), 30, text.shape[1], pipe.video_codec, pipe.audio_codec, 12.0)
    audio_auto = autoguidance if audio_autoguidance is None else audio_autoguidance
    terms = (ClassifierFreeGuidance(guidance, guidance), AutoGuidance(autoguidance, audio_auto))
    config = sampling(pipe, guidance=tuple(t for t in terms if t.active))
    return pipe._denoiser(config, text, mask, positions, [None, None])([video, audio], sigma)


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
    off = pipe("a red ball", seed=0, num_inference_steps=2, guidance_scale=4.0)
    pipe.sampling = sampling(pipe, guidance=(CFG4, AutoGuidance(2.0, 2.0)))
    calls = []
    hooks = [
        m.register_forward_hook(lambda m, a, o, n=n: calls.append((n, a[0].shape[0])))
        for n, m in (("model", pipe.transformer), ("guide", pipe.guide_transformer))
    ]
    try:
        out = pipe("a red ball", seed=0, num_inference_steps=2)
    finally:
        for h in hooks:
            h.remove()
    assert calls == [("model", 2), ("guide", 1)] * 2 and out.settings["sampling"]["guidance"][1]["scale"] == 2.0
    assert not np.array_equal(out.frames, off.frames)
    # the guide and the terms are saved with the model and come back
    pipe.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "guide_transformer" / "model.safetensors").is_file()
    loaded = HappyHorsePipeline.from_pretrained(tmp_path / "m")
    assert loaded.sampling.autoguidance == AutoGuidance(2.0, 2.0)
    again = loaded("a red ball", seed=0, num_inference_steps=2)
    assert np.array_equal(again.frames, out.frames) and np.array_equal(again.audio, out.audio)


def test_autoguidance_interval_runs_the_guide_only_at_the_noise_levels_inside_it(pipe, tmp_path):
    """The guide's forward is what the interval saves: outside it a step is plain CFG, inside it unchanged."""
    pipe.set_guide(tiny_pipeline(seed=5).transformer)
    calls = []
    hooks = [
        m.register_forward_hook(lambda m, a, o, n=n: calls.append(n))
        for n, m in (("model", pipe.transformer), ("guide", pipe.guide_transformer))
    ]

    def run(auto_interval):
        pipe.sampling = sampling(pipe, guidance=(CFG4, AutoGuidance(2.0, 2.0, auto_interval)))
        return pipe("a red ball", seed=0, num_inference_steps=4)  # sigmas 1, 0.75, 0.5, 0.25

    try:
        full = run((0.0, 1.0))
        assert calls == ["model", "guide"] * 4
        calls.clear()
        high = run((0.6, 1.0))
        assert calls == ["model", "guide", "model", "guide", "model", "model"]
        assert high.settings["sampling"]["guidance"][1]["interval"] == [0.6, 1.0]
        none = run((0.1, 0.2))
        pipe.sampling = sampling(pipe, guidance=(CFG4,))
        plain = pipe("a red ball", seed=0, num_inference_steps=4)
    finally:
        for h in hooks:
            h.remove()
    assert np.array_equal(none.frames, plain.frames) and np.array_equal(none.audio, plain.audio)
    assert not np.array_equal(high.frames, full.frames) and not np.array_equal(high.frames, plain.frames)
    for bad in ((0.7, 0.2), (0.0, 1.5)):
        with pytest.raises(ValueError, match=r"autoguidance.interval: need 0 <= low <= high <= 1"):
            AutoGuidance(2.0, 2.0, bad)


def test_autoguidance_refuses_a_missing_or_mismatched_guide(pipe):
    with pytest.raises(ValueError, match="sampling: autoguidance needs a guide model"):
        pipe.sampling = sampling(pipe, guidance=(AutoGuidance(2.0),))
    with pytest.raises(ValueError, match="autoguidance.scale"):
        AutoGuidance(float("inf"))
    from happyhorse.model import SingleStreamTransformer

    other = SingleStreamTransformer(
        pipe.transformer.cfg.__class__.from_dict({**pipe.transformer.cfg.to_dict(), "video_in": 96})
    )
    with pytest.raises(ValueError, match=r"guide_transformer: .*video_in \(768, got 96\)"):
        pipe.set_guide(other)
    assert pipe.guide_transformer is None


def test_sampling_configs_of_earlier_model_directories_load_and_retired_levers_are_refused():
    flat = {
        "sampler": "dpmpp_2m",
        "num_inference_steps": 7,
        "shift": 2.0,
        "guidance_scale": 5.0,
        "audio_guidance_scale": 3.0,
        "guidance_interval": [0.0, 1.0],
        "autoguidance_scale": 3.0,
        "audio_autoguidance_scale": 1.0,
        "autoguidance_interval": [0.5, 1.0],
        "guide_skip_blocks": [],
        "contrast_guidance_scale": 1.0,
        "noise_correlation": 0.2,
        "restarts": 1,
        "restart_interval": [0.5, 0.8],
    }
    config = SamplingConfig.from_dict(flat)
    assert config.guidance == (ClassifierFreeGuidance(5.0, 3.0), AutoGuidance(3.0, 1.0, (0.5, 1.0)))
    assert SamplingConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="guide_skip_blocks: a setting measured and not shipped"):
        SamplingConfig.from_dict({**flat, "guide_skip_blocks": [2]})
    with pytest.raises(ValueError, match="unknown sampling config keys"):
        SamplingConfig.from_dict({"samplr": "euler"})
    with pytest.raises(ValueError, match="sampler: must be one of euler, dpmpp_2m, renoise"):
        SamplingConfig(sampler="dpmpp_2m_sde")
    # autoguidance ran inside both intervals: where they do not meet it never ran, and does not now
    apart = SamplingConfig.from_dict({**flat, "guidance_interval": [0.0, 0.3], "autoguidance_interval": [0.5, 1.0]})
    assert apart.autoguidance is None and apart.classifier_free.interval == (0.0, 0.3)
    # contrast words stored while the contrast was off did nothing, and are read past
    assert SamplingConfig.from_dict({**flat, "contrast_swaps": [["left", "right"]]}) == config


def test_transformer_configs_of_earlier_model_directories_load():
    from happyhorse.model import TransformerConfig

    cfg = TransformerConfig.from_dict({**TransformerConfig().to_dict(), "self_conditioning": False})
    assert cfg == TransformerConfig()
    with pytest.raises(ValueError, match="self_conditioning: a setting measured and not shipped"):
        TransformerConfig.from_dict({**TransformerConfig().to_dict(), "self_conditioning": True})


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
    from happyhorse.devices import cpu_has_fast_bfloat16, resolve_device, resolve_dtype

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
        ({"fps": 0}, "fps"),
        ({"seed": -1}, "seed"),
        ({"output_type": "pil"}, "output_type"),
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
