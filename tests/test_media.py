import json
import subprocess

import av
import numpy as np
import pytest
from PIL import Image

from happyhorse.media import MediaError, read_audio, read_image, read_video, save_audio, save_video
from tests.conftest import require_tool


def _moving_square(t=24, h=48, w=64):
    frames = np.full((t, h, w, 3), 40, np.uint8)
    for i in range(t):
        frames[i, 10:26, 2 * i : 2 * i + 16] = (220, 60, 30)
    return frames


def _tone_burst(n, sr, at, channels=1):
    audio = np.zeros((channels, n), np.float32)
    k = np.arange(int(0.05 * sr))
    audio[:, at : at + k.size] = 0.5 * np.sin(2 * np.pi * 440 * k / sr) * np.exp(-k / (0.02 * sr))
    return audio


@pytest.mark.parametrize("channels,sr", [(1, 16000), (2, 44100), (1, 8000)])
def test_round_trip_keeps_frames_fps_duration_and_sound(tmp_path, channels, sr):
    frames = _moving_square()
    n = int(24 / 12 * sr)
    audio = _tone_burst(n, sr, at=sr // 2, channels=channels)
    path = save_video(tmp_path / "a.mp4", frames, 12, audio, sr)
    clip = read_video(path)
    assert clip.frames.shape == frames.shape
    assert clip.fps == 12
    assert abs(clip.seconds - 2.0) < 1e-9
    assert clip.sample_rate == sr and clip.audio.shape == (channels, n)
    assert np.abs(clip.frames.astype(int) - frames).mean() < 3  # lossy, but close
    # the burst is audible and where it was put: onset within 2 ms
    onset = int(np.argmax(np.abs(clip.audio[0]) > 0.05))
    assert abs(onset - sr // 2) <= 0.002 * sr
    assert np.sqrt(np.mean(clip.audio**2)) > 0.01


def test_odd_size_is_padded_to_even_and_unsupported_rate_resampled(tmp_path):
    frames = _moving_square(h=47, w=63)
    audio = _tone_burst(22000, 11000, at=5000)
    clip = read_video(save_video(tmp_path / "odd.mp4", frames, 12, audio, 11000))
    assert clip.frames.shape[1:3] == (48, 64)
    assert clip.sample_rate == 11025


def test_mp4_is_h264_aac_faststart(tmp_path):
    frames = _moving_square()
    path = save_video(tmp_path / "s.mp4", frames, 12, _tone_burst(32000, 16000, 100), 16000)
    head = path.read_bytes()[:4096]
    assert head.find(b"moov") != -1 and head.find(b"moov") < max(head.find(b"mdat"), 4096)
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
        assert c.streams.audio[0].codec_context.name == "aac"


def test_ffprobe_sees_h264_and_aac_of_matching_duration(tmp_path):
    ffprobe = require_tool("ffprobe")
    path = save_video(tmp_path / "p.mp4", _moving_square(), 12, _tone_burst(32000, 16000, 100), 16000)
    out = subprocess.run(
        [ffprobe, "-v", "error", "-show_entries", "stream=codec_name,duration", "-of", "json", str(path)],
        capture_output=True,
        check=True,
        text=True,
    )
    streams = {s["codec_name"]: float(s["duration"]) for s in json.loads(out.stdout)["streams"]}
    assert set(streams) == {"h264", "aac"}
    assert abs(streams["h264"] - streams["aac"]) < 0.03


def test_the_same_clip_is_written_to_the_same_bytes(tmp_path):
    """World clips are fixed byte for byte by (seed, split), and an evaluation's ground truth must read
    the same every run: the H.264 stream may not depend on what was encoded before. Before the fix two
    of these clips came out differently on each write. (The other cause, x264's macroblock tree coding
    differently from one process to the next after a model had sampled, showed only across processes
    running the default model; no test here reproduces it, so media.py says why the tree is off.)"""
    from happyhorse.world import WorldConfig, make_clip

    config = WorldConfig(64, 64, 12.0, 25 / 12, 16000, 1)
    clips = [make_clip(seed, "test", config) for seed in (122, 125, 128)]
    written = []
    for _ in range(3):
        for k, clip in enumerate(clips):
            path = save_video(tmp_path / f"{k}.mp4", clip.frames, clip.fps, clip.audio, clip.sample_rate)
            written.append((k, path.read_bytes()))
    for k in range(len(clips)):
        assert len({data for j, data in written if j == k}) == 1


def test_repeatable_false_turns_the_macroblock_tree_back_on(tmp_path):
    frames = _moving_square()
    tree = save_video(tmp_path / "tree.mp4", frames, 12.0, repeatable=False)
    plain = save_video(tmp_path / "plain.mp4", frames, 12.0)
    assert tree.read_bytes() != plain.read_bytes()  # another coding of the same frames
    assert read_video(tree).frames.shape == frames.shape


def test_failed_write_leaves_no_file(tmp_path):
    target = tmp_path / "bad.mp4"
    with pytest.raises(MediaError, match="dtype uint8"):
        save_video(target, np.zeros((4, 16, 16, 3), np.float32), 12)
    with pytest.raises(MediaError, match="sample_rate"):
        save_video(target, np.zeros((4, 16, 16, 3), np.uint8), 12, np.zeros((1, 100), np.float32), 100)
    with pytest.raises(MediaError, match="fps"):
        save_video(target, np.zeros((4, 16, 16, 3), np.uint8), 0)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_survives_a_failed_overwrite(tmp_path):
    target = save_video(tmp_path / "keep.mp4", _moving_square(), 12)
    before = target.read_bytes()
    with pytest.raises(MediaError):
        save_video(target, np.zeros((0, 16, 16, 3), np.uint8), 12)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.mp4"]


def test_corrupt_empty_and_truncated_inputs_get_clear_errors(tmp_path):
    good = save_video(tmp_path / "g.mp4", _moving_square(), 12, _tone_burst(32000, 16000, 100), 16000)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00not a video at all" * 50)
    truncated = tmp_path / "trunc.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(MediaError, match="empty"):
        read_video(empty)
    with pytest.raises(MediaError, match="not a readable media file"):
        read_video(junk)
    with pytest.raises(MediaError):
        read_video(truncated)
    with pytest.raises(MediaError, match="no such file"):
        read_video(tmp_path / "missing.mp4")
    with pytest.raises(MediaError, match="exceed the limit"):
        read_video(good, max_pixels=100)


def test_read_image_formats_and_decompression_bomb(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "b.png")
    smooth = np.stack([*np.meshgrid(np.arange(30) * 8, np.arange(20) * 12), np.full((20, 30), 90)], -1).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "c.jpg", quality=95)
    assert np.array_equal(read_image(tmp_path / "a.png"), rgb)
    assert np.array_equal(read_image(tmp_path / "b.png"), rgb)
    assert np.abs(read_image(tmp_path / "c.jpg").astype(int) - smooth).mean() < 4
    # PNGs of one colour are tiny on disk and huge decoded: refused from the header, before decoding
    Image.new("1", (15000, 15000)).save(tmp_path / "bomb.png")
    Image.new("1", (5000, 5000)).save(tmp_path / "big.png")
    assert (tmp_path / "bomb.png").stat().st_size < 1_000_000
    with pytest.raises(MediaError, match="decompression bomb"):
        read_image(tmp_path / "bomb.png")
    with pytest.raises(MediaError, match="exceeds the limit"):
        read_image(tmp_path / "big.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(MediaError, match="not a readable image"):
        read_image(tmp_path / "bad.png")


def test_read_audio_from_wav_mp3_and_mp4(tmp_path):
    sr = 16000
    audio = _tone_burst(sr, sr, at=4000)
    wav = save_audio(tmp_path / "a.wav", audio, sr)
    got, rate = read_audio(wav)
    assert rate == sr and got.shape == audio.shape
    assert np.abs(got - audio).max() < 1e-3
    resampled, rate = read_audio(wav, sample_rate=8000)
    assert rate == 8000 and abs(resampled.shape[1] - 8000) <= 2
    mp3 = tmp_path / "a.mp3"
    with av.open(str(mp3), "w") as c:
        s = c.add_stream("libmp3lame", rate=sr, layout="mono")
        for start in range(0, sr, 1152):
            f = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(audio[:, start : start + 1152]), format="fltp", layout="mono"
            )
            f.sample_rate = sr
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    got, rate = read_audio(mp3)
    assert rate == sr and np.abs(got).max() > 0.3
    mp4 = save_video(tmp_path / "v.mp4", _moving_square(t=12), 12, audio, sr)
    got, _ = read_audio(mp4, mono=True)
    assert got.shape[0] == 1 and np.abs(got).max() > 0.3
    with pytest.raises(MediaError, match="longer than"):
        read_audio(wav, max_seconds=0.5)
    with pytest.raises(MediaError, match="no audio stream"):
        read_audio(save_video(tmp_path / "silent.mp4", _moving_square(t=4), 12))
