"""Training in the shared run loop: overfitting one clip, exact resume, --minutes, EMA, atomic
checkpoints, the export as a model directory, DDP and FSDP equal to one process, the CLI end to end."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from happyhorse.cli import app
from happyhorse.components import Components
from happyhorse.media import read_video
from happyhorse.pipeline import HappyHorsePipeline
from happyhorse.train import TrainConfig, load_config, train
from happyhorse.train.data import StepBatches
from happyhorse.train.harness import update_ema
from happyhorse.train.trainer import build_run_components, prepare_step, step_loss, world_of
from tests.conftest import TINY_RUN

SMALL = {
    **TINY_RUN,
    "warmup_steps": 2,
    "log_every": 1,
    "checkpoint_every": 1000,
    "precision": "float32",  # exact comparisons across processes and resumes; bfloat16 has its own test
}
QUIET = {"log": lambda *a: None}


def batches(cfg: TrainConfig, start: int, end: int, rank: int = 0, world_size: int = 1) -> StepBatches:
    return StepBatches(world_of(cfg), cfg.batch_size, cfg.seed, start, end, rank, world_size, cfg.clip_repeats)


def log_of(run) -> list[dict]:
    return [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]


def test_tiny_model_overfits_one_clip():
    """Loss on fixed noise draws of one clip (32 draws, all noise levels) falls >= 10x in 150 steps, and
    the pipeline, sampling from pure noise, then draws that clip: training and sampling agree."""
    cfg = TrainConfig.from_dict({**SMALL, "batch_size": 8, "text_dropout": 0.0, "p_image": 0.0, "p_audio": 0.0})
    parts = build_run_components(cfg)
    model = parts.transformer.train()
    batch = next(iter(batches(cfg, 0, 1)))

    def one_clip(t):
        return t[:1].expand(8, *t.shape[1:])

    batch.update(video=one_clip(batch["video"]), audio=one_clip(batch["audio"]), captions=batch["captions"][:1] * 8)

    def held_out_loss():
        with torch.no_grad():
            draws = [prepare_step(cfg, parts, {**batch, "step": 10**6 + k}, "cpu") for k in range(4)]
            return np.mean([step_loss(model, d, cfg)[0].item() for d in draws])

    before = held_out_loss()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(150):
        loss, _ = step_loss(model, prepare_step(cfg, parts, {**batch, "step": step}, "cpu"), cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = held_out_loss()
    assert after < before / 10, (before, after)
    pipe = HappyHorsePipeline(**vars(parts))
    clip = batch["video"][0].numpy().astype(float)
    out = pipe(batch["captions"][0], seed=1, num_inference_steps=12)
    error, baseline = np.abs(out.frames[0] - clip).mean(), np.abs(clip.mean((0, 1, 2)) - clip).mean()
    assert error < 0.6 * baseline, (error, baseline)  # measured: 24 vs 43 grey levels after 150 steps


def test_bfloat16_precision_computes_the_forward_in_it_and_keeps_the_loss_and_gradients_float32():
    from happyhorse.devices import cpu_has_fast_bfloat16
    from happyhorse.train.harness import autocasts

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert (autocasts("float32", cpu), autocasts("float32", cuda), autocasts("bfloat16", cpu)) == (False, False, True)
    assert autocasts("auto", cpu) == cpu_has_fast_bfloat16() and autocasts("auto", cuda)
    with pytest.raises(ValueError, match="precision must be auto, float32 or bfloat16"):
        TrainConfig.from_dict({**SMALL, "precision": "float16"})
    exact, half = TrainConfig.from_dict(SMALL), TrainConfig.from_dict({**SMALL, "precision": "bfloat16"})
    parts = build_run_components(exact)
    model = parts.transformer.train()
    for head in (model.video_out, model.audio_out):  # zero at initialisation: every dtype would agree
        torch.nn.init.normal_(head.weight, std=0.05)
    x = prepare_step(exact, parts, next(iter(batches(exact, 0, 1))), "cpu")
    loss32, _ = step_loss(model, x, exact)
    loss16, _ = step_loss(model, x, half)
    assert loss16.dtype == torch.float32 and loss16.item() != loss32.item()
    assert abs(loss16.item() - loss32.item()) < 0.02 * loss32.item()
    loss16.backward()
    assert {p.grad.dtype for p in model.parameters() if p.grad is not None} == {torch.float32}


def test_resume_continues_the_same_curve(tmp_path):
    cfg = TrainConfig.from_dict(SMALL)
    straight = train(cfg, tmp_path / "a", max_steps=6, **QUIET)
    train(cfg, tmp_path / "b", max_steps=3, **QUIET)
    # a run saved before `precision` existed ran in float32 on the CPU, and resumes so, whatever CONFIG says
    saved = json.loads((tmp_path / "b" / "config.json").read_text())
    assert saved.pop("precision") == "float32"
    (tmp_path / "b" / "config.json").write_text(json.dumps(saved))
    with open(tmp_path / "b" / "log.jsonl", "a") as f:  # a record past the checkpoint (a run killed after it)
        f.write(json.dumps({"step": 4, "loss": 9.9}) + "\n")
    later = TrainConfig.from_dict({**SMALL, "precision": "bfloat16"})
    said = []
    resumed = train(later, tmp_path / "b", resume=True, max_steps=6, log=said.append)
    assert "resumed from step 3" in said and any("CONFIG differs in ['precision']" in s for s in said)
    assert straight["step"] == resumed["step"] == 6
    log_a, log_b = log_of(tmp_path / "a"), log_of(tmp_path / "b")
    assert [r["step"] for r in log_b] == [1, 2, 3, 4, 5, 6]
    assert all(0 <= r["data_wait"] <= 1 for r in log_a + log_b)  # num_workers 0: clips are made in the wait
    assert all(r["mfu"] > 0 and r["tokens_per_s"] > 0 for r in log_a)
    assert set(log_a[-1]["loss_by_sigma"]) == {"0.0-0.2", "0.2-0.4", "0.4-0.6", "0.6-0.8", "0.8-1.0"}
    np.testing.assert_allclose([r["loss"] for r in log_a], [r["loss"] for r in log_b], rtol=1e-5)
    a = load_file(str(tmp_path / "a" / "checkpoint" / "ema.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoint" / "ema.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)
    assert (tmp_path / "a" / "loss.png").stat().st_size > 0
    said.clear()  # a finished run has nothing to do, and says so
    assert train(cfg, tmp_path / "a", resume=True, max_steps=6, log=said.append)["step"] == 6
    assert any("nothing to train" in s for s in said)


def test_minutes_stop_the_run_and_checkpoint_it(tmp_path):
    """A wall budget spent after the first step: the run stops there, checkpointed and exported, with no
    log record yet (and no plot, and no crash for it); a resume goes on from there."""
    cfg = TrainConfig.from_dict({**SMALL, "log_every": 1000})
    summary = train(cfg, tmp_path, max_steps=50, minutes=0.0, **QUIET)
    assert summary["step"] == 1 and summary["log"] is None
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert (state["step"], state["objective"]) == (1, "flow_matching")
    assert not (tmp_path / "loss.png").exists() and (tmp_path / "model" / "model_index.json").is_file()
    assert train(cfg, tmp_path, resume=True, max_steps=3, **QUIET)["step"] == 3


def test_the_export_is_the_ema_as_a_model_directory(tmp_path):
    """RUN/model loads as a model directory whose transformer is the checkpoint's EMA, which follows
    the warmed-up EMA rule, and whose sampling config is the config's."""
    sampling = {"sampler": "dpmpp_2m", "num_inference_steps": 3, "guidance": [{"type": "classifier_free", "scale": 4}]}
    cfg = TrainConfig.from_dict({**SMALL, "shift": 2.0, "sampling": sampling, "ema_decay": 0.5})
    train(cfg, tmp_path, max_steps=3, **QUIET)
    parts = Components.from_pretrained(tmp_path / "model")
    assert (parts.sampling.sampler, parts.sampling.num_inference_steps, parts.sampling.shift) == ("dpmpp_2m", 3, 2.0)
    assert parts.sampling.classifier_free.scale == 4.0 and parts.guide_transformer is None
    assert parts.defaults["width"] == 32 and parts.video_codec.patch_t == 4
    ema = load_file(str(tmp_path / "checkpoint" / "ema.safetensors"))
    model = load_file(str(tmp_path / "checkpoint" / "model.safetensors"))
    exported = parts.transformer.state_dict()
    assert all(torch.equal(exported[k], ema[k]) for k in ema)
    assert any(not torch.equal(ema[k], model[k]) for k in ema)  # the EMA lags the model
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = a.weight.detach().clone()
    update_ema(a, b, step=0, decay=0.99)  # warm-up: rate 1 - 1/10
    torch.testing.assert_close(a.weight, before + 0.9 * (b.weight - before))
    update_ema(a, b, step=10**6, decay=0.5)  # past the warm-up: the decay
    # the flat sampling keys of earlier runs' configs still load, and a retired lever is refused by name
    old = TrainConfig.from_dict({**SMALL, "sampler": "dpmpp_2m", "guidance_scale": 5.0, "mirror_pairs": False})
    assert old.sampling_config().classifier_free.scale == 5.0 and old.sampling_config().sampler == "dpmpp_2m"
    with pytest.raises(ValueError, match="anchor_weight: a setting measured and not shipped"):
        TrainConfig.from_dict({**SMALL, "anchor_weight": 1.0})


