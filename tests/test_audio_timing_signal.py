"""bench/audio_timing_signal.py: the delayed soundtrack, and matching impacts against each soundtrack."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from happyhorse.world import WorldConfig, make_clip

spec = importlib.util.spec_from_file_location(
    "audio_timing_signal", Path(__file__).resolve().parents[1] / "bench" / "audio_timing_signal.py"
)
audio_timing_signal = importlib.util.module_from_spec(spec)
spec.loader.exec_module(audio_timing_signal)


def test_delayed_sound_is_the_same_length_with_silence_in_front():
    audio = np.arange(1, 11, dtype=np.float32)[None]
    later = audio_timing_signal.delayed(audio, 3)
    assert later.shape == audio.shape
    assert np.all(later[0, :3] == 0) and np.array_equal(later[0, 3:], audio[0, :7])
    assert not audio_timing_signal.delayed(audio, 10).any()  # the whole length later: silence
    for bad in (-1, 11):
        with pytest.raises(ValueError, match="delay"):
            audio_timing_signal.delayed(audio, bad)


def test_true_impacts_match_their_own_sound_and_not_the_delayed_one():
    """The world's own clips are the probe's ceiling: their impacts sit on their sound's onsets, and a
    sound 3 frames later misses most of them (this is what a model that follows the sound would copy)."""
    config = WorldConfig(64, 64, 12.0, 25 / 12, 16000, 1)
    own, late = [], []
    for seed in range(6):
        clip = make_clip(seed, "test", config)
        impacts = audio_timing_signal.impact_times(clip.frames, clip.meta["facts"], clip.fps)
        later = audio_timing_signal.delayed(clip.audio, round(3 / 12 * 16000))
        own += audio_timing_signal.within_one_frame(impacts, clip.audio, 16000, 12.0)
        late += audio_timing_signal.within_one_frame(impacts, later, 16000, 12.0)
    assert len(own) >= 6
    assert np.mean(own) > 0.9 and np.mean(late) < np.mean(own) - 0.3


def test_summary_pools_impacts_and_measures_the_shift_of_the_median_impact():
    rows = [
        {
            "frame_change": 1.0,
            "own_impacts": [0.5, 1.0],
            "delayed_impacts": [0.75, 1.25],
            **{key: [True, False] for key in ("own_vs_own", "delayed_vs_delayed", "truth_vs_own")},
            **{key: [False, False] for key in ("own_vs_delayed", "delayed_vs_own", "truth_vs_delayed")},
        },
        {
            "frame_change": 3.0,
            "own_impacts": [],
            "delayed_impacts": [0.3],
            **{key: [] for key in ("own_vs_own", "own_vs_delayed", "truth_vs_own", "truth_vs_delayed")},
            **{key: [True] for key in ("delayed_vs_delayed", "delayed_vs_own")},
        },
    ]
    s = audio_timing_signal.summarise(rows, 0.25)
    assert s["own_video_vs_own_sound"] == 0.5 and s["delayed_video_vs_delayed_sound"] == 2 / 3
    assert s["delayed_video_vs_own_sound"] == 1 / 3 and s["own_video_vs_delayed_sound"] == 0.0
    assert s["shift_clips"] == 1 and abs(s["median_impact_shift_s"] - 0.25) < 1e-12
    assert s["mean_frame_change"] == 2.0


def test_noised_sound_feeds_the_given_sound_noised_to_each_steps_level():
    import torch

    from happyhorse.diffusion import get_schedule
    from tests.conftest import tiny_pipeline

    pipe = tiny_pipeline()
    sound = (np.sin(np.arange(16000) / 5.0).astype(np.float32)[None] * 0.5, 16000)
    seen = []  # (audio tokens, audio_clean mask) of each model call's first row
    pipe.transformer.register_forward_pre_hook(lambda m, args: seen.append((args[1][0].clone(), args[6][0].clone())))
    plain = pipe("a red ball", audio=sound, seed=0, seconds=1.0, num_inference_steps=2)
    clean_audio, clean_mask = seen[0]
    assert clean_mask.any()  # the pipeline hands the sound over clean (its whole patches; the tail is generated)
    seen.clear()
    with audio_timing_signal.noised_sound(pipe):
        noised = pipe("a red ball", audio=sound, seed=0, seconds=1.0, num_inference_steps=2)
    (first, first_mask), (second, second_mask) = seen
    s = get_schedule(2, pipe.scheduler.shift)[1]
    assert not first_mask.any() and not second_mask.any()  # marked as noisy, like a generated sound
    n = int(clean_mask.sum())  # tokens of given sound; at sigma 1 they are the sample's own noise
    torch.testing.assert_close(second[:n], (1 - s) * clean_audio[:n] + s * first[:n])
    assert not torch.equal(first[:n], clean_audio[:n])
    assert not np.array_equal(noised.frames, plain.frames)
    k = sound[0].shape[1]  # the output keeps the given sound either way (the tail past it is generated)
    assert np.array_equal(noised.audio[..., :k], plain.audio[..., :k])


def test_noised_sound_restores_the_pipeline_even_after_an_error():
    from happyhorse import pipeline
    from tests.conftest import tiny_pipeline

    pipe = tiny_pipeline()
    sample = pipeline.sample
    with pytest.raises(RuntimeError), audio_timing_signal.noised_sound(pipe):
        raise RuntimeError("inside")
    assert pipeline.sample is sample and "_denoiser" not in vars(pipe)


def test_reconstruction_guidance_moves_the_video_down_the_sound_error_gradient(monkeypatch):
    """Two euler steps: the first (sigma 1) is unguided, the second's x0 is the output. Its change from
    the unguided output is linear in the weight, and a small move of the noisy video along it lowers the
    error of the model's own prediction of the given sound: reconstruction guidance descends that error.
    The sound covers half the clip, so the pass must noise only the given tokens and score only them."""
    import torch

    from happyhorse import pipeline
    from happyhorse.diffusion import get_schedule, predicted_x0
    from tests.conftest import tiny_pipeline

    pipe = tiny_pipeline()
    sound = (np.sin(np.arange(6000) / 5.0).astype(np.float32)[None] * 0.5, 16000)
    latents, calls, noises = [], [], []
    decode = pipe.video_codec.decode
    pipe.video_codec.decode = lambda z: latents.append(z.clone()) or decode(z)
    pipe.transformer.register_forward_pre_hook(lambda m, args: calls.append([a.detach().clone() for a in args]))
    initial_noise = pipeline.initial_noise
    monkeypatch.setattr(pipeline, "initial_noise", lambda *a: noises.append(initial_noise(*a)) or noises[-1])
    run = dict(audio=sound, seconds=0.75, seed=0, num_inference_steps=2, sampler="euler", guidance_scale=1.0)
    plain = pipe("a red ball", **run)
    for scale in (1.0, 2.0):
        calls.clear()
        with audio_timing_signal.reconstruction_guidance(pipe, scale):
            guided = pipe("a red ball", **run)
    plain_z, one, two = latents
    step = one - plain_z
    assert step.abs().max() > 0
    torch.testing.assert_close(two - plain_z, 2 * step, rtol=1e-3, atol=1e-6)
    assert np.array_equal(guided.audio[..., :6000], plain.audio[..., :6000])  # the given sound is kept

    # calls: step 1's pass (no gradient pass at sigma 1), step 2's pass, then its gradient pass
    assert len(calls) == 3
    current = calls[1][1]  # the sound latents as sampling has them at step 2 (given tokens clean)
    video, sound_in, text, text_mask, positions, video_clean, sound_clean = calls[2][:7]
    given = calls[1][6]  # the pipeline's mask of given sound tokens
    assert given.any() and not given.all()
    assert not sound_clean.any()  # the gradient pass shows the sound as noisy
    s = get_schedule(2, pipe.scheduler.shift)[1]
    z = current  # on given tokens the sampler keeps the clean given latents
    noised = (1 - s) * z + s * noises[-1][1]
    torch.testing.assert_close(sound_in[given], noised[given])
    torch.testing.assert_close(sound_in[~given], current[~given])

    def sound_error(v):  # the error over the given tokens only
        out = pipe.transformer(v, sound_in, text, text_mask, positions, video_clean, sound_clean)
        own = predicted_x0(out.audio.float(), sound_in, torch.tensor(s), pipe.transformer.cfg.prediction)
        return (((own - z) ** 2) * given[..., None]).sum()

    direction = step.reshape(video.shape) / step.norm()
    with torch.no_grad():
        assert sound_error(video + 1e-2 * direction) < sound_error(video)
    leaf = video.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(sound_error(leaf), leaf)
    torch.testing.assert_close(step.reshape(video.shape), -(1 - s) / 2 * gradient, rtol=1e-3, atol=1e-7)


def test_reconstruction_guidance_reads_the_prompt_not_the_empty_prompt():
    """With classifier-free guidance the text rows are [prompts | empty prompts]: the gradient pass
    takes the prompts'."""
    from tests.conftest import tiny_pipeline

    pipe = tiny_pipeline()
    calls = []
    pipe.transformer.register_forward_pre_hook(lambda m, args: calls.append([a.detach().clone() for a in args]))
    sound = (np.sin(np.arange(12000) / 5.0).astype(np.float32)[None] * 0.5, 16000)
    with audio_timing_signal.reconstruction_guidance(pipe, 1.0):
        pipe("a red ball", audio=sound, seed=0, num_inference_steps=2, sampler="euler", guidance_scale=3.0)
    guided_pass, gradient_pass = calls[-2], calls[-1]
    assert guided_pass[2].shape[0] == 2 and gradient_pass[2].shape[0] == 1
    assert np.array_equal(gradient_pass[2].numpy(), guided_pass[2][:1].numpy())
    assert not np.array_equal(gradient_pass[2].numpy(), guided_pass[2][1:].numpy())


