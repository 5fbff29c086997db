"""Arena battles end to end on world clips: normalisation hides file properties, blind battles and votes,
gold checks, stealth entries sealed, battled, revealed and verified, the web routes, dumps and plots."""

import datetime as dt
import io
import json

import av
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from happyhorse.arena.clips import ArenaFormat
from happyhorse.arena.service import Arena, ArenaError, Conflict, Forbidden, commitment
from happyhorse.arena.web import create_router, padded_pair
from happyhorse.cli import app
from happyhorse.media import read_video
from happyhorse.world import WorldConfig, make_clip, write_sample

SECONDS = 0.5
LATER = dt.timedelta(seconds=5)


def after(battle, delay=LATER):
    """A vote time `delay` after the battle was served (the server's clock, so a loaded machine is no matter)."""
    return dt.datetime.fromisoformat(battle["served_at"].removesuffix("Z")) + delay


def make_entry_dirs(root, seeds=(0, 1, 2)):
    """Three clip directories of the same prompts that differ in size, rate, brightness and loudness."""
    dirs = {}
    for name, (w, h, fps, gain, dim) in {
        "alpha": (64, 64, 12.0, 1.0, 1),
        "bravo": (48, 32, 10.0, 3.0, 1),
        "charlie": (64, 64, 12.0, 0.3, 2),
    }.items():
        for seed in seeds:
            clip = make_clip(seed, config=WorldConfig(width=w, height=h, fps=fps, seconds=SECONDS + 0.2))
            clip.frames = clip.frames // dim
            clip.audio = np.clip(clip.audio * gain, -1, 1)
            write_sample(clip, root / name, f"{name}_{seed}")
        dirs[name] = root / name
    return dirs


@pytest.fixture(scope="module")
def clip_dirs(tmp_path_factory):
    return make_entry_dirs(tmp_path_factory.mktemp("clips"))


def new_arena(tmp_path, **rules):
    arena = Arena(f"sqlite:///{tmp_path}/arena.db", fmt=ArenaFormat(seconds=SECONDS))
    arena.set_rules(**{"gold_rate": 0.0, **rules})
    return arena


def probe(path):
    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        return {
            "container": dict(c.metadata),
            "video": (v.codec_context.name, v.codec_context.width, v.codec_context.height, v.average_rate, v.frames),
            "video_tags": dict(v.metadata),
            "audio": (a.codec_context.name, a.codec_context.sample_rate, a.codec_context.channels),
            "audio_tags": dict(a.metadata),
        }


def test_normalised_clips_share_every_file_property(tmp_path, clip_dirs):
    arena = new_arena(tmp_path)
    for name, directory in clip_dirs.items():
        assert arena.add_clips_entry(name, directory)["clips"] == 3
    paths = sorted(arena.media_dir.glob("*.mp4"))
    assert len(paths) == 18 and all(len(p.stem) == 32 for p in paths)  # 9 clips, with sound and silent
    sound = [p for p in paths if probe_has_audio(p)]
    probes = [probe(p) for p in sound]
    for other in probes[1:]:
        for key in ("container", "video", "video_tags", "audio", "audio_tags"):
            assert other[key] == probes[0][key], key
    levels = []
    for p in sound:
        clip = read_video(p)
        assert clip.frames.shape == (6, 64, 64, 3) and abs(clip.audio.shape[1] / clip.sample_rate - SECONDS) < 0.01
        levels.append(20 * np.log10(np.sqrt(np.mean(clip.audio**2))))
    assert max(levels) - min(levels) < 1.0  # a 10x difference in gain became < 1 dB
    left, right = padded_pair(b"x" * 5000, b"y" * 9000)
    assert len(left) == len(right) and left[5004:5008] == b"free"


def probe_has_audio(path):
    with av.open(str(path)) as c:
        return bool(c.streams.audio)


