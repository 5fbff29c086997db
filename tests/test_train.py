"""Training: overfitting one clip, exact resume, DDP gradients equal to one process, CLI end to end."""

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from happyhorse.cli import app
from happyhorse.media import read_video
from happyhorse.pipeline import HappyHorsePipeline
from happyhorse.train import TrainConfig, load_config, train
from happyhorse.train.trainer import StepBatches, build_run_pipeline, lr_at, prepare_step, step_loss, token_sigmas

SMALL = {
    "model": "tiny",
    "model_overrides": {"dim": 64, "depth": 2, "heads": 2, "kv_heads": 1, "mlp_hidden": 128},
    "text_encoder": "hash",
    "width": 32,
    "height": 32,
    "num_frames": 9,
    "batch_size": 2,
    "num_workers": 0,
    "warmup_steps": 2,
    "log_every": 1,
    "sample_every": 0,
    "checkpoint_every": 1000,
    "precision": "float32",  # exact comparisons across processes and resumes; bfloat16 has its own test
}


def test_tiny_model_overfits_one_clip():
    """Loss on fixed noise draws of one clip (32 draws, all noise levels) falls >= 10x in 150 steps."""
    cfg = TrainConfig.from_dict({**SMALL, "batch_size": 8, "text_dropout": 0.0, "p_image": 0.0, "p_audio": 0.0})
    pipe = build_run_pipeline(cfg)
    model = pipe.transformer.train()
    batch = next(iter(StepBatches(cfg, 0, 1)))

    def one_clip(t):
        return t[:1].expand(8, *t.shape[1:])

    batch.update(video=one_clip(batch["video"]), audio=one_clip(batch["audio"]), captions=batch["captions"][:1] * 8)

    def held_out_loss():
        with torch.no_grad():
            draws = [prepare_step(cfg, pipe, {**batch, "step": 10**6 + k}, "cpu") for k in range(4)]
            return np.mean([step_loss(model, d, cfg, "x0")[0].item() for d in draws])

    before = held_out_loss()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(150):
        loss, _ = step_loss(model, prepare_step(cfg, pipe, {**batch, "step": step}, "cpu"), cfg, "x0")
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = held_out_loss()
    assert after < before / 10, (before, after)
    # and the pipeline, sampling from pure noise, draws that clip: training and sampling agree
    model.eval()
    clip = batch["video"][0].numpy().astype(float)
    out = pipe(batch["captions"][0], seed=1, num_inference_steps=12)
    error, baseline = np.abs(out.frames[0] - clip).mean(), np.abs(clip.mean((0, 1, 2)) - clip).mean()
    assert error < 0.6 * baseline, (error, baseline)  # measured: 24 vs 43 grey levels after 150 steps


def test_bfloat16_precision_computes_the_forward_in_it_and_keeps_the_loss_and_gradients_float32():
    from happyhorse.pipeline import cpu_has_fast_bfloat16
    from happyhorse.train.trainer import autocasts

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    exact, half = TrainConfig.from_dict(SMALL), TrainConfig.from_dict({**SMALL, "precision": "bfloat16"})
    auto = TrainConfig.from_dict({**SMALL, "precision": "auto"})
    assert (autocasts(exact, cpu), autocasts(exact, cuda), autocasts(half, cpu)) == (False, False, True)
    assert autocasts(auto, cpu) == cpu_has_fast_bfloat16() and autocasts(auto, cuda)
    with pytest.raises(ValueError, match="precision must be auto, float32 or bfloat16"):
        TrainConfig.from_dict({**SMALL, "precision": "float16"})
    pipe = build_run_pipeline(exact)
    model = pipe.transformer.train()
    for head in (model.video_out, model.audio_out):  # zero at initialisation: every dtype would agree
        torch.nn.init.normal_(head.weight, std=0.05)
    x = prepare_step(exact, pipe, next(iter(StepBatches(exact, 0, 1))), "cpu")
    loss32, _ = step_loss(model, x, exact, model.cfg.prediction)
    loss16, _ = step_loss(model, x, half, model.cfg.prediction)
    assert loss16.dtype == torch.float32 and loss16.item() != loss32.item()
    assert abs(loss16.item() - loss32.item()) < 0.02 * loss32.item()
    loss16.backward()
    assert {p.grad.dtype for p in model.parameters() if p.grad is not None} == {torch.float32}


