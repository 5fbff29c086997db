"""The video refiner: identity at init, a pipeline component that saves, loads and can be turned off,
and a training recipe (SDEdit pairs -> object-weighted L1) that learns a systematic corruption."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from happyhorse import HappyHorsePipeline
from happyhorse.cli import app
from happyhorse.model.refiner import RefinerConfig, VideoRefiner
from happyhorse.train.refiner import (
    RefinerTrainConfig,
    load_pairs,
    make_pairs,
    train_refiner,
    windows,
    write_pairs,
)
from tests.conftest import tiny_pipeline

SMALL = dict(channels=(4, 8, 8), blocks=(1, 1))


def trained_looking(seed: int = 0) -> VideoRefiner:
    """A refiner whose head is not zero, so that it changes what it is given."""
    torch.manual_seed(seed)
    refiner = VideoRefiner(RefinerConfig(**SMALL))
    torch.nn.init.normal_(refiner.head.weight, std=0.1)
    return refiner


def test_an_untrained_refiner_returns_its_input_exactly():
    frames = torch.randint(0, 256, (2, 5, 16, 24, 3), dtype=torch.uint8)
    assert torch.equal(VideoRefiner(RefinerConfig(**SMALL)).refine(frames), frames)
    assert not torch.equal(trained_looking().refine(frames), frames)


@pytest.mark.parametrize(
    "kwargs, needle",
    [(dict(channels=(4, 8)), "channels"), (dict(channels=(4, 0, 8)), "channels"), (dict(blocks=(1, -1)), "blocks")],
)
def test_bad_refiner_configs_name_the_field(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        RefinerConfig(**kwargs)
    with pytest.raises(ValueError, match="unknown keys"):
        RefinerConfig.from_dict({"channels": [4, 8, 8], "width": 3})


def test_frames_whose_sides_are_not_multiples_of_four_are_refused():
    with pytest.raises(ValueError, match="multiples of 4"):
        VideoRefiner(RefinerConfig(**SMALL))(torch.zeros(1, 3, 18, 16, 3))


def test_the_pipeline_refines_by_default_saves_its_refiner_and_can_go_without(tmp_path):
    plain = tiny_pipeline()("a red ball", seed=1)
    pipe = tiny_pipeline()
    pipe.refiner = trained_looking()
    refined = pipe("a red ball", seed=1)
    assert refined.settings["refine"] is True and plain.settings["refine"] is False
    assert not np.array_equal(refined.frames, plain.frames)
    assert np.array_equal(refined.audio, plain.audio)  # the sound is not the refiner's
    unrefined = pipe("a red ball", seed=1, refine=False)
    assert np.array_equal(unrefined.frames, plain.frames) and unrefined.settings["refine"] is False
    expected = pipe.refiner.refine(torch.from_numpy(plain.frames)).numpy()
    assert np.array_equal(refined.frames, expected)  # it redraws the decoded frames, nothing else

    pipe.save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "model_index.json").read_text())["refiner"] == "VideoRefiner"
    assert (tmp_path / "m" / "refiner" / "model.safetensors").is_file()
    loaded = HappyHorsePipeline.from_pretrained(tmp_path / "m")
    assert np.array_equal(loaded("a red ball", seed=1).frames, refined.frames)

    with pytest.raises(ValueError, match="refine: this model has no refiner"):
        tiny_pipeline()("a red ball", refine=True)


def test_a_given_first_frame_is_kept_exactly_through_the_refiner(tmp_path):
    pipe = tiny_pipeline()
    pipe.refiner = trained_looking()
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = pipe("a box slides", image=image, seed=0)
    assert np.array_equal(out.frames[0, 0], image)


def synthetic_pairs(directory, clips: int = 12):
    """World clips (the truth) beside a systematic corruption of them (red raised, green lowered): what a
    refiner must learn to undo. One chunk, written as write_pairs writes them."""
    from happyhorse.world import WorldConfig, make_clip

    world = WorldConfig(32, 32, 12.0, 9 / 12)
    truth = np.stack([make_clip(s, "train", world, ground_truth=False).frames for s in range(clips)])
    generated = truth.astype(int)
    generated[..., 0] += 40
    generated[..., 1] -= 40
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / "pairs_000.npz", generated=np.clip(generated, 0, 255).astype(np.uint8), truth=truth)
    return directory


def test_training_learns_to_undo_a_systematic_corruption_and_resumes(tmp_path):
    pairs = synthetic_pairs(tmp_path / "pairs")
    cfg = RefinerTrainConfig(
        **SMALL, window=5, batch=4, lr=3e-3, warmup_steps=5, max_steps=150, ema_decay=0.9, validation_clips=3
    )
    logs = []
    train_refiner(cfg, pairs, tmp_path / "run", minutes=1e-6, log=logs.append)  # stops after one step
    assert json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())["step"] == 1
    with open(tmp_path / "run" / "log.jsonl", "a") as log:  # as if it had died after logging step 2
        log.write(json.dumps({"step": 2, "loss": 0.0, "lr": 0.0}) + "\n")
    train_refiner(cfg, pairs, tmp_path / "run", log=logs.append)
    assert "resumed from step 1" in logs
    train_refiner(cfg, pairs, tmp_path / "whole", log=lambda _: None)  # the same run, never interrupted
    assert_same_weights(tmp_path / "run" / "refiner", tmp_path / "whole" / "refiner")
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 151))
    last = records[-1]
    assert last["val_loss"] < 0.5 * last["identity_loss"], last  # the held-out clips are mended
    refiner = VideoRefiner.from_pretrained(tmp_path / "run" / "refiner")
    generated, truth = load_pairs(pairs)
    before = np.abs(generated[-1].astype(int) - truth[-1]).mean()
    after = np.abs(refiner.refine(torch.from_numpy(generated[-1:])).numpy().astype(int) - truth[-1]).mean()
    assert after < 0.5 * before
    with pytest.raises(ValueError, match="another config"):
        train_refiner(RefinerTrainConfig(**SMALL, window=5, max_steps=151, validation_clips=3), pairs, tmp_path / "run")
    with pytest.raises(ValueError, match="window: 12 frames, longer than the pairs' 9"):
        train_refiner(RefinerTrainConfig(**SMALL, window=12, validation_clips=3), pairs, tmp_path / "other")


def assert_same_weights(a, b):
    from safetensors.torch import load_file

    wa, wb = (load_file(str(d / "model.safetensors")) for d in (a, b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_training_windows_mirror_the_sample_and_the_truth_together():
    rng = np.random.default_rng(0)
    generated = rng.integers(0, 256, (3, 7, 4, 8, 3), dtype=np.uint8)
    truth = 255 - generated  # a pixel of the truth still tells which pixel of the sample it sits beside
    g, r = windows(generated, truth, np.array([0, 1, 2, 0, 1, 2, 0, 1]), 4, rng)
    assert g.shape == r.shape == (8, 4, 4, 8, 3)
    assert torch.allclose(g, -r, atol=1e-6)  # still paired pixel for pixel after any mirroring
    as_uint8 = ((g + 1) * 127.5).round().to(torch.uint8).numpy()
    mirrored = 0
    for w, clip in zip(as_uint8, [0, 1, 2, 0, 1, 2, 0, 1], strict=True):
        plain = any(np.array_equal(w, generated[clip, s : s + 4]) for s in range(4))
        flipped = any(np.array_equal(w, generated[clip, s : s + 4, :, ::-1]) for s in range(4))
        assert plain or flipped
        mirrored += flipped and not plain
    assert 0 < mirrored < 8  # left-right mirrored some of the time (the world has no handedness)


def test_pairs_are_the_models_samples_from_the_truth_noised_part_way(tmp_path):
    pipe = tiny_pipeline()
    pairs = make_pairs(pipe, range(5, 8), batch=2)
    assert pairs["generated"].shape == pairs["truth"].shape == (3, 9, 32, 32, 3)
    assert pairs["generated"].dtype == np.uint8
    assert set(pairs["start"].tolist()) == {2}  # a 3-step schedule (sigmas 1, s1, s2, 0) starts all from s2
    from happyhorse.world import WorldConfig, make_clip

    truth = make_clip(6, "train", WorldConfig(32, 32, 12.0, 9 / 12), ground_truth=False).frames
    assert np.array_equal(pairs["truth"][1], truth)
    assert np.array_equal(make_pairs(pipe, range(5, 8), batch=2)["generated"], pairs["generated"])  # seeded

    tiny_pipeline(seed=0).save_pretrained(tmp_path / "a")
    tiny_pipeline(seed=1).save_pretrained(tmp_path / "b")
    write_pairs(tmp_path / "a", tmp_path / "pairs", chunks=1, clips_per_chunk=2, log=lambda _: None)
    with pytest.raises(ValueError, match="another model"):
        write_pairs(tmp_path / "b", tmp_path / "pairs", chunks=2, clips_per_chunk=2)


def flat(output: str) -> str:
    """Rich's error box as one line of words."""
    return " ".join(output.replace("│", " ").split())