def test_battles_votes_gold_and_integrity_rules(tmp_path, clip_dirs):
    arena = new_arena(tmp_path)
    for name in ("alpha", "bravo"):
        arena.add_clips_entry(name, clip_dirs[name])
    rng = np.random.default_rng(0)
    battle = arena.new_battle("voter-one", "t2v-sound", rng=rng)
    with pytest.raises(Conflict, match="before both clips"):
        arena.vote(battle["battle_id"], "voter-one", "left", at=after(battle, dt.timedelta(seconds=0.1)))
    with pytest.raises(Forbidden):
        arena.vote(battle["battle_id"], "voter-two", "left", at=after(battle))
    at = after(battle)
    reveal = arena.vote(battle["battle_id"], "voter-one", "left", at=at)
    assert {reveal["left"], reveal["right"]} == {"alpha", "bravo"} and not reveal["gold"]
    with pytest.raises(Conflict, match="already voted"):
        arena.vote(battle["battle_id"], "voter-one", "right", at=at)
    with pytest.raises(ArenaError, match="winner"):
        arena.vote(battle["battle_id"], "voter-one", "A", at=at)
    arena.set_rules(gold_rate=0.5)
    gold_seen, pairs = set(), 0
    for _ in range(12):
        b = arena.new_battle("voter-one", "t2v-silent", rng=rng)
        result = arena.vote(b["battle_id"], "voter-one", "tie", at=after(b))
        pairs += not result["gold"]
        if result["gold"]:
            gold_seen.add(result["gold_kind"])
            assert result["correct"] == (result["gold_kind"] == "identical")
            if result["gold_kind"] == "identical":  # same picture, other bytes: no script can compare files
                left, right = (arena.clip_path(b["battle_id"], side) for side in ("left", "right"))
                assert left.read_bytes() != right.read_bytes()
                frames = [read_video(path).frames.astype(int) for path in (left, right)]
                assert np.abs(frames[0] - frames[1]).mean() < 3
    assert gold_seen == {"identical", "broken"}
    board = arena.leaderboard("t2v-silent", min_votes=0)
    assert board["votes"]["total"] == pairs
    assert board["voters"]["down_weighted"] + board["voters"]["flagged"] == 1  # it failed the broken-clip checks
    arena.set_rules(votes_per_hour=3)
    with pytest.raises(ArenaError, match="limit"):
        arena.new_battle("voter-one", "t2v-sound", rng=rng)


def test_two_votes_racing_on_one_battle_get_one_vote_and_one_conflict(tmp_path, clip_dirs, monkeypatch):
    import threading
    import time

    arena = new_arena(tmp_path)
    for name in ("alpha", "bravo"):
        arena.add_clips_entry(name, clip_dirs[name])
    battle = arena.new_battle("voter-one", "t2v-sound", rng=np.random.default_rng(0))
    check = arena._check_rate
    monkeypatch.setattr(arena, "_check_rate", lambda s, v: (time.sleep(0.3), check(s, v)))  # both read first
    outcomes = []

    def vote():
        try:
            outcomes.append(arena.vote(battle["battle_id"], "voter-one", "left", at=after(battle))["winner"])
        except Exception as exc:  # noqa: BLE001 - the test is which exception
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=vote) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["Conflict", "left"]


def test_stealth_entry_sealed_battles_revealed_and_verified(tmp_path, clip_dirs):
    arena = new_arena(tmp_path, min_votes=1)
    arena.add_clips_entry("alpha", clip_dirs["alpha"])
    identity = {"name": "happyhorse-1.0", "team": "us", "step": 4000}
    seal = arena.add_clips_entry("dark-horse", clip_dirs["charlie"], stealth=True, identity=identity)["seal"]
    other = arena.add_clips_entry("shadow", clip_dirs["bravo"], stealth=True)["seal"]
    public = arena.entry("dark-horse")
    assert public["sealed"] and public["identity"] is None and public["source"] is None
    assert public["commitment"] == commitment(seal["salt"], identity) and "happyhorse-1.0" not in json.dumps(public)
    rng = np.random.default_rng(1)
    met = set()
    for k in range(24):
        b = arena.new_battle(f"v{k % 4}", "t2v-sound", rng=rng)
        result = arena.vote(b["battle_id"], f"v{k % 4}", "left" if k % 3 else "right", at=after(b))
        met.add(frozenset((result["left"], result["right"])))
    assert frozenset(("dark-horse", "shadow")) not in met  # two stealth entries never meet
    assert frozenset(("alpha", "dark-horse")) in met
    rows = {r["codename"]: r for r in arena.leaderboard("t2v-sound")["rows"]}
    assert rows["dark-horse"]["sealed"] and rows["dark-horse"]["votes"] > 0
    with pytest.raises(ArenaError, match="do not match"):
        arena.reveal("dark-horse", {**seal, "identity": {**identity, "name": "someone-else"}})
    with pytest.raises(ArenaError, match="do not match"):
        arena.reveal("dark-horse", other)
    revealed = arena.reveal("dark-horse", seal)
    assert revealed["verified"] and revealed["identity"] == identity and revealed["salt"] == seal["salt"]
    assert arena.verify("dark-horse")["verified"]
    arena.retire("dark-horse")
    rows = {r["codename"]: r for r in arena.leaderboard("t2v-sound")["rows"]}
    assert rows["dark-horse"]["revealed_as"] == "happyhorse-1.0" and not rows["dark-horse"]["active"]
    assert any(v["model_a"] == "dark-horse" or v["model_b"] == "dark-horse" for v in arena.votes_dump())
    assert "shadow" in [e["codename"] for e in arena.entries()] and arena.entry("shadow")["sealed"]


