"""The learned video codec: shapes and frame 0 like the patch codec, training (in the shared run loop)
that learns and resumes, normalised latents, and diffusion training and sampling on top of it."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from happyhorse.cli import app
from happyhorse.codecs import AutoencoderVideoCodec, Codec, PatchVideoCodec
from happyhorse.components import Components
from happyhorse.pipeline import HappyHorsePipeline
from happyhorse.train import TrainConfig, train
from happyhorse.train.codec import STATS_SEEDS, CodecTrainConfig, clip_batch, reconstruction_loss, train_codec
from happyhorse.train.trainer import build_run_components
from tests.conftest import TINY_RUN

# 2 x 2 pixel cells over 2 frames, 32 x 32 clips of 9 frames: seconds on a CPU
TINY = {
    "patch": (2, 2, 2),
    "latent_channels": 4,
    "channels": (8, 16),
    "width": 32,
    "height": 32,
    "num_frames": 9,
    "clips_per_step": 2,
    "warmup_steps": 2,
    "log_every": 1,
    "checkpoint_every": 1000,
}


def quiet(*args):
    pass


def test_latent_grid_and_first_frame_match_the_patch_codec():
    torch.manual_seed(0)
    codec = AutoencoderVideoCodec(4, 8, 8, latent_channels=16, channels=(8, 8, 8, 8)).eval()
    patch = PatchVideoCodec(4, 8, 8)
    frames = torch.randint(0, 256, (2, 9, 32, 48, 3), dtype=torch.uint8)
    z = codec.encode(frames)
    assert z.shape == (2, *patch.latent_shape(9, 32, 48), 16) and codec.latent_dim == 16
    assert codec.num_frames(10) == patch.num_frames(10) == 13
    decoded = codec.decode(z)
    assert decoded.shape == frames.shape and decoded.dtype == torch.uint8
    # latent frame 0 depends on frame 0 alone: a given first image is exactly latent frame 0
    other = frames.clone()
    other[:, 1:] = 255 - other[:, 1:]
    assert torch.equal(codec.encode(other)[:, 0], z[:, 0])
    assert not torch.equal(codec.encode(other)[:, 1], z[:, 1])
    with pytest.raises(ValueError, match="num_frames"):
        codec.encode(frames[:, :8])
    with pytest.raises(ValueError, match="patch_h/patch_w"):
        AutoencoderVideoCodec(4, 8, 8, channels=(8, 16))


def test_per_frame_codec_codes_each_frame_alone(tmp_path):
    """per_frame: frame k of a cell owns channels [k C/pt, (k+1) C/pt) of its latent cell."""
    torch.manual_seed(0)
    codec = AutoencoderVideoCodec(4, 8, 8, latent_channels=8, channels=(8, 8, 8, 8), per_frame=True).eval()
    frames = torch.randint(0, 256, (1, 9, 16, 16, 3), dtype=torch.uint8)
    changed = frames.clone()
    changed[:, 2] = 255 - changed[:, 2]  # frame 2: the second frame of latent frame 1
    diff = (codec.encode(changed) - codec.encode(frames)).abs().amax((0, 2, 3))  # [t, C]
    assert diff[1, 2:4].min() > 0 and diff[1, :2].max() == 0 and diff[1, 4:].max() == 0
    assert diff[0].max() == 0 and diff[2].max() == 0
    assert codec.decode(codec.encode(frames)).shape == frames.shape
    codec.save_pretrained(tmp_path / "vc")
    assert Codec.from_pretrained(tmp_path / "vc").per_frame
    with pytest.raises(ValueError, match="multiple of patch_t"):
        AutoencoderVideoCodec(4, 8, 8, latent_channels=6, channels=(8, 8, 8, 8), per_frame=True)


def test_pool_is_shared_by_both_codecs():
    values = torch.rand(1, 9, 16, 16)
    learned = AutoencoderVideoCodec(4, 8, 8, channels=(8, 8, 8, 8))
    assert torch.equal(learned.pool(values), PatchVideoCodec(4, 8, 8).pool(values))


def test_codec_directory_round_trip(tmp_path):
    torch.manual_seed(1)
    codec = AutoencoderVideoCodec(2, 2, 2, latent_channels=4, channels=(8, 16)).eval()
    codec.latent_mean.fill_(0.5)
    codec.latent_std.fill_(2.0)
    codec.save_pretrained(tmp_path / "vc")
    loaded = Codec.from_pretrained(tmp_path / "vc")
    assert isinstance(loaded, AutoencoderVideoCodec) and loaded.channels == (8, 16)
    frames = torch.randint(0, 256, (1, 5, 8, 8, 3), dtype=torch.uint8)
    assert torch.equal(loaded.encode(frames), codec.encode(frames))
    assert torch.equal(loaded.decode(codec.encode(frames)), codec.decode(codec.encode(frames)))


def records(run) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_codec_training_with_loader_workers_is_the_same_run(tmp_path):
    """Clips rendered by two worker processes arrive in step order: the run is the one without them."""
    base = {**TINY, "max_steps": 3, "log_every": 1, "latent_noise": 0.05}
    alone = train_codec(CodecTrainConfig.from_dict(base), tmp_path / "alone", log=quiet, device="cpu")
    helped = train_codec(CodecTrainConfig.from_dict({**base, "num_workers": 2}), tmp_path / "helped", log=quiet)
    assert alone["step"] == helped["step"] == 3
    losses = [[r["loss"] for r in records(tmp_path / run) if "loss" in r] for run in ("alone", "helped")]
    assert len(losses[0]) == 3 and losses[0] == pytest.approx(losses[1], rel=1e-6)
    assert alone["export"]["psnr"] == pytest.approx(helped["export"]["psnr"], rel=1e-6)  # the same codec
    with pytest.raises(ValueError, match="num_workers >= 0"):
        CodecTrainConfig.from_dict({**TINY, "num_workers": -1})


def test_codec_training_learns_and_resumes(tmp_path):
    """Overfits one batch of world clips, and a run stopped and resumed ends where one run ends."""
    cfg = CodecTrainConfig.from_dict({**TINY, "latent_noise": 0.0})
    torch.manual_seed(0)
    codec = cfg.build().train()
    frames, coverage = clip_batch(cfg, [0, 1], "train")
    optimizer = torch.optim.Adam(codec.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = reconstruction_loss(codec, frames, coverage, cfg.object_weight, 0.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]

    cfg = CodecTrainConfig.from_dict({**TINY, "max_steps": 4})
    one = train_codec(cfg, tmp_path / "one", log=quiet)
    train_codec(cfg, tmp_path / "two", max_steps=2, log=quiet)
    two = train_codec(cfg, tmp_path / "two", resume=True, log=quiet)
    assert one["step"] == two["step"] == 4
    assert one["log"]["loss"] == pytest.approx(two["log"]["loss"], rel=1e-5)
    # --init continues another run's checkpoint in a new directory and leaves that run as it was
    train_codec(cfg, tmp_path / "half", max_steps=2, log=quiet)
    went_on = train_codec(cfg, tmp_path / "went_on", init_from=tmp_path / "half", log=quiet)
    assert went_on["step"] == 4 and went_on["log"]["loss"] == pytest.approx(one["log"]["loss"], rel=1e-5)
    said = []
    assert train_codec(cfg, tmp_path / "past", init_from=tmp_path / "one", log=said.append)["log"] is None
    assert "nothing to train" in said[-1] and "max_steps is 4" in said[-1]  # a finished run says so
    assert json.loads((tmp_path / "half" / "checkpoint" / "state.json").read_text())["step"] == 2
    wider = CodecTrainConfig.from_dict({**TINY, "latent_channels": 8})
    with pytest.raises(ValueError, match="do not fit"):
        train_codec(wider, tmp_path / "wider", init_from=tmp_path / "half", log=quiet)
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        train_codec(cfg, tmp_path / "none", init_from=tmp_path / "nowhere", log=quiet)
    figures = json.loads((tmp_path / "one" / "codec" / "validation.json").read_text())
    assert 0 < figures["psnr"] < 60
    # each export's validation is a record of its own step in the log, between loss records
    cfg = CodecTrainConfig.from_dict({**TINY, "max_steps": 4, "log_every": 2, "checkpoint_every": 3})
    last = train_codec(cfg, tmp_path / "three", log=quiet)
    log = records(tmp_path / "three")
    assert [(r["step"], "loss" in r, "psnr" in r) for r in log] == [
        (2, True, False),
        (3, False, True),
        (4, True, False),
        (4, False, True),
    ]
    assert last["step"] == 4 and last["export"]["psnr"] == log[-1]["psnr"]
    # latents are normalised to zero mean and unit spread per channel on train clips
    codec = Codec.from_pretrained(tmp_path / "one" / "codec")
    z = codec.encode(clip_batch(cfg, STATS_SEEDS, "train")[0])
    np.testing.assert_allclose(z.mean((0, 1, 2, 3)).numpy(), 0, atol=1e-3)
    np.testing.assert_allclose(z.std((0, 1, 2, 3)).numpy(), 1, atol=1e-2)
    with pytest.raises(ValueError, match="unknown CodecTrainConfig keys"):
        CodecTrainConfig.from_dict({"patch_size": 4})
    with pytest.raises(ValueError, match="adversarial_start: a setting measured and not shipped"):
        CodecTrainConfig.from_dict({**TINY, "adversarial_start": 500})
    assert CodecTrainConfig.from_dict({**TINY, "adversarial_start": 0}).patch == (2, 2, 2)  # an old run's, off


def test_train_codec_command_continues_a_run_under_changed_settings(tmp_path):
    """`--init RUN --set KEY=VALUE`: a new run goes on from another's checkpoint with changed losses;
    unknown keys, unreadable values and a missing run are refused by name, before anything is written."""
    config = tmp_path / "tiny.toml"
    config.write_text("\n".join(f"{k} = {json.dumps(list(v) if isinstance(v, tuple) else v)}" for k, v in TINY.items()))
    runner = CliRunner()
    first = runner.invoke(app, ["train-codec", str(config), "--out", str(tmp_path / "a"), "--max-steps", "2"])
    assert first.exit_code == 0, first.output
    args = ["train-codec", str(config), "--out", str(tmp_path / "b"), "--max-steps", "3", "--init", str(tmp_path / "a")]
    second = runner.invoke(app, [*args, "--set", "object_margin=2", "--set", "edge_weight=1.5"])
    assert second.exit_code == 0, second.output
    saved = json.loads((tmp_path / "b" / "config.json").read_text())
    assert saved["object_margin"] == 2 and saved["edge_weight"] == 1.5
    steps = [r["step"] for r in records(tmp_path / "b")]
    assert steps == [3, 3]  # the loss record and the validation record of step 3, nothing before
    for extra, needle in [
        (["--set", "object_margn=2"], "object_margin"),
        (["--set", "latent_noise=abc"], "--set"),
        (["--init", str(tmp_path / "nowhere")], "--init"),
    ]:
        out = tmp_path / "refused"
        result = runner.invoke(app, ["train-codec", str(config), "--out", str(out), *extra])
        assert result.exit_code == 2 and needle in result.output, (extra, result.output)
        assert not (out / "checkpoint").exists()


def test_diffusion_over_a_learned_codec_trains_ships_and_samples(tmp_path):
    """A model trained over the codec saves it in its model directory, and a patch-codec model
    fine-tunes onto it: everything but the video projections carries over."""
    codec_cfg = CodecTrainConfig.from_dict({**TINY, "max_steps": 1})
    train_codec(codec_cfg, tmp_path / "codec", log=quiet)
    small = {**TINY_RUN, "video_patch": (2, 2, 2), "warmup_steps": 1, "max_steps": 2}
    base = TrainConfig.from_dict(small)
    train(base, tmp_path / "patch", log=quiet)
    cfg = TrainConfig.from_dict(
        {
            **small,
            "video_codec": str(tmp_path / "codec" / "codec"),
            "init_from": str(tmp_path / "patch" / "model"),
            "lr": 1e-12,  # a vanishing rate: the run's model is the weights it started from
        }
    )
    assert build_run_components(cfg).transformer.cfg.video_in == 4
    train(cfg, tmp_path / "latent", log=quiet)
    pipe = HappyHorsePipeline.from_pretrained(tmp_path / "latent" / "model")
    assert isinstance(pipe.video_codec, AutoencoderVideoCodec)
    before = Components.from_pretrained(tmp_path / "patch" / "model").transformer.state_dict()
    after = pipe.transformer.state_dict()
    assert after["video_in.weight"].shape == (64, 4) and before["video_in.weight"].shape == (64, 24)
    shared = [k for k in before if not k.startswith(("video_in.", "video_out."))]
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in shared)
    out = pipe("A red ball falls.", seconds=0.75, num_inference_steps=2, seed=0)
    assert out.frames.shape == (1, 9, 32, 32, 3)
    with pytest.raises(ValueError, match="video_patch"):
        build_run_components(TrainConfig.from_dict({**cfg.to_dict(), "video_patch": (4, 8, 8)}))
    with pytest.raises(FileNotFoundError, match="not a codec directory"):
        build_run_components(TrainConfig.from_dict({**cfg.to_dict(), "video_codec": str(tmp_path)}))


def test_edge_term_charges_blurred_edges_not_uniform_offsets():
    """`edge_weight` adds the error's neighbour differences: zero for an error that is the same at every
    pixel (a colour offset), more than zero for an outline drawn soft."""
    codec = CodecTrainConfig.from_dict(TINY).build()
    frames = torch.zeros(1, 9, 32, 32, 3, dtype=torch.uint8)
    frames[:, :, 8:20, 8:20] = 255
    coverage = (frames[..., 0] > 0).float()
    cells = codec.to_cells(frames)
    blurred = torch.nn.functional.avg_pool2d(cells, 3, stride=1, padding=1, count_include_pad=False)
    for reconstruction, charged in ((cells + 0.1, False), (blurred, True)):
        codec.encode_cells = lambda c: c
        codec.decode_cells = lambda z, r=reconstruction: r
        plain = reconstruction_loss(codec, frames, coverage, 5.0, 0.0)
        edged = reconstruction_loss(codec, frames, coverage, 5.0, 0.0, edge_weight=1.0)
        assert (edged.item() > plain.item() + 1e-3) == charged
        assert edged.item() >= plain.item() - 1e-6


def test_object_margin_makes_a_halo_cost_what_a_lost_edge_costs():
    """Weighted on the object alone, painting a ring of object colour around it (a halo, which rounds
    boxes into balls) is cheaper than losing the object's own outer ring; weighted within a margin
    around it too, it is not."""
    codec = CodecTrainConfig.from_dict(TINY).build()
    codec.encode_cells = lambda c: c
    frames = torch.zeros(1, 9, 32, 32, 3, dtype=torch.uint8)
    frames[:, :, 10:20, 10:20] = 255
    coverage = (frames[..., 0] > 0).float()
    grown, shrunk = frames.clone(), frames.clone()
    grown[:, :, 9:21, 9:21] = 255
    shrunk[:, :, 10:20, 10:20] = 0
    shrunk[:, :, 11:19, 11:19] = 255

    def cost(decoded, margin):
        codec.decode_cells = lambda z: codec.to_cells(decoded)
        return reconstruction_loss(codec, frames, coverage, 20.0, 0.0, object_margin=margin).item()

    assert cost(grown, 0) < 0.25 * cost(shrunk, 0)
    assert cost(grown, 2) >= cost(shrunk, 2)
    with pytest.raises(ValueError, match="object_margin"):
        CodecTrainConfig.from_dict({**TINY, "object_margin": -1})


def test_bfloat16_precision_trains_the_codec_in_it_and_old_runs_resume_in_float32(tmp_path):
    """bfloat16 autocast (1.7x the steps a second on a native-bf16 CPU) follows float32's losses and keeps
    the weights float32; a run saved before `precision` existed resumes in float32, as it ran."""
    base = {**TINY, "max_steps": 3}
    runs = {}
    for precision in ("float32", "bfloat16"):
        cfg = CodecTrainConfig.from_dict({**base, "precision": precision})
        runs[precision] = train_codec(cfg, tmp_path / precision, log=quiet, device="cpu")
    steps = {p: [r for r in records(tmp_path / p) if "loss" in r] for p in runs}
    assert [r["step"] for r in steps["bfloat16"]] == [1, 2, 3]
    for ours, exact in zip(steps["bfloat16"], steps["float32"], strict=True):
        assert ours["loss"] == pytest.approx(exact["loss"], rel=0.03), ours["step"]
    assert steps["bfloat16"][0]["loss"] != steps["float32"][0]["loss"]  # it did compute in bfloat16
    codec = Codec.from_pretrained(tmp_path / "bfloat16" / "codec")
    assert all(p.dtype == torch.float32 for p in codec.parameters())
    with pytest.raises(ValueError, match="precision must be auto, float32 or bfloat16"):
        CodecTrainConfig.from_dict({**TINY, "precision": "float16"})
    # an old run: its config.json has no precision; resumed, it goes on in float32 and says so
    old = tmp_path / "old"
    train_codec(CodecTrainConfig.from_dict({**base, "precision": "float32"}), old, max_steps=1, log=quiet)
    saved = json.loads((old / "config.json").read_text())
    del saved["precision"]
    (old / "config.json").write_text(json.dumps(saved))
    resumed = train_codec(CodecTrainConfig.from_dict({**base, "precision": "bfloat16"}), old, resume=True, log=quiet)
    assert json.loads((old / "config.json").read_text())["precision"] == "float32"
    assert resumed["log"]["loss"] == pytest.approx(runs["float32"]["log"]["loss"], rel=1e-5)
