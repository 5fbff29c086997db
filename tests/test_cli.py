import json
import subprocess
import sys

from typer.testing import CliRunner

from happyhorse.cli import app
from happyhorse.media import read_video

runner = CliRunner()


def test_world_sample_writes_mp4_and_sidecar(tmp_path):
    result = runner.invoke(
        app,
        [
            "world",
            "sample",
            "--seed",
            "5",
            "--count",
            "2",
            "--split",
            "test",
            "--size",
            "96x64",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["test_000005.json", "test_000005.mp4", "test_000006.json", "test_000006.mp4"]
    meta = json.loads((tmp_path / "test_000005.json").read_text())
    assert meta["split"] == "test" and meta["size"] == [96, 64] and meta["caption"]
    clip = read_video(tmp_path / "test_000005.mp4")
    assert clip.frames.shape == (24, 64, 96, 3) and clip.audio.shape == (1, 32000)


def test_world_sample_rejects_bad_arguments_by_name(tmp_path):
    for args, needle in [
        (["--size", "64"], "--size"),
        (["--size", "8x8"], "--size"),
        (["--split", "val"], "--split"),
        (["--fps", "0"], "--fps"),
        (["--count", "0"], "--count"),
    ]:
        result = runner.invoke(app, ["world", "sample", "--out", str(tmp_path), *args])
        assert result.exit_code == 2, args
        assert needle in result.output, (args, result.output)
    assert list(tmp_path.iterdir()) == []


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "happyhorse", "--help"], capture_output=True, text=True, check=True)
    assert "world" in out.stdout


def test_generate_passes_its_options_through_and_refuses_bad_values_by_flag(tmp_path):
    """--steps/--guidance/--audio-guidance/--seconds/--size/--fps reach the sidecar by the pipeline's names;
    a value the pipeline refuses exits 2 naming the flag, before any clip is written."""
    from tests.conftest import tiny_pipeline

    tiny_pipeline().save_pretrained(tmp_path / "m")
    out = tmp_path / "clip.mp4"
    base = ["generate", "a red ball", "--model", str(tmp_path / "m"), "--output", str(out)]
    flags = ["--steps", "2", "--guidance", "3", "--audio-guidance", "2", "--seconds", "1", "--size", "48x32"]
    result = runner.invoke(app, base + flags + ["--fps", "8", "--seed", "4"])
    assert result.exit_code == 0, result.output
    settings = json.loads(out.with_suffix(".json").read_text())["settings"]
    assert (settings["num_inference_steps"], settings["guidance_scale"], settings["audio_guidance_scale"]) == (2, 3, 2)
    assert (settings["width"], settings["height"], settings["fps"], settings["seed"]) == (48, 32, 8.0, 4)
    for args, option, needle in [
        (["--steps", "0"], "--steps", "must be an integer in 1..1000"),
        (["--guidance", "-1"], "--guidance", "must be a number in [0, 30]"),
        (["--size", "30x32"], "--size", "width: must be a multiple of 8"),
        (["--seconds", "90"], "--seconds", "must be in (0, 60]"),
        (["--fps", "0"], "--fps", "must be a number in [1, 120]"),
    ]:
        result = runner.invoke(app, base[:-1] + [str(tmp_path / "bad.mp4")] + args)
        text = " ".join(result.output.replace("│", " ").split())
        assert result.exit_code == 2 and option in text and needle in text, (args, result.output)
    assert not (tmp_path / "bad.mp4").exists()


def test_bad_paths_and_inputs_are_refused_by_name_before_any_work(tmp_path):
    """A path under a regular file, a file that is not a report, a corrupt clip, a bad database URL:
    each command exits 2 with the option named, not a traceback, and writes nothing."""
    blocker = tmp_path / "a_file.txt"
    blocker.write_text("not a directory\n")
    (tmp_path / "fake.json").write_text('{"metrics": {"x": 1}}')
    under = str(blocker / "sub")
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "bad.mp4").write_bytes(b"not an mp4 at all" * 10)
    db = f"sqlite:///{tmp_path / 'arena.db'}"
    cases = [
        (["world", "sample", "--seed", "-5", "--out", str(tmp_path / "w")], "--seed", "greater than or equal to 0"),
        (["world", "sample", "--size", "65x63", "--out", str(tmp_path / "w")], "--size", "even sizes only"),
        (["world", "sample", "--out", under], "--out", "cannot create the directory"),
        (["generate", "a red ball", "--output", f"{under}/a.mp4"], "--output", "cannot create the directory"),
        (["train", "tiny", "--out", under, "--max-steps", "1"], "--out", "cannot create the directory"),
        (["train", str(tmp_path / "missing.toml")], "CONFIG", "no such file"),
        (["eval", "--clips", str(clips), "--out", under], "--out", "cannot create the directory"),
        (["eval", "--clips", str(clips), "--out", str(tmp_path / "e")], "--clips", "bad.mp4"),
        (["eval", "--compare", str(blocker), "--compare", str(blocker)], "--compare", "not a report.json"),
        (["arena", "init", "--db", db, "--fps", "-1"], "--fps", "fps: must be in 1..120"),
        (["arena", "init", "--db", db, "--seconds", "0"], "--seconds", "seconds: must be in"),
        (["arena", "leaderboard", "--db", "bogus://"], "--db", "bogus"),
        (["eval", "--model", str(tmp_path / "no_model"), "--out", str(tmp_path / "e2")], "--model", "not a model"),
        (
            ["eval", "--compare", str(tmp_path / "fake.json"), "--compare", str(tmp_path / "fake.json")],
            "--compare",
            "metric objects",
        ),
        (["arena", "init", "--db", f"sqlite:///{under}/a.db"], "--db", "cannot open"),
        (["arena", "init", "--db", db, "--media", under], "--media", "cannot create the directory"),
    ]
    for args, option, needle in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        text = " ".join(result.output.replace("│", " ").split())  # Rich wraps the message in a box
        assert option in text and needle in text, (args, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file.txt", "clips", "e", "fake.json"]
    assert list((tmp_path / "e").iterdir()) == []