def test_stealth_cli_add_reveal_verify(tmp_path, clip_dirs):
    db = f"sqlite:///{tmp_path}/arena.db"
    runner = CliRunner(env={"COLUMNS": "300"})
    assert runner.invoke(app, ["arena", "init", "--db", db, "--seconds", str(SECONDS)]).exit_code == 0
    seal = tmp_path / "seal.json"
    # an unwritable seal path fails before anything is entered (the salt would be lost)
    lost = ["arena", "add", "ghost", "--clips", str(clip_dirs["charlie"]), "--stealth", "--db", db]
    result = runner.invoke(app, [*lost, "--seal-out", str(tmp_path / "no" / "such" / "seal.json")])
    assert result.exit_code == 2 and "cannot write" in result.output
    assert json.loads(runner.invoke(app, ["arena", "entries", "--db", db, "--json"]).stdout) == []
    result = runner.invoke(
        app,
        [
            "arena",
            "add",
            "nightmare",
            "--clips",
            str(clip_dirs["charlie"]),
            "--stealth",
            "--identity",
            '{"name": "hh-tiny"}',
            "--seal-out",
            str(seal),
            "--db",
            db,
        ],
    )
    assert result.exit_code == 0, result.output
    assert oct(seal.stat().st_mode & 0o777) == "0o600"
    again = runner.invoke(app, [*lost, "--seal-out", str(seal)])
    assert again.exit_code == 2 and "never overwritten" in again.output
    listing = json.loads(runner.invoke(app, ["arena", "entries", "--db", db, "--json"]).stdout)
    assert listing[0]["sealed"] and "hh-tiny" not in json.dumps(listing)
    result = runner.invoke(app, ["arena", "reveal", "nightmare", "--seal", str(seal), "--db", db])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["verified"] is True
    verify = runner.invoke(app, ["arena", "verify", "nightmare", "--db", db])
    assert verify.exit_code == 0 and json.loads(verify.stdout)["identity"] == {"name": "hh-tiny"}