def test_a_checkpoint_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    """A save that fails half-way (disk full, killed) leaves the previous checkpoint as it was."""
    import happyhorse.train.checkpoint as checkpoint

    cfg = TrainConfig.from_dict({**SMALL, "checkpoint_every": 2})
    train(cfg, tmp_path, max_steps=2, **QUIET)
    before = {p.name: p.read_bytes() for p in (tmp_path / "checkpoint").iterdir()}
    calls, save_file = [], checkpoint.save_file

    def failing(tensors, path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        save_file(tensors, path)

    monkeypatch.setattr(checkpoint, "save_file", failing)
    with pytest.raises(OSError, match="disk full"):
        train(cfg, tmp_path, resume=True, max_steps=4, **QUIET)
    assert {p.name: p.read_bytes() for p in (tmp_path / "checkpoint").iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".checkpoint")]  # no staging left behind
    with pytest.raises(ValueError, match="holds a flow_matching run, not video_codec"):
        from happyhorse.train.codec import CodecTrainConfig, train_codec

        codec = CodecTrainConfig(patch=(2, 2, 2), channels=(8, 16), width=32, height=32, num_frames=9)
        train_codec(codec, tmp_path, **QUIET)


DDP_SCRIPT = """
import json, os, sys, torch, torch.distributed as dist
from safetensors.torch import save_file
from happyhorse.train import TrainConfig
from happyhorse.train.data import StepBatches
from happyhorse.train.trainer import build_run_components, prepare_step, step_loss, world_of
cfg = TrainConfig.from_dict(json.loads(sys.argv[1]))
ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
if ddp:
    dist.init_process_group("gloo")
rank, world = (dist.get_rank(), dist.get_world_size()) if ddp else (0, 1)
torch.set_num_threads(1)
parts = build_run_components(cfg)
model = parts.transformer.train()
for head in (model.video_out, model.audio_out):  # non-zero heads, so that every weight has a gradient
    torch.nn.init.normal_(head.weight, std=0.05)
wrapped = torch.nn.parallel.DistributedDataParallel(model) if ddp else model
batch = next(iter(StepBatches(world_of(cfg), cfg.batch_size, cfg.seed, 5, 6, rank, world)))
loss, _ = step_loss(wrapped, prepare_step(cfg, parts, batch, "cpu"), cfg)
loss.backward()
if rank == 0:
    save_file({n: p.grad.contiguous() for n, p in model.named_parameters() if p.grad is not None}, sys.argv[2])
if ddp:
    dist.barrier()  # both ranks leave together: gloo aborts a rank torn down while its peer still works
    dist.destroy_process_group()
"""


