"""World clips: determinism, splits, sound onsets, captions and ground truth."""

import json
import re

import cv2
import numpy as np
import pytest

from happyhorse.world import HELD_OUT, WorldConfig, is_held_out, make_clip, sample_scene, write_sample
from happyhorse.world.caption import TIMES
from happyhorse.world.scene import COLOURS, MOTIONS, SHAPES
from happyhorse.world.sound import impact


def test_same_seed_gives_identical_bytes_and_other_seeds_differ():
    a, b, c = make_clip(11), make_clip(11), make_clip(12)
    assert a.frames.tobytes() == b.frames.tobytes()
    assert a.audio.tobytes() == b.audio.tobytes()
    assert json.dumps(a.meta) == json.dumps(b.meta) and a.caption == b.caption
    assert a.frames.tobytes() != c.frames.tobytes()
    assert make_clip(11, "test").frames.tobytes() != a.frames.tobytes()


def test_held_out_compositions_never_occur_in_train_and_always_in_test():
    assert len(HELD_OUT) == 9
    # every colour, shape and motion, and every pair of them, still occurs in train
    for c in COLOURS:
        for s in SHAPES:
            assert any(not is_held_out(c, s, m) for m in MOTIONS)
    for seed in range(3000):
        for o in sample_scene(seed, "train", 64, 64).objects:
            assert (o.colour, o.shape, o.motion) not in HELD_OUT, seed
    for seed in range(300):
        first = sample_scene(seed, "test", 64, 64).objects[0]
        assert (first.colour, first.shape, first.motion) in HELD_OUT


@pytest.mark.parametrize("sr", [8000, 16000, 44100])
def test_impact_sound_starts_on_the_sample_of_its_event(sr):
    rng = np.random.default_rng(0)
    for time in rng.uniform(0, 2, 50):
        for material in ("rubber", "wood", "metal", "glass", "plastic"):
            start, wave = impact(float(time), 3.0, material, False, sr, rng)
            assert time * sr <= start < time * sr + 1  # within one audio sample, never early
            assert wave[0] != 0 and np.abs(wave).max() > 0.1


def test_clip_audio_is_silent_until_the_first_impact_and_louder_for_harder_hits():
    checked = 0
    for seed in range(60):
        clip = make_clip(seed)
        audible = [e for e in clip.meta["events"] if e["audible"]]
        if clip.meta["scene"]["ambience"] or not audible:
            continue
        first = audible[0]["audio_sample"]
        assert first == int(np.ceil(audible[0]["time"] * clip.sample_rate - 1e-9))
        assert np.all(clip.audio[:, :first] == 0) and clip.audio[0, first] != 0
        checked += 1
    assert checked >= 10
    rng = np.random.default_rng(1)
    soft = np.abs(impact(0.5, 1.0, "wood", True, 16000, rng)[1]).max()
    hard = np.abs(impact(0.5, 5.0, "wood", True, 16000, rng)[1]).max()
    assert hard > 2 * soft


def test_ground_truth_matches_frames_and_contract():
    clip = make_clip(4)
    meta = clip.meta
    for key in ("caption", "seed", "split", "fps", "sample_rate", "size", "scene", "frames", "events"):
        assert key in meta or key == "caption"
    assert len(meta["frames"]) == clip.frames.shape[0] == 24
    assert clip.audio.shape == (1, 32000)
    for obj in meta["scene"]["objects"]:
        assert {"shape", "colour", "size", "material", "restitution", "friction"} <= set(obj)
    for event in meta["events"]:
        assert {"time", "kind", "objects", "speed"} <= set(event)
    # the object's ground-truth pixel centre is painted in its colour
    for k, frame in enumerate(meta["frames"]):
        for obj, state in zip(meta["scene"]["objects"], frame["objects"], strict=True):
            col, row = (int(v) for v in state["pixel"])
            if 0 <= row < 64 and 0 <= col < 64 and obj["material"] != "glass":
                got = clip.frames[k, row, col].astype(int)
                assert np.abs(got - np.array(obj["rgb"])).max() < 80, (k, obj["colour"], got)


def test_captions_state_the_scene_facts():
    for seed in range(80):
        clip = make_clip(seed, "test" if seed % 2 else "train")
        facts = clip.meta["facts"]
        assert len(clip.meta["captions"]) >= 2 and len(set(clip.meta["captions"])) == len(clip.meta["captions"])
        for caption in clip.meta["captions"]:
            text = caption.lower()
            for obj in facts["objects"]:
                assert obj["colour"] in text
                if obj["motion"] in ("throw", "slide"):
                    assert f"to the {obj['direction']}" in text
            if facts["count"] == 1 and facts["objects"][0]["motion"] == "drop":
                bounces = facts["objects"][0]["bounces"]
                expected = TIMES.get(bounces, "several times") if bounces else "without bouncing"
                assert expected in text
            if facts["ambience"]:
                assert re.search({"rain": "rain", "wind": "wind", "hum": "hum"}[facts["ambience"]], text)


@pytest.mark.parametrize("size", [(112, 64), (36, 64), (64, 64), (160, 90)])
def test_any_aspect_ratio_keeps_objects_in_view(size):
    config = WorldConfig(width=size[0], height=size[1], fps=10, seconds=1.0, sample_rate=8000)
    for seed in range(5):
        clip = make_clip(seed, config=config)
        assert clip.frames.shape == (10, size[1], size[0], 3)
        assert clip.audio.shape == (1, 8000)
        assert all(o["visible"] for f in clip.meta["frames"] for o in f["objects"])


def test_bad_config_is_refused_with_the_argument_named():
    with pytest.raises(ValueError, match="size"):
        WorldConfig(width=8)
    with pytest.raises(ValueError, match="fps"):
        WorldConfig(fps=0)
    with pytest.raises(ValueError, match="split"):
        make_clip(0, "validation")


def test_dataset_batches_clips():
    import torch
    from torch.utils.data import DataLoader

    from happyhorse.world.dataset import WorldDataset

    loader = DataLoader(WorldDataset(6, "train"), batch_size=3)
    batch = next(iter(loader))
    assert batch["video"].shape == (3, 24, 64, 64, 3) and batch["video"].dtype == torch.uint8
    assert batch["audio"].shape == (3, 1, 32000)
    assert len(batch["caption"]) == 3 and batch["seed"].tolist() == [0, 1, 2]
    assert torch.equal(batch["video"][1], torch.from_numpy(make_clip(1).frames))


def test_object_coverage_is_the_object_mask_and_leaves_frames_and_sidecars_alone(tmp_path):
    plain, masked = make_clip(5), make_clip(5, object_coverage=True)
    assert np.array_equal(plain.frames, masked.frames)
    covered = masked.meta["object_coverage"]
    assert covered.shape == plain.frames.shape[:3] and covered.dtype == np.uint8
    # covered pixels are the saturated object colours, the rest the muted room (the tracker's split)
    sat = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2HSV) for f in plain.frames])[..., 1] > 100
    assert 0 < (covered > 127).mean() < 0.2
    assert ((covered > 127) == sat).mean() > 0.99
    # each object's centre is covered in every frame where it is in view
    for k, frame in enumerate(masked.meta["frames"]):
        for state in frame["objects"]:
            col, row = (int(v) for v in state["pixel"])
            if 0 <= row < 64 and 0 <= col < 64:
                assert covered[k, row, col] == 255
    _, sidecar = write_sample(masked, tmp_path, "clip")
    assert "object_coverage" not in json.loads(sidecar.read_text())