def test_web_routes_battle_vote_board_dumps(tmp_path, clip_dirs):
    arena = new_arena(tmp_path, min_votes=1, min_watch_fraction=0.0)
    for name in ("alpha", "bravo", "charlie"):
        arena.add_clips_entry(name, clip_dirs[name])
    application = FastAPI()
    application.include_router(create_router(arena.db_url))
    client = TestClient(application)
    assert "Which clip is better?" in client.get("/arena").text
    assert "Leaderboard" in client.get("/arena/leaderboard").text
    assert client.post("/v1/arena/battles", json={"category": "nope"}).status_code == 400
    for _ in range(6):
        battle = client.post("/v1/arena/battles", json={"category": "t2v-sound"}).json()
        assert battle["prompt"] and "alpha" not in json.dumps(battle)
        left, right = client.get(battle["left_url"]), client.get(battle["right_url"])
        assert left.headers["content-type"] == "video/mp4" and len(left.content) == len(right.content)
        reveal = client.post(f"/v1/arena/battles/{battle['battle_id']}/vote", json={"winner": "left"}).json()
        assert reveal["left"] in ("alpha", "bravo", "charlie")
    again = client.post(f"/v1/arena/battles/{battle['battle_id']}/vote", json={"winner": "left"})
    assert again.status_code == 409
    stranger = TestClient(application).post(f"/v1/arena/battles/{battle['battle_id']}/vote", json={"winner": "tie"})
    assert stranger.status_code == 403
    cookie = client.cookies["hh_arena_voter"]
    token, signature = cookie.split(".")
    forged = TestClient(application, cookies={"hh_arena_voter": f"{'0' * 32}.{signature}"})
    assert forged.post(f"/v1/arena/battles/{battle['battle_id']}/vote", json={"winner": "tie"}).status_code == 403
    invented = TestClient(application, cookies={"hh_arena_voter": "a" * 32}).post("/v1/arena/battles", json={})
    assert invented.cookies["hh_arena_voter"].split(".")[0] != "a" * 32  # the server mints its own voter
    # a script minting a voter per request is stopped at new_voters_per_hour from its address
    arena.set_rules(new_voters_per_hour=2)
    limited = FastAPI()
    limited.include_router(create_router(arena.db_url))
    codes = [TestClient(limited).post("/v1/arena/battles", json={}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    kept = TestClient(limited, cookies={"hh_arena_voter": cookie})  # a voter who keeps the cookie is served
    assert kept.post("/v1/arena/battles", json={}).status_code == 200
    board = client.get("/v1/arena/leaderboard", params={"category": "t2v-sound"}).json()
    assert board["votes"]["total"] == 6 and sum(r["votes"] for r in board["rows"]) == 12
    assert client.get("/v1/arena/leaderboard", params={"format": "csv"}).text.startswith("category,rank,codename")
    votes = client.get("/v1/arena/votes").json()
    assert len(votes) == 6 and {v["voter"] for v in votes} == {"v1"}
    assert client.get("/v1/arena/plots/t2v-sound/winrate.png").content[:4] == b"\x89PNG"
    assert client.post("/v1/arena/prompts", json={"text": "a blue cube slides left"}).json()["status"] == "queued"
    assert any(e["codename"] == "bravo" for e in client.get("/v1/arena/entries").json())
    # rules changed from another process (the CLI) reach the cached board and the request limits
    from happyhorse.arena.service import Arena

    Arena(arena.db_url).set_rules(min_votes=1000, prompts_per_hour=2)
    board = client.get("/v1/arena/leaderboard", params={"category": "t2v-sound"}).json()
    assert not any(r["listed"] for r in board["rows"])
    assert client.post("/v1/arena/prompts", json={"text": "a green cone rolls"}).status_code == 200
    assert client.post("/v1/arena/prompts", json={"text": "a red cube falls"}).status_code == 429


def test_ti2v_battles_show_the_given_first_frame(tmp_path, clip_dirs):
    from happyhorse.media import save_image

    arena = new_arena(tmp_path, min_watch_fraction=0.0)
    for name, dim in (("alpha", 1), ("bravo", 2)):
        folder = tmp_path / name
        clip = make_clip(5, config=WorldConfig(width=48, height=32, seconds=SECONDS + 0.2))
        save_image(folder / "first.png", clip.frames[0])
        clip.frames = clip.frames // dim
        write_sample(clip, folder, "ball")
        sidecar = json.loads((folder / "ball.json").read_text())
        (folder / "ball.json").write_text(json.dumps({**sidecar, "mode": "ti2v", "image": "first.png"}))
        arena.add_clips_entry(name, folder)
    application = FastAPI()
    application.include_router(create_router(arena.db_url))
    client = TestClient(application)
    battle = client.post("/v1/arena/battles", json={"category": "ti2v-sound"}).json()
    assert battle["mode"] == "ti2v" and "has_image" not in battle
    image = client.get(battle["image_url"])
    assert image.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(image.content)).size == (64, 64)  # letterboxed like the clips
    arena.add_clips_entry("charlie", clip_dirs["alpha"])
    arena.add_clips_entry("delta", clip_dirs["bravo"])
    plain = client.post("/v1/arena/battles", json={"category": "t2v-sound"}).json()
    assert "image_url" not in plain
    assert client.get(f"/v1/arena/battles/{plain['battle_id']}/image.png").status_code == 404


def test_dump_and_auto_judge_seed(tmp_path, clip_dirs):
    arena = new_arena(tmp_path, min_votes=1)
    for name in ("alpha", "charlie"):
        arena.add_clips_entry(name, clip_dirs[name])
    db = arena.db_url
    runner = CliRunner(env={"COLUMNS": "300"})
    result = runner.invoke(app, ["arena", "seed", "--battles", "6", "--category", "t2v-sound", "--db", db])
    assert result.exit_code == 0, result.output
    assert arena.categories_with_votes("human") == []  # auto-judged votes stay off the human board
    auto = arena.leaderboard("t2v-sound", judge="auto:eval-suite")
    assert auto["votes"]["total"] == 6 and auto["judge"] == "auto:eval-suite"
    out = tmp_path / "dump"
    assert runner.invoke(app, ["arena", "dump", "--out", str(out), "--db", db]).exit_code == 0
    assert (out / "votes.csv").read_text().startswith("n,category,model_a,model_b,winner,voter")
    assert json.loads((out / "leaderboard.json").read_text()) == {}


def test_model_entries_render_the_pool_and_user_prompts(tmp_path):
    from happyhorse.cli.arena import model_clips, model_entry_info
    from tests.conftest import tiny_pipeline

    arena = new_arena(tmp_path)
    for text in ("a red ball bounces twice", "a blue cube slides left"):
        arena.add_prompt(text)
    for codename, seed in (("tiny-a", 0), ("tiny-b", 1)):
        info = model_entry_info(tmp_path, num_inference_steps=2, seed=seed)
        result = arena.add_model_entry(codename, model_clips(info, tiny_pipeline(seed)), info=info)
        assert result["clips"] == 2 and not result["skipped"]
    assert arena.entry("tiny-a")["info"]["num_inference_steps"] == 2
    battle = arena.new_battle("v", "t2v-sound", rng=np.random.default_rng(0))
    assert battle["prompt"] in ("a red ball bounces twice", "a blue cube slides left")
    arena.add_prompt("a green ball rolls right", source="user")

    def makers(info):
        return model_clips(info, tiny_pipeline())

    assert arena.render_pending(makers) == {"tiny-a": 1, "tiny-b": 1}
    assert arena.entry("tiny-b")["clips"] == 3 and arena.render_pending(makers) == {}
