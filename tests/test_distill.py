"""DMD-2 distillation in the shared run loop: the loss's gradient is the normalised score difference on
generated tokens only; the teacher is guided as its model directory says; a run writes a few-step model
that loads, samples without guidance, and resumes on the same curve."""

import json

import pytest
import torch
from typer.testing import CliRunner

from happyhorse.cli import app
from happyhorse.components import Components
from happyhorse.diffusion.guidance import AutoGuidance, ClassifierFreeGuidance
from happyhorse.diffusion.sampling import SamplingConfig
from happyhorse.distill import DistillConfig, distill, dmd_loss
from happyhorse.pipeline import HappyHorsePipeline
from happyhorse.train import TrainConfig, train
from tests.conftest import TINY_RUN

TEACHER = {
    **TINY_RUN,
    "max_steps": 2,
    "warmup_steps": 1,
    "shift": 2.0,
    "sampling": {"guidance": [{"type": "classifier_free", "scale": 3.0, "audio_scale": 2.0, "interval": [0.0, 0.5]}]},
}
QUIET = {"log": lambda *a: None}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A tiny trained model, guided by classifier-free guidance below sigma 0.5 and by autoguidance (its
    own untrained start as the guide) above it."""
    out = tmp_path_factory.mktemp("teacher")
    train(TrainConfig.from_dict(TEACHER), out, **QUIET)
    parts = Components.from_pretrained(out / "model")
    guide = Components.from_pretrained(out / "model").transformer
    for p in guide.parameters():
        p.data.mul_(0.5)
    parts.guide_transformer = guide
    cfg = parts.sampling.classifier_free
    parts.sampling = SamplingConfig(shift=2.0, guidance=(cfg, AutoGuidance(2.0, 1.5, (0.5, 1.0))))
    parts.save_pretrained(out / "guided")
    return out / "guided"


def test_dmd_gradient_is_the_normalised_score_difference_on_generated_tokens():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 5, 3, generator=g).requires_grad_(True)
    real, fake = torch.randn(2, 5, 3, generator=g), torch.randn(2, 5, 3, generator=g)
    generated = torch.ones(2, 5, dtype=torch.bool)
    generated[0, :2] = False  # two given tokens in sample 0
    generated[1] = False  # sample 1: nothing generated
    loss = dmd_loss(x0, real, fake, generated)
    loss.sum().backward()
    assert loss[1] == 0 and torch.all(x0.grad[1] == 0) and torch.all(x0.grad[0, :2] == 0)
    n = 3 * 3  # generated tokens x channels of sample 0
    weight = (x0[0, 2:] - real[0, 2:]).abs().mean()
    assert torch.allclose(x0.grad[0, 2:], (fake[0, 2:] - real[0, 2:]) / weight / n, atol=1e-6)
    # where the fake denoiser leaves the output as it is, a step against the gradient moves it toward real
    x = torch.randn(1, 5, 3, generator=g).requires_grad_(True)
    dmd_loss(x, real[:1], x.detach(), torch.ones(1, 5, dtype=torch.bool)).sum().backward()
    assert (x - 0.1 * x.grad - real[:1]).norm() < (x - real[:1]).norm()
    x0.grad.zero_()
    same = dmd_loss(x0, real, real, torch.ones(2, 5, dtype=torch.bool))
    same.sum().backward()
    assert torch.all(x0.grad == 0)  # distributions already match: no update


def test_the_teacher_is_guided_as_its_sampling_config_says(teacher):
    """Classifier-free guidance for the samples below sigma 0.5, autoguidance by the guide model above,
    each with its video and audio scales: what the teacher's sampler does at those levels."""
    from happyhorse.distill.dmd import denoised, guided, prepare_conditions
    from happyhorse.train.data import StepBatches

    parts = Components.from_pretrained(teacher)
    cfg = DistillConfig(teacher=str(teacher), batch_size=2, num_workers=0)
    batch = next(iter(StepBatches(parts.world_config(), 2, 0, 0, 1)))
    cond = prepare_conditions(cfg, parts, batch, "cpu")
    g = torch.Generator().manual_seed(0)
    video = torch.randn(*cond.video_clean.shape, parts.video_codec.latent_dim, generator=g)
    audio = torch.randn(*cond.audio_clean.shape, parts.audio_codec.latent_dim, generator=g)
    sigma = torch.tensor([0.3, 0.9])
    model, guide = parts.transformer.eval(), parts.guide_transformer.eval()
    with torch.no_grad():
        got = guided(model, guide, parts.sampling, video, audio, cond, sigma)
        c = denoised(model, video, audio, cond, sigma)
        u = [x[2:] for x in denoised(model, video, audio, cond, sigma, uncond=True)]
        w = denoised(guide, video, audio, cond, sigma)
    for k, (scale, auto) in enumerate(((3.0, 2.0), (2.0, 1.5))):  # video, audio
        torch.testing.assert_close(got[k][0], u[k][0] + scale * (c[k][0] - u[k][0]), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(got[k][1], c[k][1] + (auto - 1) * (c[k][1] - w[k][1]), atol=1e-5, rtol=1e-4)
        assert not torch.allclose(got[k][1], c[k][1])
    with torch.no_grad():  # under bfloat16 autocast: float32 x0s, close to float32's, not equal
        rounded = guided(model, guide, parts.sampling, video, audio, cond, sigma, autocast=True)
    for k in (0, 1):
        assert rounded[k].dtype == torch.float32 and not torch.equal(rounded[k], got[k])
        assert (rounded[k] - got[k]).abs().mean() < 0.05 * got[k].abs().mean()
    with pytest.raises(ValueError, match="precision must be auto, float32 or bfloat16"):
        DistillConfig(precision="half")


def test_distillation_writes_a_few_step_model_and_resumes_on_the_same_curve(teacher, tmp_path):
    cfg = DistillConfig(teacher=str(teacher), student_steps=2, batch_size=2, fake_updates=2, lr=1e-4,
                        fake_lr=1e-4, max_steps=4, log_every=1, checkpoint_every=2, num_workers=0)  # fmt: skip
    whole = distill(cfg, tmp_path / "whole", **QUIET)
    assert whole["step"] == 4
    distill(cfg, tmp_path / "split", max_steps=2, **QUIET)
    resumed = distill(cfg, tmp_path / "split", resume=True, **QUIET)
    assert resumed["step"] == 4
    a = [json.loads(x) for x in (tmp_path / "whole" / "log.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b, strict=True):
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-4) and ra["fake_loss"] == pytest.approx(rb["fake_loss"])
    longer = distill(cfg, tmp_path / "split", resume=True, max_steps=5, **QUIET)  # a finished run extended
    assert longer["step"] == 5 and len((tmp_path / "split" / "log.jsonl").read_text().splitlines()) == 5
    assert distill(cfg, tmp_path / "split", resume=True, max_steps=5, **QUIET)["step"] == 5  # nothing to do
    saved = {p.name for p in (tmp_path / "whole" / "checkpoint").iterdir()}
    assert {"fake.safetensors", "optimizer_fake.safetensors"} <= saved
    assert (tmp_path / "whole" / "loss.png").is_file()
    with pytest.raises(ValueError, match="teacher itself"):
        distill(DistillConfig(teacher=str(tmp_path / "whole" / "model")), tmp_path / "whole", **QUIET)
    student = Components.from_pretrained(tmp_path / "whole" / "model")
    assert student.sampling == SamplingConfig(sampler="renoise", num_inference_steps=2, shift=2.0, guidance=())
    assert student.guide_transformer is None and not (tmp_path / "whole" / "model" / "guide_transformer").exists()
    before = Components.from_pretrained(teacher).transformer.state_dict()
    after = student.transformer.state_dict()
    assert any(not torch.allclose(before[k], after[k]) for k in before)  # the student moved
    result = HappyHorsePipeline.from_pretrained(tmp_path / "whole" / "model")("a red ball falls", seed=0)
    assert result.settings["num_inference_steps"] == 2 and result.frames.shape[1:] == (9, 32, 32, 3)
    assert result.audio.shape[-1] > 0 and result.settings["guidance_scale"] == 1.0
    # the teacher's classifier-free scales may be overridden, through the one sampling validator
    tuned = DistillConfig(teacher=str(teacher), guidance_scale=5.0)
    sampling = Components.from_pretrained(teacher).sampling.with_overrides(None, tuned.guidance_scale, None)
    assert sampling.classifier_free == ClassifierFreeGuidance(5.0, 2.0, (0.0, 0.5))


def test_distill_command_checks_its_arguments(tmp_path):
    runner = CliRunner(env={"COLUMNS": "300"})
    result = runner.invoke(app, ["distill", "--teacher", str(tmp_path), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "not a model directory" in result.output
    result = runner.invoke(app, ["distill", "--steps", "0", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "--steps" in result.output
    result = runner.invoke(app, ["distill", "--precision", "fp8", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "--precision" in result.output and not (tmp_path / "r").exists()
    with pytest.raises(ValueError, match="sigma_min"):
        DistillConfig(sigma_min=0.5, sigma_max=0.4)
    with pytest.raises(ValueError, match="guidance_scale: must be a number in"):
        DistillConfig(guidance_scale=40.0)