def test_train_refiner_command_makes_pairs_trains_and_ships(tmp_path):
    tiny_pipeline().save_pretrained(tmp_path / "model")
    config = tmp_path / "refiner.toml"
    config.write_text(
        "channels = [4, 8, 8]\nblocks = [1, 1]\nwindow = 5\nbatch = 2\nmax_steps = 4\nwarmup_steps = 1\n"
        "validation_clips = 2\npair_chunks = 2\nclips_per_chunk = 3\n"
    )
    run = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["train-refiner", str(config), "--model", str(tmp_path / "model"), "--out", str(run)]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (run / "pairs").glob("pairs_*.npz")) == ["pairs_000.npz", "pairs_001.npz"]
    assert (run / "refiner" / "model.safetensors").is_file()

    bad = tmp_path / "bad.toml"
    for text, needle in [
        ("window = 0\n", "window: must be >= 1"),
        ('lr = "x"\n', "lr: must be a number"),
        ("ema_decay = 1.0\n", "ema_decay"),
        ("channels = 3\n", "channels: a list of integers"),
        ("validation_clips = 5\npair_chunks = 1\nclips_per_chunk = 5\n", "validation_clips: must be fewer"),
        ("windw = 3\n", "unknown keys"),
        ("window = [\n", "does not parse"),
    ]:
        bad.write_text(text)
        result = CliRunner().invoke(app, ["train-refiner", str(bad), "--out", str(tmp_path / "r2")])
        assert result.exit_code == 2 and needle in flat(result.output), (text, result.output)
    assert not (tmp_path / "r2").exists()  # refused before any pairs are made
    result = CliRunner().invoke(app, ["train-refiner", str(config), "--model", str(tmp_path), "--out", str(run)])
    assert result.exit_code == 2 and "not a model directory" in flat(result.output)


