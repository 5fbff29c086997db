"""bench/audio_contrast_gap.py: the video error it compares is the training term's, and a model deaf
to the sound shows no gap."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from happyhorse.pipeline import build_pipeline
from happyhorse.train import TrainConfig
from happyhorse.train.trainer import StepBatches, build_run_pipeline, prepare_step, step_loss
from happyhorse.world import WorldConfig, make_clip

spec = importlib.util.spec_from_file_location(
    "audio_contrast_gap", Path(__file__).resolve().parents[1] / "bench" / "audio_contrast_gap.py"
)
audio_contrast_gap = importlib.util.module_from_spec(spec)
spec.loader.exec_module(audio_contrast_gap)

SMALL = {"dim": 64, "depth": 2, "heads": 2, "kv_heads": 1, "mlp_hidden": 128}
WORLD = WorldConfig(32, 32, 12.0, 9 / 12, 16000, 1)


def test_the_video_error_is_the_flow_loss_training_uses_times_sigma_squared():
    """Same clips, sound, noise and noise level: the bench's x0 error is the trainer's per-sample
    video flow loss (a velocity error, x0's over sigma) times sigma squared."""
    cfg = TrainConfig.from_dict(
        {"model": "tiny", "model_overrides": SMALL, "text_encoder": "hash", "width": 32, "height": 32,
         "num_frames": 9, "batch_size": 3, "p_audio": 1.0, "p_image": 0.0, "text_dropout": 0.0}
    )  # fmt: skip
    pipe = build_run_pipeline(cfg)
    batch = next(iter(StepBatches(cfg, 0, 1)))
    clips = [make_clip(i, "test", WORLD, ground_truth=False) for i in range(3)]
    stack = lambda key: torch.from_numpy(np.stack([getattr(c, key) for c in clips]))  # noqa: E731
    batch = {**batch, "video": stack("frames"), "audio": stack("audio"), "captions": [c.caption for c in clips]}
    x = prepare_step(cfg, pipe, batch, "cpu")
    sigma = 0.8
    noise = torch.randn(x.video_noise.shape, generator=torch.Generator().manual_seed(5))
    x.sigma, x.video_noise = torch.full((3,), sigma), noise
    x.video_t = (1 - sigma) * x.video_x0 + sigma * noise
    with torch.no_grad():
        flow = step_loss(pipe.transformer.eval(), x, cfg, "x0")[1]["video"].numpy()
    errors = audio_contrast_gap.video_errors(pipe, clips, np.stack([c.audio for c in clips]), sigma, 5)
    np.testing.assert_allclose(errors, flow * sigma**2, rtol=1e-4)


def test_a_model_deaf_to_the_sound_shows_no_gap_and_one_that_hears_it_does():
    pipe = build_pipeline("tiny", text_encoder="hash", video_patch=(4, 4, 4), **SMALL)
    with torch.no_grad():
        for p in pipe.transformer.video_out.parameters():  # the zero-initialised head: predict something
            p.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
    heard = audio_contrast_gap.contrast_gaps(pipe, WORLD, 0, 6, 0.25, 0.9)
    assert np.abs(heard).max() > 1e-4  # a random model reads its input, the sound with it
    with torch.no_grad():
        pipe.transformer.audio_in.weight.zero_()
    deaf = audio_contrast_gap.contrast_gaps(pipe, WORLD, 0, 6, 0.25, 0.9)
    assert np.array_equal(deaf, np.zeros(6))
    summary = audio_contrast_gap.summarise(np.array([0.1, -0.2, 0.3, 0.0]))
    assert summary == pytest.approx({"own_better": 0.5, "mean_gap": 0.05, "median_gap": 0.05, "clips": 4})


def test_fitting_one_batch_widens_its_gap(tmp_path):
    """--fit: the term, descended on one batch, makes that batch's own sound predict its video better."""
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(
        'model = "tiny"\ntext_encoder = "hash"\nwidth = 32\nheight = 32\nnum_frames = 9\nbatch_size = 8\n'
        "p_audio = 1.0\np_image = 0.0\naudio_contrast_weight = 10.0\nlr = 1e-3\n"
        "model_overrides = { dim = 64, depth = 2, heads = 2, kv_heads = 1, mlp_hidden = 128 }\n"
    )
    from happyhorse.train import load_config

    build_run_pipeline(load_config(str(recipe))).save_pretrained(tmp_path / "model")
    lines = []
    rows = audio_contrast_gap.fit_one_batch(
        str(recipe), str(tmp_path / "model"), 15, 0.9, log=lambda *a, **k: lines.append(a)
    )
    assert [r["step"] for r in rows] == [0, 10, 15] and len(lines) == 3
    assert rows[-1]["fitted"]["mean_gap"] > rows[0]["fitted"]["mean_gap"] + 0.05
    assert 0 < rows[0]["fitted"]["clips"] <= 8 and 0 < rows[0]["next"]["clips"] <= 8  # clips with an impact
    plain = tmp_path / "plain.toml"
    plain.write_text(recipe.read_text().replace("audio_contrast_weight = 10.0", ""))
    with pytest.raises(SystemExit, match="audio_contrast_weight"):
        audio_contrast_gap.fit_one_batch(str(plain), str(tmp_path / "model"), 1, 0.9)