def free_port() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def torchrun() -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", free_port()]


def test_ddp_on_two_processes_matches_one_process_gradients(tmp_path):
    script = tmp_path / "grad.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cfg = {**SMALL, "p_image": 0.5, "p_audio": 0.5}
    single = subprocess.run(
        [sys.executable, str(script), json.dumps({**cfg, "batch_size": 4}), str(tmp_path / "one.safetensors")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run(
        [*torchrun(), str(script), json.dumps({**cfg, "batch_size": 2}), str(tmp_path / "two.safetensors")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one, two = load_file(str(tmp_path / "one.safetensors")), load_file(str(tmp_path / "two.safetensors"))
    assert one.keys() == two.keys() and len(one) > 10
    for key in one:
        torch.testing.assert_close(two[key], one[key], atol=1e-6, rtol=1e-4)


def test_fsdp_on_two_processes_follows_the_single_process_curve(tmp_path):
    """`happyhorse train` under torchrun with fsdp = true: the loss curve and the exported model of
    one process with the whole batch."""
    model = {"dim": 64, "depth": 4, "heads": 2, "kv_heads": 1, "mlp_hidden": 128}
    cfg = {**SMALL, "model_overrides": model, "p_audio": 0.5}
    (tmp_path / "fsdp.json").write_text(json.dumps({**cfg, "batch_size": 2, "fsdp": True}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["-m", "happyhorse", "train", str(tmp_path / "fsdp.json"), "--out", str(tmp_path / "a"), "--max-steps", "3"]
    fsdp = subprocess.run([*torchrun(), *args], env=env, capture_output=True, text=True)
    assert fsdp.returncode == 0, fsdp.stderr[-3000:]
    train(TrainConfig.from_dict({**cfg, "batch_size": 4}), tmp_path / "b", max_steps=3, **QUIET)
    logs = [log_of(tmp_path / run) for run in "ab"]
    np.testing.assert_allclose([r["loss"] for r in logs[0]], [r["loss"] for r in logs[1]], rtol=1e-5)
    models = [load_file(str(tmp_path / run / "model" / "transformer" / "model.safetensors")) for run in "ab"]
    for key, value in models[1].items():
        torch.testing.assert_close(models[0][key], value, atol=1e-5, rtol=1e-4)


def test_loader_workers_deliver_each_step_once_in_order():
    """Two workers share the steps (each renders every other one); the loader's batches come in order."""
    from happyhorse.train.data import loader

    cfg = TrainConfig(**{**SMALL, "batch_size": 2})
    one = list(loader(batches(cfg, 3, 8), 0))
    two = list(loader(batches(cfg, 3, 8), 2))
    assert [b["step"] for b in two] == [3, 4, 5, 6, 7]
    for a, b in zip(one, two, strict=True):
        assert a["captions"] == b["captions"] and torch.equal(a["video"], b["video"])


def test_clip_repeats_show_each_clip_at_several_noise_levels():
    cfg = TrainConfig(**{**SMALL, "batch_size": 4, "clip_repeats": 2})
    parts = build_run_components(cfg)
    batch = next(iter(batches(cfg, 0, 1)))
    assert batch["captions"][0] == batch["captions"][1] != batch["captions"][2] == batch["captions"][3]
    assert torch.equal(batch["video"][0], batch["video"][1]) and not torch.equal(batch["video"][1], batch["video"][2])
    inputs = prepare_step(cfg, parts, batch, "cpu")
    assert inputs.sigma[0] != inputs.sigma[1]  # same clip, its own noise level and noise
    assert not torch.equal(inputs.video_noise[0], inputs.video_noise[1])
    with pytest.raises(ValueError, match="clip_repeats"):
        TrainConfig(**{**SMALL, "batch_size": 4, "clip_repeats": 3})


def test_world_kinds_mix_talking_clips_into_the_batches_deterministically():
    """A mix of scene kinds draws each clip's kind from its seed: the same steps give the same clips, the
    talk share is near its weight, and a bad mix is refused by name."""
    cfg = TrainConfig(**{**SMALL, "batch_size": 4, "world_kinds": {"physics": 1, "talk": 1}})
    data = StepBatches(world_of(cfg), 4, cfg.seed, 0, 6, kinds=cfg.world_kinds)
    first, again = list(data), list(StepBatches(world_of(cfg), 4, cfg.seed, 0, 6, kinds=cfg.world_kinds))
    captions = [c for b in first for c in b["captions"]]
    assert captions == [c for b in again for c in b["captions"]]
    talking = sum('"' in c for c in captions)
    assert 6 <= talking <= 18, captions  # 24 clips at weight 1/2
    assert not any('"' in c for b in batches(TrainConfig(**SMALL), 0, 3) for c in b["captions"])
    for kinds, needle in [
        ({"song": 1}, "keys must be among physics, talk, mixed"),
        ({"talk": -1}, "weights must be >= 0"),
    ]:
        with pytest.raises(ValueError, match=needle):
            TrainConfig(**{**SMALL, "world_kinds": kinds})


def test_config_files_and_presets(tmp_path):
    from pathlib import Path

    assert load_config("tiny").text_encoder == "hash"
    path = tmp_path / "run.toml"
    path.write_text('preset = "tiny"\nlr = 0.0005\nwidth = 32\nheight = 32\n')
    cfg = load_config(str(path))
    assert cfg.lr == 0.0005 and cfg.model == "tiny" and cfg.width == 32
    with pytest.raises(ValueError, match="neither a preset"):
        load_config("nonexistent")
    path.write_text("batch = 3\n")
    with pytest.raises(ValueError, match="unknown TrainConfig keys"):
        load_config(str(path))
    with pytest.raises(ValueError, match="num_frames"):
        TrainConfig(num_frames=24)
    # every recipe in configs/ loads (a mistyped key is a clear error, above)
    from happyhorse.train.codec import load_codec_config

    recipes = sorted((Path(__file__).parents[1] / "configs").glob("*.toml"))
    assert {r.stem for r in recipes} >= {"default", "video_codec_sharp"}
    for recipe in recipes:
        (load_codec_config if recipe.stem.startswith("video_codec") else load_config)(str(recipe))


def test_fine_tuning_starts_from_a_model_directory(tmp_path):
    cfg = TrainConfig.from_dict({**SMALL, "max_steps": 3, "warmup_steps": 1})
    train(cfg, tmp_path / "a", **QUIET)
    trained = Components.from_pretrained(tmp_path / "a" / "model").transformer.state_dict()
    # a vanishing rate: the fine-tuned run's model is the weights it started from
    init = str(tmp_path / "a" / "model")
    tuned = TrainConfig.from_dict({**cfg.to_dict(), "lr": 1e-12, "max_steps": 2, "init_from": init})
    train(tuned, tmp_path / "b", **QUIET)
    after = Components.from_pretrained(tmp_path / "b" / "model").transformer.state_dict()
    assert all(torch.allclose(trained[k], after[k], atol=1e-6) for k in trained)
    # a resumed fine-tune continues its own checkpoint: the model it started from may be gone
    import shutil

    shutil.copytree(tmp_path / "a" / "model", tmp_path / "moved")
    moving = TrainConfig.from_dict({**tuned.to_dict(), "init_from": str(tmp_path / "moved")})
    train(moving, tmp_path / "b2", **QUIET)
    shutil.rmtree(tmp_path / "moved")
    summary = train(moving, tmp_path / "b2", resume=True, max_steps=3, **QUIET)
    assert summary["step"] == 3
    scratch = TrainConfig.from_dict({**tuned.to_dict(), "init_from": None})
    train(scratch, tmp_path / "c", **QUIET)
    fresh = Components.from_pretrained(tmp_path / "c" / "model").transformer.state_dict()
    assert not all(torch.allclose(trained[k], fresh[k], atol=1e-3) for k in trained)
    wider = TrainConfig.from_dict({**tuned.to_dict(), "model_overrides": {**cfg.model_overrides, "dim": 96}})
    with pytest.raises(ValueError, match="does not fit this config's model"):
        train(wider, tmp_path / "d", **QUIET)
    with pytest.raises(FileNotFoundError, match="neither a model directory"):
        train(TrainConfig.from_dict({**cfg.to_dict(), "init_from": str(tmp_path / "none")}), tmp_path / "e", **QUIET)


def test_train_then_generate_every_mode_from_the_cli(tmp_path):
    """`happyhorse train` writes the model directory, the plot and preview clips; `generate` loads it."""
    config = tmp_path / "run.json"
    config.write_text(json.dumps({**SMALL, "sample_every": 2}))
    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(config), "--out", str(run), "--max-steps", "2"])
    assert result.exit_code == 0, result.output
    assert (run / "model" / "model_index.json").is_file() and (run / "loss.png").is_file()
    assert len(list((run / "samples" / "step_000002").glob("*.mp4"))) == 4
    result = runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "x"), "--init", str(tmp_path)])
    assert result.exit_code == 2 and "--init" in result.output, result.output
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
        assert sidecar["mode"] == mode and sidecar["prompt"] == "a red ball drops"
        clip = read_video(out)
        assert clip.frames.shape[1:3] == (32, 32) and clip.audio is not None


def test_a_recipe_sampling_with_autoguidance_but_no_guide_is_refused_before_training(tmp_path):
    """An exported model could not sample it: refused at the start, not at the first export."""
    cfg = TrainConfig.from_dict({**SMALL, "sampling": {"guidance": [{"type": "autoguidance", "scale": 3.0}]}})
    with pytest.raises(ValueError, match="autoguidance needs a guide model"):
        train(cfg, tmp_path / "run", **QUIET)
    assert not (tmp_path / "run" / "checkpoint").exists()