def test_ship_default_model_adds_or_drops_a_refiner(tmp_path, monkeypatch):
    from tests.test_ship_default_model import _run

    tiny_pipeline().save_pretrained(tmp_path / "model")
    trained_looking().save_pretrained(tmp_path / "refiner")
    _run(
        "ship_default_model",
        [str(tmp_path / "model"), "--refiner", str(tmp_path / "refiner"), "--out", str(tmp_path / "with")],
        monkeypatch,
    )
    assert HappyHorsePipeline.from_pretrained(tmp_path / "with").refiner is not None
    _run(
        "ship_default_model", [str(tmp_path / "with"), "--no-refiner", "--out", str(tmp_path / "without")], monkeypatch
    )
    assert HappyHorsePipeline.from_pretrained(tmp_path / "without").refiner is None
    both = ["--refiner", str(tmp_path / "refiner"), "--no-refiner", "--out", str(tmp_path / "y")]
    with pytest.raises(SystemExit):
        _run("ship_default_model", [str(tmp_path / "model"), *both], monkeypatch)
    assert not (tmp_path / "y").exists()
    with pytest.raises(SystemExit):
        _run(
            "ship_default_model",
            [str(tmp_path / "model"), "--refiner", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")],
            monkeypatch,
        )
    assert not (tmp_path / "x").exists()


def test_the_adversarial_recipe_trains_against_a_discriminator_and_resumes_it(tmp_path):
    pairs = synthetic_pairs(tmp_path / "pairs", clips=6)
    cfg = RefinerTrainConfig(
        **SMALL,
        window=5,
        batch=2,
        max_steps=3,
        warmup_steps=1,
        validation_clips=2,
        target="input",
        adversarial_weight=0.5,
    )
    logs = []
    train_refiner(cfg, pairs, tmp_path / "run", minutes=1e-6, log=logs.append)
    assert (tmp_path / "run" / "discriminator" / "state.json").is_file()
    train_refiner(cfg, pairs, tmp_path / "run", log=logs.append)
    train_refiner(cfg, pairs, tmp_path / "whole", log=lambda _: None)  # the discriminator resumed too
    assert_same_weights(tmp_path / "run" / "refiner", tmp_path / "whole" / "refiner")
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3] and "resumed from step 1" in logs
    assert all("discriminator_loss" in r and "adversarial_loss" in r for r in records)
    assert records[-1]["change"] > 0  # it moved its input: the discriminator's gradient reached it
    with pytest.raises(ValueError, match="adversarial_weight > 0"):
        RefinerTrainConfig(target="input")
    with pytest.raises(ValueError, match="target"):
        RefinerTrainConfig(target="noise")