def test_reconstruction_guidance_leaves_t2v_alone_and_restores_the_pipeline():
    from happyhorse import pipeline
    from tests.conftest import tiny_pipeline

    pipe = tiny_pipeline()
    plain = pipe("a red ball", seed=3)
    with audio_timing_signal.reconstruction_guidance(pipe, 100.0):
        guided = pipe("a red ball", seed=3)
    assert np.array_equal(plain.frames, guided.frames)  # no given sound: nothing to reconstruct
    sample = pipeline.sample
    with pytest.raises(RuntimeError), audio_timing_signal.reconstruction_guidance(pipe, 1.0):
        raise RuntimeError("inside")
    assert pipeline.sample is sample and "_denoiser" not in vars(pipe)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="reconstruction"), audio_timing_signal.reconstruction_guidance(pipe, bad):
            pass


def test_flat_reconstruction_weight_also_guides_the_pure_noise_step():
    """One euler step from sigma 1: Ho et al.'s weight (1 - s) is zero there, so the clip is the plain
    one; the flat weight pushes it."""
    from tests.conftest import tiny_pipeline

    pipe = tiny_pipeline()
    sound = (np.sin(np.arange(12000) / 5.0).astype(np.float32)[None] * 0.5, 16000)
    run = dict(audio=sound, seed=0, num_inference_steps=1, sampler="euler", guidance_scale=1.0)
    plain = pipe("a red ball", **run)
    with audio_timing_signal.reconstruction_guidance(pipe, 1000.0):
        ho = pipe("a red ball", **run)
    with audio_timing_signal.reconstruction_guidance(pipe, 1000.0, flat=True):
        flat = pipe("a red ball", **run)
    assert np.array_equal(ho.frames, plain.frames)
    assert not np.array_equal(flat.frames, plain.frames)