def test_resume_continues_the_same_curve(tmp_path):
    cfg = TrainConfig.from_dict(SMALL)
    straight = train(cfg, tmp_path / "a", max_steps=6, progress=False, log=lambda *a: None)
    train(cfg, tmp_path / "b", max_steps=3, progress=False, log=lambda *a: None)
    # a run saved before `precision` existed ran in float32 on the CPU, and resumes so, whatever CONFIG says
    saved = json.loads((tmp_path / "b" / "config.json").read_text())
    assert saved.pop("precision") == "float32"
    (tmp_path / "b" / "config.json").write_text(json.dumps(saved))
    later = TrainConfig.from_dict({**SMALL, "precision": "bfloat16"})
    resumed = train(later, tmp_path / "b", resume=True, max_steps=6, progress=False, log=lambda *a: None)
    assert straight["step"] == resumed["step"] == 6
    log_a = [json.loads(x) for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log_b] == [1, 2, 3, 4, 5, 6]
    assert all(0 <= r["data_wait"] <= 1 for r in log_a + log_b)  # num_workers 0: clips are made in the wait
    assert max(r["data_wait"] for r in log_a) > 0
    np.testing.assert_allclose([r["loss"] for r in log_a], [r["loss"] for r in log_b], rtol=1e-5)
    a = load_file(str(tmp_path / "a" / "checkpoint" / "ema.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoint" / "ema.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)


def test_a_wall_budget_spent_before_the_first_log_record_still_saves_the_run(tmp_path):
    cfg = TrainConfig.from_dict({**SMALL, "log_every": 1000})
    summary = train(cfg, tmp_path, max_steps=50, minutes=0.0, progress=False, log=lambda *a: None)
    assert summary["step"] == 1 and summary["log"] is None  # out of time after the first step
    assert json.loads((tmp_path / "checkpoint" / "state.json").read_text())["step"] == 1
    assert not (tmp_path / "loss.png").exists()  # nothing to plot, and no crash for it


DDP_SCRIPT = """
import os, sys, torch, torch.distributed as dist
from safetensors.torch import save_file
from happyhorse.train.trainer import StepBatches, build_run_pipeline, lr_at, prepare_step, step_loss, token_sigmas
from happyhorse.train import TrainConfig
import copy
import json
cfg = TrainConfig.from_dict(json.loads(sys.argv[1]))
out = sys.argv[2]
ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
if ddp:
    dist.init_process_group("gloo")
rank, world = (dist.get_rank(), dist.get_world_size()) if ddp else (0, 1)
torch.set_num_threads(1)
pipe = build_run_pipeline(cfg)
model = pipe.transformer.train()
if model.cfg.self_conditioning:  # non-zero heads and inputs, so that the estimate's first pass counts
    torch.manual_seed(3)
    for m in (model.video_out, model.audio_out, model.video_self_in, model.audio_self_in):
        torch.nn.init.normal_(m.weight, std=0.05)
wrapped = torch.nn.parallel.DistributedDataParallel(model) if ddp else model
batch = next(iter(StepBatches(cfg, 5, 6, rank, world)))
loss, _ = step_loss(wrapped, prepare_step(cfg, pipe, batch, "cpu"), cfg, model.cfg.prediction)
loss.backward()
if rank == 0:
    save_file({n: p.grad.contiguous() for n, p in model.named_parameters() if p.grad is not None}, out)
if ddp:
    dist.barrier()  # both ranks leave together: gloo aborts a rank torn down while its peer still works
    dist.destroy_process_group()
"""


def free_port() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


@pytest.mark.parametrize("contrast, self_conditioning", [(0.0, False), (1.0, False), (1.0, True)])
def test_ddp_on_two_processes_matches_one_process_gradients(tmp_path, contrast, self_conditioning):
    """With the audio contrast too: its second predictions share the step's one forward pass; and with
    self-conditioning, whose gradient-free first pass runs on the wrapped model's own module."""
    script = tmp_path / "grad.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cfg = {**SMALL, "p_image": 0.5, "p_audio": 0.5, "audio_contrast_weight": contrast, "audio_contrast_min_sigma": 0.0}
    cfg["model_overrides"] = {**SMALL["model_overrides"], "self_conditioning": self_conditioning}
    single = subprocess.run(
        [sys.executable, str(script), json.dumps({**cfg, "batch_size": 4}), str(tmp_path / "one.safetensors")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert single.returncode == 0, single.stderr
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", free_port()]
    ddp = subprocess.run(
        [*torchrun, str(script), json.dumps({**cfg, "batch_size": 2}), str(tmp_path / "two.safetensors")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one, two = load_file(str(tmp_path / "one.safetensors")), load_file(str(tmp_path / "two.safetensors"))
    assert one.keys() == two.keys() and len(one) > 10
    assert not self_conditioning or one["video_self_in.weight"].abs().sum() > 0  # the estimate was read
    for key in one:
        torch.testing.assert_close(two[key], one[key], atol=1e-6, rtol=1e-4)


def test_loader_workers_deliver_each_step_once_in_order():
    """Two workers share the steps (each renders every other one); the loader's batches come in order."""
    from torch.utils.data import DataLoader

    cfg = TrainConfig(**{**SMALL, "batch_size": 2})
    one = list(DataLoader(StepBatches(cfg, 3, 8), batch_size=None, num_workers=0))
    two = list(DataLoader(StepBatches(cfg, 3, 8), batch_size=None, num_workers=2))
    assert [b["step"] for b in two] == [3, 4, 5, 6, 7]
    for a, b in zip(one, two, strict=True):
        assert a["captions"] == b["captions"] and torch.equal(a["video"], b["video"])


def test_clip_repeats_show_each_clip_at_several_noise_levels():
    cfg = TrainConfig(**{**SMALL, "batch_size": 4, "clip_repeats": 2})
    pipe = build_run_pipeline(cfg)
    batch = next(iter(StepBatches(cfg, 0, 1)))
    assert batch["captions"][0] == batch["captions"][1] != batch["captions"][2] == batch["captions"][3]
    assert torch.equal(batch["video"][0], batch["video"][1]) and not torch.equal(batch["video"][1], batch["video"][2])
    inputs = prepare_step(cfg, pipe, batch, "cpu")
    assert inputs.sigma[0] != inputs.sigma[1]  # same clip, its own noise level and noise
    assert not torch.equal(inputs.video_noise[0], inputs.video_noise[1])
    with pytest.raises(ValueError, match="clip_repeats"):
        TrainConfig(**{**SMALL, "batch_size": 4, "clip_repeats": 3})


def test_noise_correlation_trains_on_noise_shared_over_time():
    """With noise_correlation R, each sample's video noise keeps unit variance and shares a part of
    variance R over its latent frames (as sampling with R starts from); R = 0 draws the same noise as
    before, and the run's model samples with R by default."""
    cfg = TrainConfig(**{**SMALL, "batch_size": 4})
    shared = TrainConfig(**{**SMALL, "batch_size": 4, "noise_correlation": 0.5})
    pipe = build_run_pipeline(cfg)
    batch = next(iter(StepBatches(cfg, 0, 1)))
    plain, corr = prepare_step(cfg, pipe, batch, "cpu"), prepare_step(shared, pipe, batch, "cpu")
    assert torch.equal(plain.sigma, corr.sigma) and torch.equal(plain.audio_noise, corr.audio_noise)
    grid = pipe.video_codec.latent_shape(*batch["video"].shape[1:4])
    assert grid[0] >= 3
    frames = corr.video_noise.reshape(4, grid[0], -1)  # [B, t, h*w*C]
    between = torch.stack([torch.corrcoef(torch.stack([f[0], f[i]]))[0, 1] for f in frames for i in (1, 2)])
    assert 0.4 < between.mean() < 0.6 and 0.9 < corr.video_noise.var() < 1.1
    frames0 = plain.video_noise.reshape(4, grid[0], -1)
    assert torch.stack([torch.corrcoef(f[:2])[0, 1] for f in frames0]).abs().max() < 0.1
    assert build_run_pipeline(shared).scheduler.noise_correlation == 0.5
    with pytest.raises(ValueError, match="noise_correlation must be in"):
        TrainConfig(**{**SMALL, "noise_correlation": 1.0})


OTHER_SIDE = {"left": "right", "right": "left"}


def test_mirror_pairs_show_each_clip_and_its_mirror_with_left_and_right_exchanged():
    from dataclasses import replace

    from happyhorse.world import WorldConfig, make_clip

    cfg = TrainConfig(**{**SMALL, "batch_size": 8, "clip_repeats": 2, "mirror_pairs": True, "channels": 2})
    plain = TrainConfig(**{**cfg.__dict__, "mirror_pairs": False})
    batches = list(StepBatches(cfg, 0, 6))
    swapped = 0
    for batch, unmirrored in zip(batches, StepBatches(plain, 0, 6), strict=True):
        video, audio, captions = batch["video"], batch["audio"], batch["captions"]
        for k in (0, 4):  # clips 0 and 2 are the world's (those of the plain run); 1 and 3 their mirrors
            assert captions[k] == unmirrored["captions"][k] and torch.equal(video[k], unmirrored["video"][k])
            assert torch.equal(video[k + 2], video[k].flip(2)) and torch.equal(audio[k + 2], audio[k].flip(0))
            assert captions[k + 2] == captions[k + 3] and torch.equal(video[k + 2], video[k + 3])  # repeats
            mirror = re.sub(r"\b(left|right)\b", lambda m: OTHER_SIDE[m.group(0)], captions[k])
            assert captions[k + 2] == mirror
            swapped += captions[k] != mirror
        assert not torch.equal(video[0], video[4])
    assert swapped >= 3  # most captions name a direction, so most mirrors say the other one
    world = WorldConfig(32, 32, 12.0, 9 / 12, 16000, 1)
    clip = make_clip(5, "train", world, ground_truth=False, object_coverage=True)
    from happyhorse.train.trainer import OBJECT_COVERAGE, mirrored

    back = mirrored(mirrored(clip))
    assert back.caption == clip.caption and np.array_equal(back.frames, clip.frames)
    assert np.array_equal(mirrored(clip).meta[OBJECT_COVERAGE], clip.meta[OBJECT_COVERAGE][..., ::-1])
    stereo = make_clip(5, "train", replace(world, channels=2), ground_truth=False, sound_shift_s=0.2)
    moved = stereo.meta["shifted_audio"]  # the contrast's moved sound is panned with the mirror too
    assert np.array_equal(mirrored(stereo).meta["shifted_audio"], moved[::-1]) and not np.array_equal(
        moved[0], moved[1]
    )
    with pytest.raises(ValueError, match="mirror_pairs needs an even number of clips a step"):
        TrainConfig(**{**SMALL, "batch_size": 6, "clip_repeats": 2, "mirror_pairs": True})


def test_cool_down_from_a_resumed_step_ends_the_run_at_a_low_rate(tmp_path):
    cfg = TrainConfig.from_dict({**SMALL, "max_steps": 100, "warmup_steps": 2})
    train(cfg, tmp_path, max_steps=4, progress=False, log=lambda *a: None)
    summary = train(cfg, tmp_path, resume=True, anneal_steps=3, progress=False, log=lambda *a: None)
    assert summary["step"] == 7  # 4 + 3: the cool-down ends the run
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["anneal_from"] == 4 and saved["anneal_steps"] == 3
    rates = [json.loads(x)["lr"] for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert rates[3] > rates[4] > rates[5] > rates[6] and rates[6] > 0.02 * cfg.lr
    done = TrainConfig.from_dict(saved)
    assert lr_at(done, 7) == pytest.approx(0.02 * cfg.lr) and lr_at(done, 3) == lr_at(cfg, 3)


def test_config_files_and_presets(tmp_path):
    assert load_config("tiny").text_encoder == "hash"
    path = tmp_path / "run.toml"
    path.write_text('preset = "tiny"\nlr = 0.0005\nwidth = 32\nheight = 32\n')
    cfg = load_config(str(path))
    assert cfg.lr == 0.0005 and cfg.model == "tiny" and cfg.width == 32
    with pytest.raises(ValueError, match="neither a preset"):
        load_config("nonexistent")
    path.write_text("batch = 3\n")
    with pytest.raises(ValueError, match="unknown training config keys"):
        load_config(str(path))
    with pytest.raises(ValueError, match="num_frames"):
        TrainConfig(num_frames=24)
    # every recipe the README and the model card name loads (a mistyped key is a clear error, above)
    from happyhorse.train.codec import load_codec_config
    from happyhorse.train.refiner import load_refiner_config

    recipes = sorted((Path(__file__).parents[1] / "configs").glob("*.toml"))
    assert len(recipes) >= 10
    for recipe in recipes:
        if recipe.stem.startswith("video_codec"):
            load_codec_config(str(recipe))
        elif recipe.stem.startswith("refiner"):
            load_refiner_config(recipe)
        else:
            load_config(str(recipe))
    assert load_config(str(recipes[0].with_name("finetune_mirror_pairs.toml"))).mirror_pairs


def test_train_then_generate_every_mode_from_the_cli(tmp_path):
    config = tmp_path / "run.json"
    config.write_text(json.dumps({**SMALL, "sample_every": 2}))
    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(config), "--out", str(run), "--max-steps", "2"])
    assert result.exit_code == 0, result.output
    assert (run / "model" / "model_index.json").is_file() and (run / "loss.png").is_file()
    assert len(list((run / "samples" / "step_000002").glob("*.mp4"))) == 4
    image = tmp_path / "first.png"
    from PIL import Image

    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(image)
    sound = tmp_path / "sound.wav"
    from happyhorse.media import save_audio

    save_audio(sound, (0.2 * np.sin(np.arange(12000) / 5))[None].astype(np.float32), 16000)
    for extra, mode in [
        ([], "T2V"),
        (["--image", str(image)], "TI2V"),
        (["--audio", str(sound)], "TA2V"),
        (["--image", str(image), "--audio", str(sound)], "TIA2V"),
    ]:
        out = tmp_path / f"{mode}.mp4"
        result = runner.invoke(
            app, ["generate", "a red ball drops", "--model", str(run / "model"), "--output", str(out), *extra]
        )
        assert result.exit_code == 0, result.output
        sidecar = json.loads(out.with_suffix(".json").read_text())
        assert sidecar["mode"] == mode and sidecar["prompt"] == "a red ball drops" and "total_s" in sidecar["timings"]
        clip = read_video(out)
        assert clip.frames.shape[1:3] == (32, 32) and clip.audio is not None
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red ball\n\na blue box\n")
    result = runner.invoke(
        app,
        [
            "generate",
            "--prompts-file",
            str(prompts),
            "--model",
            str(run / "model"),
            "--output",
            str(tmp_path / "many.mp4"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("many_*.mp4")) == ["many_000.mp4", "many_001.mp4"]
    # sampling overrides reach the pipeline and its sidecar
    out = tmp_path / "tuned.mp4"
    tuned = ["--sampler", "euler", "--shift", "3", "--guidance", "4", "--guidance-interval", "0.3", "1", "--steps", "3"]
    tuned += ["--audio-guidance", "2", "--autoguidance-interval", "0.5", "1"]
    result = runner.invoke(app, ["generate", "a red ball", "--model", str(run / "model"), "--output", str(out), *tuned])
    assert result.exit_code == 0, result.output
    settings = json.loads(out.with_suffix(".json").read_text())["settings"]
    assert (settings["sampler"], settings["shift"], settings["guidance_interval"]) == ("euler", 3.0, [0.3, 1.0])
    assert settings["autoguidance_interval"] == [0.5, 1.0]
    assert (settings["guidance_scale"], settings["num_inference_steps"], settings["audio_guidance_scale"]) == (
        4.0,
        3,
        2.0,
    )
    out = tmp_path / "contrast.mp4"
    contrast = ["--contrast-guidance", "2", "--contrast-prompt", "a blue box", "--steps", "2"]
    result = runner.invoke(
        app, ["generate", "a red ball", "--model", str(run / "model"), "--output", str(out), *contrast]
    )
    assert result.exit_code == 0, result.output
    settings = json.loads(out.with_suffix(".json").read_text())["settings"]
    assert (settings["contrast_guidance_scale"], settings["contrast_prompt"]) == (2.0, ["a blue box"])
    # the compute dtype reaches the pipeline and its sidecar; bfloat16 keeps the clip within a few levels
    clips = {}
    for dtype in ("float32", "bfloat16"):
        out = tmp_path / f"{dtype}.mp4"
        args = ["generate", "a red ball", "--model", str(run / "model"), "--output", str(out), "--device", "cpu"]
        result = runner.invoke(app, [*args, "--dtype", dtype])
        assert result.exit_code == 0, result.output
        settings = json.loads(out.with_suffix(".json").read_text())["settings"]
        assert (settings["device"], settings["dtype"]) == ("cpu", dtype)
        clips[dtype] = read_video(out).frames.astype(int)
    assert 0 < np.abs(clips["float32"] - clips["bfloat16"]).mean() < 4
    # the model stores no swap words: contrastive guidance without a contrast prompt is refused, by name
    result = runner.invoke(
        app, ["generate", "a red ball", "--model", str(run / "model"), "--output", str(out), "--contrast-guidance", "2"]
    )
    assert result.exit_code == 2 and "contrast_swaps" in result.output, result.output


def test_generate_errors_name_the_argument(tmp_path):
    runner = CliRunner()
    for args, needle in [
        (["x", "--model", str(tmp_path)], "--model"),
        (["x", "--image", str(tmp_path / "nope.png")], "--image"),
        (["x", "--output", "clip.avi"], "--output"),
        ([], "PROMPT"),
        (["x", "--size", "big"], "--size"),
        (["x", "--sampler", "heun"], "--sampler"),
        (["x", "--guidance-interval", "0.9", "0.1"], "--guidance-interval"),
        (["x", "--autoguidance-interval", "0.5", "1.2"], "--autoguidance-interval"),
        (["x", "--restart-interval", "0.8", "0.5"], "--restart-interval"),
        (["x", "--restarts", "9"], "--restarts"),
        (["x", "--device", "tpu"], "--device"),
        (["x", "--dtype", "int8"], "--dtype"),
        (["x", "--device", "cpu", "--dtype", "float16"], "--dtype"),
    ]:
        result = runner.invoke(app, ["generate", *args])
        assert result.exit_code == 2, (args, result.output)
        assert needle in result.output, (args, result.output)
    assert not Path("clip.avi").exists()


@pytest.mark.parametrize("adapter", [False, True], ids=["all", "self-conditioning-adapter"])
def test_fsdp_on_two_processes_follows_the_single_process_curve(tmp_path, adapter):
    """With the audio contrast on: its term and its logged share are the whole batch's, over processes;
    and with a self-conditioning adapter on frozen weights (trainable)."""
    model = {"dim": 64, "depth": 4, "heads": 2, "kv_heads": 1, "mlp_hidden": 128, "self_conditioning": adapter}
    cfg = {
        **SMALL,
        "model_overrides": model,
        "p_audio": 0.5,
        "audio_contrast_weight": 1.0,
        "audio_contrast_min_sigma": 0.0,
        # the zero-init output projections train too, else a fresh model passes no gradient to its inputs
        **({"trainable": ["video_self_in", "audio_self_in", "video_out", "audio_out"]} if adapter else {}),
    }
    (tmp_path / "fsdp.json").write_text(json.dumps({**cfg, "batch_size": 2, "fsdp": True}))
    (tmp_path / "one.json").write_text(json.dumps({**cfg, "batch_size": 4}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", free_port()]
    fsdp = subprocess.run(
        [
            *torchrun,
            "-m",
            "happyhorse",
            "train",
            str(tmp_path / "fsdp.json"),
            "--out",
            str(tmp_path / "a"),
            "--max-steps",
            "3",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert fsdp.returncode == 0, fsdp.stderr[-3000:]
    train(
        TrainConfig.from_dict({**cfg, "batch_size": 4}),
        tmp_path / "b",
        max_steps=3,
        progress=False,
        log=lambda *a: None,
    )
    logs = [[json.loads(x) for x in (tmp_path / run / "log.jsonl").read_text().splitlines()] for run in "ab"]
    np.testing.assert_allclose([r["loss"] for r in logs[0]], [r["loss"] for r in logs[1]], rtol=1e-5)
    won = [[r.get("audio_contrast_won") for r in log] for log in logs]
    assert won[0] == won[1] and any(w is not None for w in won[0])
    models = [load_file(str(tmp_path / run / "model" / "transformer" / "model.safetensors")) for run in "ab"]
    for key, value in models[1].items():
        torch.testing.assert_close(models[0][key], value, atol=1e-5, rtol=1e-4)
    if adapter:
        assert logs[0][-1]["grad_norm"] > 0 and models[0]["video_self_in.weight"].norm() > 0


def test_fine_tuning_starts_from_a_model_directory(tmp_path):
    cfg = TrainConfig.from_dict({**SMALL, "max_steps": 3, "warmup_steps": 1})
    train(cfg, tmp_path / "a", progress=False, log=lambda *a: None)
    trained = HappyHorsePipeline.from_pretrained(tmp_path / "a" / "model").transformer.state_dict()
    # a vanishing rate: the fine-tuned run's model is the weights it started from
    init = str(tmp_path / "a" / "model")
    tuned = TrainConfig.from_dict({**cfg.to_dict(), "lr": 1e-12, "max_steps": 2, "init_from": init})
    train(tuned, tmp_path / "b", progress=False, log=lambda *a: None)
    after = HappyHorsePipeline.from_pretrained(tmp_path / "b" / "model").transformer.state_dict()
    assert all(torch.allclose(trained[k], after[k], atol=1e-6) for k in trained)
    scratch = TrainConfig.from_dict({**tuned.to_dict(), "init_from": None})
    train(scratch, tmp_path / "c", progress=False, log=lambda *a: None)
    fresh = HappyHorsePipeline.from_pretrained(tmp_path / "c" / "model").transformer.state_dict()
    assert not all(torch.allclose(trained[k], fresh[k], atol=1e-3) for k in trained)
    wider = TrainConfig.from_dict({**tuned.to_dict(), "model_overrides": {**cfg.model_overrides, "dim": 96}})
    with pytest.raises(ValueError, match="does not fit this config's model"):
        train(wider, tmp_path / "d", progress=False, log=lambda *a: None)
    with pytest.raises(FileNotFoundError, match="neither a model directory"):
        missing = TrainConfig.from_dict({**cfg.to_dict(), "init_from": str(tmp_path / "none")})
        train(missing, tmp_path / "e", progress=False)


@pytest.mark.parametrize(
    "name, prefix, model",
    [("text_in_lr_scale", "text_in.", {}), ("self_condition_lr_scale", "video_self_in.", {"self_conditioning": True})],
)
def test_an_input_lr_scale_moves_that_input_faster_and_nothing_else(tmp_path, name, prefix, model):
    """Adam's first step moves each weight by about the rate: at a scale of 10 the text input projection
    (or the self-conditioning inputs) moves 10x as far as at 1, every other weight exactly as far; a
    resume keeps the scale."""
    quiet = lambda *a: None  # noqa: E731
    overrides = {**SMALL["model_overrides"], **model}
    base = TrainConfig.from_dict({**SMALL, "max_steps": 1, "warmup_steps": 1, "model_overrides": overrides})
    train(base, tmp_path / "init", progress=False, log=quiet)
    init = load_file(str(tmp_path / "init" / "model" / "transformer" / "model.safetensors"))
    moved = {}
    for scale in (1.0, 10.0):
        cfg = {**base.to_dict(), "init_from": str(tmp_path / "init" / "model"), name: scale}
        train(TrainConfig.from_dict(cfg), tmp_path / f"x{scale:g}", progress=False, log=quiet)
        after = load_file(str(tmp_path / f"x{scale:g}" / "checkpoint" / "model.safetensors"))
        moved[scale] = {k: after[k] - init[k].float() for k in after}
    scaled = [k for k in moved[1.0] if k.startswith(prefix)]
    assert scaled and all(moved[1.0][k].norm() > 0 for k in scaled)
    for key in moved[1.0]:
        if key in scaled:
            ratio = moved[10.0][key].norm() / moved[1.0][key].norm()
            assert ratio == pytest.approx(10.0, rel=0.02), key
        elif name == "self_condition_lr_scale" and key.startswith("audio_self_in."):
            continue  # the other self-conditioning input, scaled alike
        else:
            torch.testing.assert_close(moved[10.0][key], moved[1.0][key], atol=1e-7, rtol=1e-5)
    resumed = TrainConfig.from_dict({**cfg, "max_steps": 2})
    train(resumed, tmp_path / "x10", resume=True, progress=False, log=quiet)
    groups = json.loads((tmp_path / "x10" / "checkpoint" / "state.json").read_text())["optimizer"]["param_groups"]
    assert [g.get("lr_scale", 1.0) for g in groups] == [1.0, 10.0]
    with pytest.raises(ValueError, match=f"{name} must be in \\(0, 1000\\], got 0"):
        TrainConfig.from_dict({**SMALL, name: 0})


def test_more_text_layers_start_from_a_model_that_read_fewer_exactly_where_it_was(tmp_path):
    """text_layers (0, 6) from the default model (which read layer 6): the layer-6 columns of the text
    input are the model's, the layer-0 ones zero, so the widened model generates the same clip."""
    from happyhorse.codecs import Codec
    from happyhorse.codecs.text import MiniLMTextEncoder
    from happyhorse.pipeline import DEFAULT_MODEL_DIR, build_pipeline
    from happyhorse.train.trainer import load_init_weights

    source = HappyHorsePipeline.from_pretrained()
    wide = build_pipeline(source.transformer.cfg, text_layers=(0, 6))
    assert wide.text_encoder.dim == 768 and wide.transformer.cfg.text_in == 768
    wide.transformer.load_state_dict(load_init_weights(DEFAULT_MODEL_DIR, wide.transformer, (0, 6)))
    weight = wide.transformer.text_in.weight
    assert torch.equal(weight[:, :384], torch.zeros_like(weight[:, :384]))
    assert torch.equal(weight[:, 384:], source.transformer.text_in.weight)
    states, _ = wide.text_encoder.encode(["a red ball is thrown to the left"])
    last, _ = source.text_encoder.encode(["a red ball is thrown to the left"])
    torch.testing.assert_close(states[..., 384:], last)
    assert states[..., :384].abs().sum() > 0  # layer 0 is there, and differs from layer 6
    widened = HappyHorsePipeline(
        wide.transformer, source.video_codec, source.audio_codec, wide.text_encoder, source.scheduler, source.defaults
    )
    kw = {"seed": 1, "num_inference_steps": 2, "autoguidance_scale": 1.0}
    a, b = source("a red ball is thrown to the left", **kw), widened("a red ball is thrown to the left", **kw)
    assert np.abs(a.frames.astype(int) - b.frames).max() <= 1 and np.allclose(a.audio, b.audio, atol=1e-3)
    # the encoder's layers are saved with the model directory
    wide.text_encoder.save_pretrained(tmp_path / "te")
    assert Codec.from_pretrained(tmp_path / "te").layers == (0, 6)
    # back the other way, or without saying which layers: the shapes do not fit
    narrow = build_pipeline(source.transformer.cfg)
    with pytest.raises(ValueError, match="does not fit this config's model"):
        load_init_weights(DEFAULT_MODEL_DIR, wide.transformer)
    wide.save_pretrained(tmp_path / "wide")
    with pytest.raises(ValueError, match="read MiniLM layers \\[0, 6\\], not all among text_layers \\[1, 6\\]"):
        load_init_weights(
            tmp_path / "wide", build_pipeline(source.transformer.cfg, text_layers=(1, 6)).transformer, (1, 6)
        )
    with pytest.raises(ValueError, match="does not fit"):
        load_init_weights(tmp_path / "wide", narrow.transformer)
    for bad in ((6, 0), (), (7,), (3, 3)):
        with pytest.raises(ValueError, match="layers: distinct ascending layer numbers in 0..6"):
            MiniLMTextEncoder(layers=bad)
    with pytest.raises(ValueError, match="text_layers: only the minilm text encoder"):
        build_pipeline("tiny", text_encoder="hash", text_layers=(0, 6))


def test_object_loss_weight_weights_video_tokens_by_their_object_pixels():
    """Token weights are 1 + w x the share of the token's pixels the world's objects cover, and the
    video loss is the weighted mean of the per-token errors; w = 0 is the plain mean."""
    plain = TrainConfig.from_dict({**SMALL, "width": 64, "height": 64, "video_patch": (4, 8, 8), "p_image": 0.0})
    weighted = TrainConfig.from_dict({**plain.to_dict(), "object_loss_weight": 10.0})
    pipe = build_run_pipeline(plain)
    model = pipe.transformer.eval()
    batch = next(iter(StepBatches(weighted, 0, 1)))
    assert "objects" not in next(iter(StepBatches(plain, 0, 1)))
    inputs = prepare_step(weighted, pipe, batch, "cpu")
    base = prepare_step(plain, pipe, batch, "cpu")
    assert base.video_weight is None and torch.equal(inputs.video_x0, base.video_x0)
    w = inputs.video_weight
    assert w.min() == 1.0 and 2.0 < w.max() <= 11.0  # some token is mostly object, none is past all
    # the weight of a token is its pixels' mean coverage: recompute one by hand
    b, k = torch.nonzero(w == w.max())[0].tolist()
    grid = pipe.video_codec.latent_shape(*batch["video"].shape[1:4])
    t, rest = divmod(k, grid[1] * grid[2])
    h, x = divmod(rest, grid[2])
    frames = [0] if t == 0 else range(1 + 4 * (t - 1), 1 + 4 * t)
    cell = batch["objects"][b, list(frames), 8 * h : 8 * h + 8, 8 * x : 8 * x + 8].float() / 255
    assert torch.isclose(w[b, k], 1 + 10 * cell.mean())
    with torch.no_grad():
        loss_w, parts_w = step_loss(model, inputs, weighted, "x0")
        loss_p, parts_p = step_loss(model, base, plain, "x0")
        token_sigma = base.sigma[:, None].expand(-1, base.video_t.shape[1] + base.audio_t.shape[1])
        x = base
        out = model(x.video_t, x.audio_t, x.text, x.text_mask, x.positions, x.video_clean, x.audio_clean, token_sigma)
    s = base.sigma[:, None, None]
    err = ((base.video_t - out.video) / s.clamp(min=0.05) - (base.video_noise - base.video_x0)).pow(2).mean(-1)
    assert torch.allclose(parts_p["video"], err.mean(-1), rtol=1e-4)
    assert torch.allclose(parts_w["video"], (err * w).sum(-1) / w.sum(-1), rtol=1e-4)
    assert not torch.allclose(loss_w, loss_p)
    # the whole pooled grid against a brute-force loop over latent cells
    covered = batch["objects"].float() / 255
    brute = torch.stack(
        [
            covered[:, [0] if t == 0 else list(range(1 + 4 * (t - 1), 1 + 4 * t)), 8 * h : 8 * h + 8, 8 * x : 8 * x + 8]
            .flatten(1)
            .mean(1)
            for t in range(grid[0])
            for h in range(grid[1])
            for x in range(grid[2])
        ],
        dim=1,
    )
    assert torch.allclose(w, 1 + 10 * brute)
    # given tokens (a first frame) carry no loss, whatever their weight
    given = prepare_step(TrainConfig.from_dict({**weighted.to_dict(), "p_image": 1.0}), pipe, batch, "cpu")
    keep = (~given.video_clean).float()
    assert keep[:, : grid[1] * grid[2]].sum() == 0
    with torch.no_grad():
        out = model(
            *(getattr(given, k) for k in ("video_t", "audio_t", "text", "text_mask", "positions")),
            given.video_clean,
            given.audio_clean,
            torch.cat([keep, (~given.audio_clean).float()], 1) * given.sigma[:, None],
        )
        _, parts_g = step_loss(model, given, weighted, "x0")
    v = (given.video_t - out.video) / given.sigma[:, None, None].clamp(min=0.05)
    err = (v - (given.video_noise - given.video_x0)).pow(2).mean(-1)
    assert torch.allclose(parts_g["video"], (err * w * keep).sum(-1) / (w * keep).sum(-1), rtol=1e-4)
    with pytest.raises(ValueError, match="object_loss_weight"):
        TrainConfig.from_dict({**SMALL, "object_loss_weight": -1})


CONTRAST = {**SMALL, "batch_size": 4, "p_audio": 1.0, "p_image": 0.0, "audio_contrast_weight": 1.0}


def test_audio_contrast_takes_the_samples_given_their_sound_at_high_noise():
    """The batch carries each clip's sound with its impacts moved; only samples given their whole sound
    at noise >= audio_contrast_min_sigma take part, and a model that ignores the sound pays
    tau e_own log 2 for each (its two predictions are the same), so that the term adds to the loss."""
    from dataclasses import replace

    from happyhorse.train.trainer import contrast_rows

    cfg = TrainConfig.from_dict({**CONTRAST, "audio_contrast_min_sigma": 0.5})
    pipe = build_run_pipeline(cfg)
    model = pipe.transformer.eval()
    batches = [next(iter(StepBatches(cfg, s, s + 1))) for s in range(3)]
    assert "audio_shifted" not in next(iter(StepBatches(TrainConfig.from_dict(SMALL), 0, 1)))
    for batch in batches:  # the same scenes' sound, moved: other samples, the same loudness
        assert batch["audio_shifted"].shape == batch["audio"].shape
        assert not torch.equal(batch["audio_shifted"], batch["audio"])
    inputs = [prepare_step(cfg, pipe, b, "cpu") for b in batches]
    sigma = torch.cat([x.sigma for x in inputs])
    assert (sigma < 0.5).any() and (sigma >= 0.5).any()
    with torch.no_grad():
        model.audio_in.weight.zero_()  # now blind to the sound: both predictions alike
        for x in inputs:
            loss, parts = step_loss(model, x, cfg, "x0")
            plain, _ = step_loss(model, x, TrainConfig.from_dict({**CONTRAST, "audio_contrast_weight": 0.0}), "x0")
            taking = (x.sigma >= 0.5) & x.audible
            assert torch.equal(parts["contrast_won"].isnan(), ~taking)
            assert (parts["contrast_won"][taking] == 0).all()  # a tie is not a win
            expected = (0.05 * parts["video"][taking] * np.log(2)).sum() / 4
            assert torch.allclose(loss - plain, expected, rtol=1e-4)
        # a clip whose sound has no impact takes no part: its moved sound differs in ambience noise alone
        silent = replace(inputs[0], audible=torch.zeros(4, dtype=torch.bool))
        assert len(contrast_rows(silent, cfg)) == 0
        # a sample given no sound (TA2V off) takes no part
        no_sound = TrainConfig.from_dict({**CONTRAST, "p_audio": 0.0, "audio_contrast_weight": 0.0})
        off = prepare_step(no_sound, pipe, batches[0], "cpu")
        loss, parts = step_loss(model, off, cfg, "x0")
        assert len(contrast_rows(off, cfg)) == 0 and parts["contrast_won"].isnan().all()
        assert torch.equal(loss, step_loss(model, off, TrainConfig.from_dict(SMALL), "x0")[0])
        # a model that hears: the extra rows are the taking-part samples' own inputs with the moved sound
        for p in model.video_out.parameters():  # the zero-initialised head: predict something
            p.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
        model.audio_in.weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(2))
        plain = TrainConfig.from_dict({**CONTRAST, "audio_contrast_weight": 0.0})
        for x in inputs:
            loss, parts = step_loss(model, x, cfg, "x0")
            own = step_loss(model, x, plain, "x0")[1]["video"]
            moved = step_loss(model, replace(x, audio_t=x.audio_shifted), plain, "x0")[1]["video"]
            rows = contrast_rows(x, cfg)
            scale = 0.05 * own[rows]
            expected = (scale * torch.nn.functional.softplus(-(moved[rows] - own[rows]) / scale)).sum() / 4
            assert torch.allclose(loss - step_loss(model, x, plain, "x0")[0], expected, rtol=1e-3, atol=1e-9)
            assert torch.equal(parts["contrast_won"][rows], (moved[rows] > own[rows]).float())


def test_training_with_the_audio_contrast_makes_the_own_sound_predict_the_video_better():
    """The same steps with and without the term, from the same weights: with it, the moved sound's
    video error ends further above the own sound's than without (the sign is right, and the second
    prediction reads the moved sound, not the own one again)."""
    from dataclasses import replace

    cfg = TrainConfig.from_dict(
        {**CONTRAST, "audio_contrast_min_sigma": 0.0, "batch_size": 8, "audio_contrast_weight": 10.0}
    )
    plain = TrainConfig.from_dict({**cfg.to_dict(), "audio_contrast_weight": 0.0})
    x = prepare_step(cfg, build_run_pipeline(cfg), next(iter(StepBatches(cfg, 0, 1))), "cpu")

    def trained_gap(config):
        model = build_run_pipeline(cfg).transformer.train()  # seeded: the same weights each time
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(15):
            loss, _ = step_loss(model, x, config, "x0")
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            own = step_loss(model, x, plain, "x0")[1]["video"]
            moved = step_loss(model, replace(x, audio_t=x.audio_shifted), plain, "x0")[1]["video"]
        return ((moved - own) / own).mean().item()

    with_term, without = trained_gap(cfg), trained_gap(plain)
    assert with_term > without + 0.05, (with_term, without)  # measured: 0.135 against 0.002


def test_audio_contrast_settings_are_checked():
    for key, value in [
        ("audio_contrast_weight", -1.0),
        ("audio_contrast_shift", [0.0, 0.3]),
        ("audio_contrast_shift", [0.4, 0.3]),
        ("audio_contrast_shift", [0.2, 5.0]),
        ("audio_contrast_temperature", 0.0),
        ("audio_contrast_min_sigma", 1.0),
        ("audio_contrast_shift", 0.3),
        ("audio_contrast_shift", [0.1, "a"]),
        ("p_audio", 0.0),
    ]:
        with pytest.raises(ValueError, match=key):
            TrainConfig.from_dict({**CONTRAST, key: value})


def test_difference_loss_adds_the_errors_change_over_frames_and_pixels_to_the_flow_loss(tmp_path):
    """With temporal/spatial_loss_weight, the step's loss is the flow loss plus the difference loss of
    the same forward's velocity error on the patch codec's pixel cells; the flow loss itself (logged per
    noise level) is unchanged, and the run's log carries the term."""
    from happyhorse.diffusion import difference_loss, velocity_error

    plain = TrainConfig.from_dict({**SMALL, "batch_size": 4})
    both = TrainConfig.from_dict({**plain.to_dict(), "temporal_loss_weight": 2.0, "spatial_loss_weight": 0.5})
    pipe = build_run_pipeline(plain)
    model = pipe.transformer.eval()
    batch = next(iter(StepBatches(plain, 0, 1)))
    base, inputs = prepare_step(plain, pipe, batch, "cpu"), prepare_step(both, pipe, batch, "cpu")
    assert base.video_cells is None and inputs.video_cells == ((3, 4, 4), (4, 8, 8))
    with torch.no_grad():
        loss_p, parts_p = step_loss(model, base, plain, "x0")
        loss_d, parts_d = step_loss(model, inputs, both, "x0")
        x = inputs
        out = model(
            x.video_t, x.audio_t, x.text, x.text_mask, x.positions, x.video_clean, x.audio_clean,
            torch.cat([~x.video_clean, ~x.audio_clean], 1).float() * x.sigma[:, None],
        )  # fmt: skip
    assert torch.equal(parts_d["video"], parts_p["video"]) and "difference" not in parts_p
    error = velocity_error(out.video, x.video_x0, x.video_noise, x.video_t, x.sigma[:, None, None], "x0")
    expected = difference_loss(error, ~x.video_clean, (3, 4, 4), (4, 8, 8), 2.0, 0.5)
    assert expected.min() > 0
    torch.testing.assert_close(parts_d["difference"], expected)
    torch.testing.assert_close(loss_d, loss_p + expected.mean())
    summary = train(TrainConfig.from_dict({**both.to_dict(), "max_steps": 2}), tmp_path / "run")
    assert summary["log"]["difference_loss"] > 0
    for name in ("temporal_loss_weight", "spatial_loss_weight"):
        with pytest.raises(ValueError, match=name):
            TrainConfig.from_dict({**SMALL, name: -1})


def test_self_conditioning_trains_half_the_samples_on_the_models_own_detached_estimate(tmp_path):
    from dataclasses import replace

    cfg = TrainConfig.from_dict(
        {**SMALL, "batch_size": 8, "model_overrides": {**SMALL["model_overrides"], "self_conditioning": True}}
    )
    pipe = build_run_pipeline(cfg)
    model = pipe.transformer
    for head in (model.video_out, model.audio_out):  # zero at init: an estimate of zeros would tell nothing
        torch.nn.init.normal_(head.weight, std=0.05)
    x = prepare_step(cfg, pipe, next(iter(StepBatches(cfg, 0, 1))), "cpu")
    picked = x.self_condition
    assert picked.dtype == torch.bool and 0 < picked.sum() < 8
    calls = []
    hook = model.register_forward_hook(
        lambda m, args, kwargs, out: calls.append((kwargs.get("self_condition"), out)), with_kwargs=True
    )
    try:
        loss, _ = step_loss(model, x, cfg, "x0")
    finally:
        hook.remove()
    (first_given, first), (given, _) = calls
    assert first_given is None and first.video.shape[0] == picked.sum()  # a pass over the picked rows alone
    with torch.no_grad():  # what the model predicts for the whole batch, read at the picked rows
        whole = model(x.video_t, x.audio_t, x.text, x.text_mask, x.positions, x.video_clean, x.audio_clean)
    keep = picked[:, None, None]
    torch.testing.assert_close(given[0], torch.where(keep, whole.video, 0.0), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(given[1], torch.where(keep, whole.audio, 0.0), atol=1e-5, rtol=1e-4)
    assert not given[0].requires_grad  # detached: the gradient is the second pass's alone
    # the new input learns from the picked samples only (its weights start at zero)
    loss.backward()
    assert model.video_self_in.weight.grad.abs().sum() > 0
    model.zero_grad()
    none = replace(x, self_condition=torch.zeros_like(picked))
    step_loss(model, none, cfg, "x0")[0].backward()
    assert model.video_self_in.weight.grad is None or model.video_self_in.weight.grad.abs().sum() == 0
    # a model without self-conditioning makes one pass and is given nothing
    plain = build_run_pipeline(TrainConfig.from_dict(SMALL)).transformer
    calls.clear()
    hook = plain.register_forward_hook(
        lambda m, args, kwargs, out: calls.append(kwargs.get("self_condition")), with_kwargs=True
    )
    try:
        step_loss(plain, x, cfg, "x0")
    finally:
        hook.remove()
    assert calls == [None]


def test_self_conditioning_fine_tunes_a_model_without_it_from_where_it_was(tmp_path):
    from happyhorse.train.trainer import load_init_weights

    cfg = TrainConfig.from_dict({**SMALL, "max_steps": 2, "warmup_steps": 1})
    train(cfg, tmp_path / "a", progress=False, log=lambda *a: None)
    source = HappyHorsePipeline.from_pretrained(tmp_path / "a" / "model")
    selfcond = build_run_pipeline(
        TrainConfig.from_dict({**SMALL, "model_overrides": {**SMALL["model_overrides"], "self_conditioning": True}})
    )
    selfcond.transformer.load_state_dict(load_init_weights(tmp_path / "a" / "model", selfcond.transformer))
    assert selfcond.transformer.video_self_in.weight.abs().sum() == 0
    a, b = source("a red ball", seed=1), selfcond("a red ball", seed=1)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)


def test_trainable_prefixes_teach_self_conditioning_as_an_adapter_on_a_frozen_model(tmp_path):
    """trainable = the self-conditioning inputs: every other weight (and the EMA's) stays exactly the
    source's, so without the estimate the tuned model generates the source's clip; with it, another."""
    quiet = lambda *a: None  # noqa: E731
    source_cfg = TrainConfig.from_dict({**SMALL, "max_steps": 2, "warmup_steps": 1})
    train(source_cfg, tmp_path / "a", progress=False, log=quiet)
    source = HappyHorsePipeline.from_pretrained(tmp_path / "a" / "model")
    adapter = {
        **SMALL,
        "model_overrides": {**SMALL["model_overrides"], "self_conditioning": True},
        "trainable": ["video_self_in", "audio_self_in"],
        "self_condition_lr_scale": 10.0,
        "max_steps": 3,
        "warmup_steps": 1,
        "init_from": str(tmp_path / "a" / "model"),
    }
    lines = []
    train(TrainConfig.from_dict({**adapter, "max_steps": 2}), tmp_path / "b", progress=False, log=lines.append)
    train(TrainConfig.from_dict(adapter), tmp_path / "b", resume=True, progress=False, log=lines.append)
    assert any("the rest frozen" in line for line in lines) and any("resumed from step 2" in line for line in lines)
    groups = json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())["optimizer"]["param_groups"]
    assert [g.get("lr_scale", 1.0) for g in groups] == [10.0]
    before = source.transformer.state_dict()
    for weights in ("checkpoint/model", "checkpoint/ema", "model/transformer/model"):
        after = load_file(str(tmp_path / "b" / f"{weights}.safetensors"))
        assert all(after[k].norm() > 0 for k in ("video_self_in.weight", "audio_self_in.weight")), weights
        for key, value in before.items():
            assert torch.equal(after[key].to(value.dtype), value), (weights, key)
    tuned = HappyHorsePipeline.from_pretrained(tmp_path / "b" / "model")
    a, b = source("a red ball", seed=1), tuned("a red ball", seed=1, self_condition=False)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)
    assert not np.array_equal(tuned("a red ball", seed=1).frames, a.frames)
    with pytest.raises(ValueError, match="'video_in_typo' names no weight of this model; its modules are .*video_in"):
        train(TrainConfig.from_dict({**adapter, "trainable": ["video_in_typo"]}), tmp_path / "c", progress=False)
    with pytest.raises(ValueError, match="trainable must be a list of parameter-name prefixes"):
        TrainConfig.from_dict({**adapter, "trainable": "video_self_in"})


def test_an_anchor_holds_a_fine_tune_to_its_init_model_on_the_samples_given_no_estimate(tmp_path):
    from happyhorse.train.trainer import anchor_loss

    quiet = lambda *a: None  # noqa: E731
    train(
        TrainConfig.from_dict({**SMALL, "max_steps": 2, "warmup_steps": 1}), tmp_path / "a", progress=False, log=quiet
    )
    init = str(tmp_path / "a" / "model")
    selfcond = {**SMALL, "model_overrides": {**SMALL["model_overrides"], "self_conditioning": True}}
    cfg = TrainConfig.from_dict({**selfcond, "batch_size": 8, "init_from": init, "anchor_weight": 1.0})
    pipe = build_run_pipeline(cfg)
    model = pipe.transformer
    model.load_state_dict(HappyHorsePipeline.from_pretrained(init).transformer.state_dict(), strict=False)
    anchor = copy.deepcopy(model)
    x = prepare_step(cfg, pipe, next(iter(StepBatches(cfg, 0, 1))), "cpu")
    picked = x.self_condition
    assert 0 < picked.sum() < 8
    inputs = (x.video_t, x.audio_t, x.text, x.text_mask, x.video_clean, x.audio_clean, token_sigmas(x))
    out = model(*inputs[:4], x.positions, *inputs[4:])
    assert torch.equal(anchor_loss(anchor, out, x, inputs, (out.video, out.audio), cfg), torch.zeros(8))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    out = model(*inputs[:4], x.positions, *inputs[4:])
    leash = anchor_loss(anchor, out, x, inputs, (out.video, out.audio), cfg)
    assert (leash[~picked] > 0).all() and (leash[picked] == 0).all()  # the anchor never read an estimate
    assert (anchor_loss(anchor, out, x, inputs, None, cfg) > 0).all()  # a model without one: every sample
    loss, parts = step_loss(model, x, cfg, "x0", anchor)
    plain, _ = step_loss(model, x, cfg, "x0")
    torch.testing.assert_close(loss, plain + parts["anchor"].mean(), rtol=1e-5, atol=1e-7)

    # trained hard, the anchored fine-tune stays nearer the init model than the free one
    def drift(weight: float) -> float:
        run = tmp_path / f"w{weight}"
        tune = {**SMALL, "init_from": init, "anchor_weight": weight, "lr": 3e-3, "max_steps": 6, "warmup_steps": 1}
        train(TrainConfig.from_dict(tune), run, progress=False, log=quiet)
        tuned = HappyHorsePipeline.from_pretrained(run / "model").transformer
        source = HappyHorsePipeline.from_pretrained(init).transformer
        with torch.no_grad():
            a, b = (m(*inputs[:4], x.positions, *inputs[4:]) for m in (tuned, source))
        logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        assert all(("anchor_loss" in r) == (weight > 0) for r in logged)
        return float((a.video - b.video).pow(2).mean())

    held, free = drift(1000.0), drift(0.0)
    assert held < 0.5 * free
    with pytest.raises(ValueError, match="anchor_weight: needs init_from"):
        train(TrainConfig.from_dict({**SMALL, "anchor_weight": 1.0}), tmp_path / "c", progress=False, log=quiet)
    with pytest.raises(ValueError, match=r"anchor_weight must be in \[0, 1000\]"):
        TrainConfig.from_dict({**SMALL, "anchor_weight": -1.0})