def test_the_sdedit_bench_scores_unrefined_refined_and_truth_on_the_same_clips(tmp_path, monkeypatch):
    import importlib.util
    import sys
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "refiner_sdedit", Path(__file__).resolve().parents[1] / "bench" / "refiner_sdedit.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    pipe = tiny_pipeline()
    pipe.refiner = trained_looking()
    pipe.save_pretrained(tmp_path / "m")
    out = tmp_path / "s.json"
    monkeypatch.setattr(
        sys, "argv", ["refiner_sdedit.py", "--model", str(tmp_path / "m"), "--count", "3", "--json", str(out)]
    )
    bench.main()
    rows = json.loads(out.read_text())["rows"]
    assert [r["point"] for r in rows] == ["sdedit", "sdedit+refiner", "truth"]
    assert all(sorted(c["name"] for c in r["clips"]) == ["000.mp4", "001.mp4", "002.mp4"] for r in rows)
    assert rows[2]["metrics"]["colour_accuracy"]["value"] == 1.0  # the truth's own clips read back right
    tiny_pipeline().save_pretrained(tmp_path / "plain")
    monkeypatch.setattr(sys, "argv", ["refiner_sdedit.py", "--model", str(tmp_path / "plain")])
    with pytest.raises(SystemExit):
        bench.main()


def test_bfloat16_precision_follows_float32_and_may_change_on_resume(tmp_path):
    """The refiner and its discriminator under bfloat16 autocast train as in float32 within rounding;
    precision, like max_steps, may change when a run resumes, another setting may not."""
    pairs = synthetic_pairs(tmp_path / "pairs", clips=6)
    settings = dict(SMALL, window=5, batch=2, max_steps=3, warmup_steps=1, validation_clips=2)
    settings.update(target="input", adversarial_weight=0.5)
    records = {}
    for precision in ("float32", "bfloat16"):
        logs = []
        train_refiner(RefinerTrainConfig(**settings, precision=precision), pairs, tmp_path / precision, log=logs.append)
        assert any(f"in {precision}" in line for line in logs)
        lines = (tmp_path / precision / "log.jsonl").read_text().splitlines()
        records[precision] = [json.loads(line) for line in lines]
    for ours, exact in zip(records["bfloat16"], records["float32"], strict=True):
        for key in ("loss", "adversarial_loss", "discriminator_loss"):
            assert ours[key] == pytest.approx(exact[key], rel=0.05, abs=1e-3), key
    assert records["bfloat16"][-1]["discriminator_loss"] != records["float32"][-1]["discriminator_loss"]
    refiner = VideoRefiner.from_pretrained(tmp_path / "bfloat16" / "refiner")
    assert all(p.dtype == torch.float32 for p in refiner.parameters())
    longer = dict(settings, max_steps=4)
    logs = []
    train_refiner(RefinerTrainConfig(**longer, precision="bfloat16"), pairs, tmp_path / "float32", log=logs.append)
    assert "resumed from step 3" in logs
    with pytest.raises(ValueError, match="another config"):
        train_refiner(RefinerTrainConfig(**dict(longer, lr=1e-2)), pairs, tmp_path / "float32", log=logs.append)
    with pytest.raises(ValueError, match="precision: must be auto, float32 or bfloat16"):
        RefinerTrainConfig(precision="half")
