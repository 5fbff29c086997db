"""bench/audio_token_probe.py: onset targets, the AUC, the ridge probe and the states it reads."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

spec = importlib.util.spec_from_file_location(
    "audio_token_probe", Path(__file__).resolve().parents[1] / "bench" / "audio_token_probe.py"
)
audio_token_probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(audio_token_probe)


def test_onset_targets_mark_the_token_and_the_latent_frame_an_audible_impact_starts_in():
    events = [
        {"audible": True, "audio_sample": 399},  # token 0; frame 0 at 12 fps and 16 kHz
        {"audible": True, "audio_sample": 400},  # token 1
        {"audible": False},  # a silent contact has no sample
        {"audible": True, "audio_sample": 6700},  # token 16; frame 5: latent frame 2 (frames 5-8)
        {"audible": True, "audio_sample": 10**6},  # past the end
    ]
    tokens = audio_token_probe.onset_targets(events, 20, 400)
    assert tokens.tolist() == [1, 1] + [0] * 14 + [1] + [0] * 3
    frames = audio_token_probe.latent_frame_targets(events, 4, 4, 16000, 12.0)
    assert frames.tolist() == [1, 0, 1, 0]
    one = audio_token_probe.latent_frame_targets([{"audible": True, "audio_sample": 1334}], 4, 4, 16000, 12.0)
    assert one.tolist() == [0, 1, 0, 0]  # frame 1 opens latent frame 1


def test_auc_ranks_and_ties():
    labels = np.array([0, 0, 1, 1])
    assert audio_token_probe.auc(np.array([0.1, 0.2, 0.3, 0.4]), labels) == 1.0
    assert audio_token_probe.auc(np.array([0.4, 0.3, 0.2, 0.1]), labels) == 0.0
    assert audio_token_probe.auc(np.zeros(4), labels) == 0.5
    assert audio_token_probe.auc(np.array([0.1, 0.3, 0.2, 0.4]), labels) == 0.75
    with pytest.raises(ValueError, match="both classes"):
        audio_token_probe.auc(np.arange(3.0), np.ones(3))


def test_ridge_probe_finds_a_linear_signal_and_not_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(800, 16))
    y = (x[:, 3] - x[:, 7] > 0.5).astype(np.float32)
    assert audio_token_probe.ridge_auc(x[:400], y[:400], x[400:], y[400:]) > 0.95
    noise = rng.normal(size=(800, 16))
    assert abs(audio_token_probe.ridge_auc(noise[:400], y[:400], noise[400:], y[400:]) - 0.5) < 0.1


def test_token_states_reads_every_block_and_targets_the_given_sound():
    import torch

    from happyhorse.world import WorldConfig, make_clip
    from tests.conftest import tiny_pipeline

    pipe = tiny_pipeline()
    config = WorldConfig(32, 32, 12.0, 0.75, 16000, 1)
    clip, other = make_clip(0, "test", config), make_clip(1, "test", config)
    sound, sound_y, video, video_y = audio_token_probe.token_states(pipe, clip, 0.7, 0, other)
    depth, na = len(pipe.transformer.blocks), pipe.audio_codec.num_tokens(other.audio.shape[1])
    grid_t = pipe.video_codec.latent_shape(*clip.frames.shape[:3])[0]
    assert set(sound) == {"patch", "log_energy"} | {f"block {i}" for i in range(depth)}
    assert set(video) == {"input"} | {f"block {i}" for i in range(depth)}
    assert all(v.shape[0] == na for v in sound.values()) and sound_y.shape == (na,)
    assert all(v.shape == (grid_t, pipe.transformer.cfg.dim) for v in video.values())
    events = other.meta["events"]
    assert np.array_equal(sound_y, audio_token_probe.onset_targets(events, na, pipe.audio_codec.patch))
    assert np.array_equal(video_y, audio_token_probe.latent_frame_targets(events, grid_t, 4, 16000, 12.0))
    # the sound fed is the other clip's: its patches are the sound features
    assert np.allclose(sound["patch"], pipe.audio_codec.encode(torch.from_numpy(other.audio)[None])[0])
