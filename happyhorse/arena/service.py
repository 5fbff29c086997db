"""The arena as one Python API: entries, stealth commitments, battles, votes, imports, boards, dumps.

The CLI and the web router are thin layers over `Arena`; every rule (who meets whom, which votes
count, when a model is listed) lives here or in the pure modules it calls. The arena ranks clips and
never makes them: a model entry's clips come from a `ClipMaker` its caller passes in (the CLI's runs the
pipeline).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import secrets
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ..media import MediaError
from . import DEFAULT_DB, boards, imports
from .clips import ArenaFormat, ingest
from .gold import gold_battle
from .integrity import gold_correct
from .matchmaking import choose_pair
from .ratings import BoardSettings, fit_theta
from .rules import (
    CODENAME,
    ArenaError,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    Rules,
    check_category,
    commitment,
)
from .store import (
    SCORE,
    Battle,
    ClipRow,
    Entry,
    GoldAnswer,
    Prompt,
    Setting,
    Vote,
    default_media_dir,
    dumps,
    new_id,
    now,
    open_engine,
    sessions,
)

# Makes the clip of one prompt: (prompt text, seconds, output .mp4) -> writes the MP4 there, at least
# `seconds` long. The arena asks for clips and ranks them; its caller knows how to make them.
ClipMaker = Callable[[str, float, Path], None]


class Arena:
    def __init__(self, db_url: str = DEFAULT_DB, media_dir: str | Path | None = None, fmt: ArenaFormat | None = None):
        self.db_url = db_url
        self.engine = open_engine(db_url)
        self.Session = sessions(self.engine)
        with self.Session.begin() as s:
            stored = {row.key: json.loads(row.value) for row in s.scalars(select(Setting))}
            defaults = {
                "secret": secrets.token_hex(16),
                "media_dir": str(Path(media_dir).resolve() if media_dir else default_media_dir(db_url)),
                "format": (fmt or ArenaFormat()).to_dict(),
                "rules": asdict(Rules()),
            }
            if fmt is not None and "format" in stored and stored["format"] != fmt.to_dict():
                if s.scalar(select(func.count()).select_from(ClipRow)):
                    raise ArenaError(
                        f"format: the arena already holds clips in {stored['format']}; start a new database"
                    )
                stored["format"] = fmt.to_dict()
                s.merge(Setting(key="format", value=json.dumps(stored["format"])))
            for key, value in defaults.items():
                if key not in stored:
                    s.add(Setting(key=key, value=json.dumps(value)))
                    stored[key] = value
        self.secret = stored["secret"]
        self.media_dir = Path(stored["media_dir"])
        self.format = ArenaFormat(**stored["format"])
        known = {f.name for f in fields(Rules)}
        self.rules = Rules(**{k: v for k, v in stored["rules"].items() if k in known})

    # ---------------------------------------------------------------------------------- settings

    def set_rules(self, **changes) -> Rules:
        unknown = set(changes) - {f.name for f in fields(Rules)}
        if unknown:
            raise ArenaError(f"rules: unknown setting(s) {sorted(unknown)}; allowed: {[f.name for f in fields(Rules)]}")
        rules = Rules(**{**asdict(self.rules), **changes})
        with self.Session.begin() as s:
            s.merge(Setting(key="rules", value=json.dumps(asdict(rules))))
        self.rules = rules
        return rules

    def refresh_rules(self) -> Rules:
        """The rules as stored now: another process (the CLI) may have changed them since this opened."""
        with self.Session() as s:
            row = s.get(Setting, "rules")
        if row is not None:
            known = {f.name for f in fields(Rules)}
            self.rules = Rules(**{k: v for k, v in json.loads(row.value).items() if k in known})
        return self.rules

    def voter_id(self, token: str, namespace: str = "web") -> str:
        """A salted hash of a voter's token or imported name: stored instead of the raw value."""
        return hashlib.sha256(f"{self.secret}:{namespace}:{token}".encode()).hexdigest()[:24]

    # ---------------------------------------------------------------------------------- prompts

    def add_prompt(self, text: str, mode: str = "t2v", image: str | None = None, source: str = "pool") -> int:
        """Add a prompt (idempotent: the same text, mode and image give the same prompt)."""
        with self.Session.begin() as s:
            return self._prompt(s, text, mode, image, source).id

    def _prompt(self, s, text: str, mode: str, image: str | None, source: str) -> Prompt:
        text = " ".join(str(text).split())
        if not 1 <= len(text) <= 2000:
            raise ArenaError(f"prompt: must be 1..2000 characters, got {len(text)}")
        if mode not in ("t2v", "ti2v"):
            raise ArenaError(f"mode: must be t2v or ti2v, got {mode!r}")
        digest = hashlib.sha256(Path(image).read_bytes()).hexdigest() if image and Path(image).is_file() else ""
        key = hashlib.sha256(f"{mode}\0{text}\0{digest}".encode()).hexdigest()
        prompt = s.scalar(select(Prompt).where(Prompt.key == key))
        if prompt is None:
            prompt = Prompt(key=key, text=text, mode=mode, image=image, source=source)
            s.add(prompt)
            s.flush()
        return prompt

    def prompts(self, source: str | None = None) -> list[dict]:
        with self.Session() as s:
            query = select(Prompt).order_by(Prompt.id)
            if source:
                query = query.where(Prompt.source == source)
            return [{"id": p.id, "text": p.text, "mode": p.mode, "source": p.source} for p in s.scalars(query)]

    # ---------------------------------------------------------------------------------- entries

    def add_clips_entry(
        self,
        codename: str,
        directory: str | Path,
        *,
        stealth: bool = False,
        identity: dict | None = None,
        kind: str = "clips",
        info: dict | None = None,
    ) -> dict:
        """Enter a directory of NAME.mp4 (+ NAME.json with `prompt` or `caption`, and `mode`) under a codename.

        Every clip is normalised to the arena format (with sound and silent). A stealth entry stores no
        provenance: its identity (by default the directory) is sealed; the returned `seal` (identity, salt,
        commitment) is the admin's to keep and to hand to `reveal` later.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise ArenaError(f"directory: not a directory: {directory}")
        self._check_new_codename(codename)
        mp4s = sorted(directory.glob("*.mp4"))
        if not mp4s:
            raise ArenaError(f"directory: {directory} holds no .mp4 clip")
        ingested, skipped = [], []
        for path in mp4s:
            try:
                ingested.append(ingest(path, self.format, self.media_dir))
            except (MediaError, ValueError) as exc:
                skipped.append({"clip": path.name, "reason": str(exc)})
        if not ingested:
            raise ArenaError(f"directory: no clip of {directory} could enter the arena: {skipped[:3]}")
        seal = None
        with self.Session.begin() as s:
            self._check_new_codename(codename, s)
            entry = Entry(codename=codename, kind=kind, stealth=stealth, info=json.dumps({} if stealth else info or {}))
            if stealth:
                identity = identity or {"kind": kind, "source": str(directory.resolve()), **(info or {})}
                salt = secrets.token_hex(16)
                entry.commitment = commitment(salt, identity)
                seal = {"codename": codename, "identity": identity, "salt": salt, "commitment": entry.commitment}
            else:
                entry.source = str(directory.resolve()) if kind == "clips" else (info or {}).get("model")
            s.add(entry)
            s.flush()
            for text, mode, image, sound, silent in ingested:
                prompt = self._prompt(s, text, mode, image, "clips")
                if s.scalar(select(ClipRow).where(ClipRow.entry_id == entry.id, ClipRow.prompt_id == prompt.id)):
                    continue  # two clips of one prompt: the first one (by file name) stands
                s.add(
                    ClipRow(
                        entry_id=entry.id,
                        prompt_id=prompt.id,
                        sound_path=sound.name if sound else None,
                        silent_path=silent.name,
                    )
                )
        out = {"codename": codename, "clips": len(ingested), "skipped": skipped}
        if seal:
            out["seal"] = seal
        return out

    def _render(self, make_clip: ClipMaker, prompts: list[tuple[int, str]], folder: Path, progress=None) -> None:
        """p{ID}.mp4 (+ p{ID}.json naming the prompt) in `folder` for each (prompt id, text)."""
        for prompt_id, text in prompts:
            path = folder / f"p{prompt_id}.mp4"
            make_clip(text, self.format.seconds, path)
            path.with_suffix(".json").write_text(json.dumps({"prompt": text, "mode": "t2v"}))
            if progress:
                progress()

    def _render_prompts(self) -> list[Prompt]:
        """The prompts a model entry renders: the pool's and the users' text-to-video prompts."""
        with self.Session() as s:
            return list(s.scalars(select(Prompt).where(Prompt.source.in_(("pool", "user")), Prompt.mode == "t2v")))

    def add_model_entry(
        self,
        codename: str,
        make_clip: ClipMaker,
        *,
        info: dict | None = None,
        stealth: bool = False,
        identity: dict | None = None,
        progress=None,
    ) -> dict:
        """Enter a generator (one of our models at any checkpoint and step count): `make_clip` renders every
        prompt of the pool and the user prompts, then the clips enter like a clips directory. `info` is
        the entry's public record (not kept for a stealth entry); `render_pending` hands it back to its
        caller to get the clip maker again."""
        self._check_new_codename(codename)
        prompts = self._render_prompts()
        if not prompts:
            raise ArenaError("prompts: the pool is empty; add prompts first (happyhorse arena add-prompts FILE)")
        with tempfile.TemporaryDirectory() as tmp:
            self._render(make_clip, [(p.id, p.text) for p in prompts], Path(tmp), progress)
            return self.add_clips_entry(codename, tmp, stealth=stealth, identity=identity, kind="model", info=info)

    def render_pending(self, clip_maker: Callable[[dict], ClipMaker | None], progress=None) -> dict:
        """Render, for every open (not stealth) active model entry, the pool and user prompts it lacks;
        returns {codename: clips rendered}. `clip_maker(info)` gives the clip maker of the entry whose
        record is `info` (None: the entry is skipped). A stealth model entry keeps no record in the
        database, so only its entry-time prompts exist."""
        with self.Session() as s:
            models = [e for e in s.scalars(select(Entry).where(Entry.kind == "model", Entry.active.is_(True)))]
            have = set(s.execute(select(ClipRow.entry_id, ClipRow.prompt_id)).all())
        prompts = self._render_prompts()
        rendered = Counter()
        for entry in models:
            missing = [(p.id, p.text) for p in prompts if (entry.id, p.id) not in have]
            make_clip = None if entry.stealth or not missing else clip_maker(json.loads(entry.info or "{}"))
            if make_clip is None:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                self._render(make_clip, missing, Path(tmp), progress)
                rows = []
                for prompt_id, _ in missing:
                    _, _, _, sound, silent = ingest(Path(tmp) / f"p{prompt_id}.mp4", self.format, self.media_dir)
                    rows.append(
                        ClipRow(
                            entry_id=entry.id,
                            prompt_id=prompt_id,
                            sound_path=sound.name if sound else None,
                            silent_path=silent.name,
                        )
                    )
            with self.Session.begin() as s:
                for row in rows:
                    if not s.scalar(
                        select(ClipRow).where(ClipRow.entry_id == row.entry_id, ClipRow.prompt_id == row.prompt_id)
                    ):
                        s.add(row)
                        rendered[entry.codename] += 1
        return dict(rendered)

    def _check_new_codename(self, codename: str, s=None) -> None:
        if not isinstance(codename, str) or not CODENAME.match(codename):
            raise ArenaError(
                f"codename: {codename!r} must be 1..64 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit"
            )
        with self.Session() if s is None else contextlib.nullcontext(s) as session:
            if session.scalar(select(Entry).where(Entry.codename == codename)):
                raise Conflict(f"codename: {codename!r} is taken; codenames are permanent, choose another")

    def _entry(self, s, codename: str) -> Entry:
        entry = s.scalar(select(Entry).where(Entry.codename == codename))
        if entry is None:
            raise NotFound(f"codename: no entry named {codename!r}")
        return entry

    def _public(self, entry: Entry, clips: int = 0) -> dict:
        revealed = entry.revealed_at is not None
        identity = json.loads(entry.identity) if entry.identity else None
        out = {
            "codename": entry.codename,
            "kind": entry.kind,
            "stealth": entry.stealth,
            "sealed": entry.stealth and not revealed,
            "source": entry.source,
            "info": json.loads(entry.info or "{}"),
            "commitment": entry.commitment,
            "identity": identity,
            "salt": entry.salt,
            "revealed_at": entry.revealed_at.isoformat() + "Z" if revealed else None,
            "verified": commitment(entry.salt, identity) == entry.commitment if revealed and entry.stealth else None,
            "active": entry.active,
            "clips": clips,
            "created_at": entry.created_at.isoformat() + "Z",
        }
        return out

    def entries(self) -> list[dict]:
        """Every entry ever made, public fields only: retired and revealed entries stay on record."""
        with self.Session() as s:
            counts = dict(s.execute(select(ClipRow.entry_id, func.count()).group_by(ClipRow.entry_id)).all())
            return [self._public(e, counts.get(e.id, 0)) for e in s.scalars(select(Entry).order_by(Entry.id))]

    def entry(self, codename: str) -> dict:
        with self.Session() as s:
            entry = self._entry(s, codename)
            clips = s.scalar(select(func.count()).select_from(ClipRow).where(ClipRow.entry_id == entry.id))
            return self._public(entry, clips)

    def reveal(self, codename: str, seal: dict) -> dict:
        """Publish a stealth entry's identity; refused unless it matches the commitment made at entry."""
        with self.Session.begin() as s:
            entry = self._entry(s, codename)
            if not entry.stealth:
                raise ArenaError(f"codename: {codename!r} is not a stealth entry; it has nothing to reveal")
            if entry.revealed_at is not None:
                raise Conflict(f"codename: {codename!r} was revealed already")
            identity, salt = seal.get("identity"), seal.get("salt")
            if not isinstance(identity, dict) or not isinstance(salt, str):
                raise ArenaError("seal: must hold an `identity` object and a `salt` string (the file `add` wrote)")
            if commitment(salt, identity) != entry.commitment:
                raise ArenaError(f"seal: identity and salt do not match {codename!r}'s commitment {entry.commitment}")
            entry.identity, entry.salt, entry.revealed_at = dumps(identity), salt, now()
            entry.source = identity.get("source") or identity.get("name")
        return self.entry(codename)

    def verify(self, codename: str) -> dict:
        """Anyone's check of a reveal: recompute the commitment from the published identity and salt."""
        entry = self.entry(codename)
        return {k: entry[k] for k in ("codename", "stealth", "sealed", "commitment", "identity", "salt", "verified")}

    def retire(self, codename: str) -> dict:
        """Stop serving an entry in new battles; its votes and its row on the board stay."""
        with self.Session.begin() as s:
            self._entry(s, codename).active = False
        return self.entry(codename)

    # ---------------------------------------------------------------------------------- battles

    def _eligible_clips(self, s, category: str):
        mode, sound = category.split("-")[0], category.endswith("-sound")
        query = (
            select(ClipRow, Entry)
            .join(Entry, Entry.id == ClipRow.entry_id)
            .join(Prompt, Prompt.id == ClipRow.prompt_id)
            .where(Prompt.mode == mode, Entry.active.is_(True))
        )
        if sound:
            query = query.where(ClipRow.sound_path.is_not(None))
        rows = s.execute(query).all()
        return [(clip, entry, clip.sound_path if sound else clip.silent_path) for clip, entry in rows]

    def new_battle(self, voter_token: str, category: str = "t2v-sound", rng: np.random.Generator | None = None) -> dict:
        """Serve a blind battle: two models' clips of one prompt, sides at random (or a gold check)."""
        check_category(category)
        rng = rng or np.random.default_rng(secrets.randbits(64))
        voter = self.voter_id(voter_token)
        with self.Session.begin() as s:
            self._check_rate(s, voter)
            clips = self._eligible_clips(s, category)
            by_entry: dict[int, dict[int, str]] = defaultdict(dict)
            entries = {}
            for clip, entry, path in clips:
                by_entry[entry.id][clip.prompt_id] = path
                entries[entry.id] = entry
            if not clips:
                raise NotFound(f"category: no clips for {category} yet")
            gold = rng.random() < self.rules.gold_rate
            if gold:
                battle = gold_battle(self, clips, category, voter, rng)
            else:
                battle = self._pair_battle(s, category, voter, by_entry, entries, rng)
            s.add(battle)
            prompt = s.get(Prompt, battle.prompt_id)
            return {
                "battle_id": battle.id,
                "category": category,
                "prompt": prompt.text,
                "mode": prompt.mode,
                "has_image": bool(prompt.image and Path(prompt.image).is_file()),
                "seconds": self.format.seconds,
                "min_seconds": battle.min_seconds,
                "served_at": battle.created_at.isoformat() + "Z",
            }

    def _pair_battle(self, s, category, voter, by_entry, entries, rng) -> Battle:
        ids = sorted(by_entry)
        index = {e: k for k, e in enumerate(ids)}
        pairs = []
        for x in range(len(ids)):
            for y in range(x + 1, len(ids)):
                ex, ey = entries[ids[x]], entries[ids[y]]
                sealed = [e.stealth and e.revealed_at is None for e in (ex, ey)]
                if all(sealed):
                    continue  # two stealth entries never meet: their result would reveal nothing public
                if by_entry[ids[x]].keys() & by_entry[ids[y]].keys():
                    pairs.append((x, y))
        if not pairs:
            raise NotFound(f"category: no two entries share a prompt in {category} yet")
        votes = s.execute(
            select(Vote.entry_a, Vote.entry_b, Vote.winner).where(Vote.category == category, Vote.judge == "human")
        ).all()
        known = [(index[a], index[b], SCORE[w]) for a, b, w in votes if a in index and b in index]
        n = len(ids)
        if known:
            a, b, sc = (np.array(col) for col in zip(*known, strict=True))
            lo, hi = np.minimum(a, b), np.maximum(a, b)
            keys, inverse = np.unique(lo * n + hi, return_inverse=True)
            total = np.bincount(inverse).astype(float)
            wins = np.bincount(inverse, weights=np.where(a == lo, sc, 1 - sc))
            i, j = keys // n, keys % n
        else:
            i = j = np.zeros(0, dtype=np.int64)
            total = wins = np.zeros(0)
        theta = fit_theta(n, i, j, total, wins, l2=0.05)
        recent_rows = s.execute(
            select(Battle.left_entry, Battle.right_entry)
            .where(Battle.category == category, Battle.gold.is_(None))
            .order_by(Battle.created_at.desc())
            .limit(50 * n)
        ).all()
        recent = np.zeros(n)
        for left, right in recent_rows:
            for e in (left, right):
                if e in index:
                    recent[index[e]] += 1
        in_play = len({m for p in pairs for m in p})  # a fair share of battles is 2 / in_play per model
        x, y = choose_pair(n, pairs, i, j, total, theta, recent, 2 * self.rules.min_share / in_play, rng)
        ex, ey = ids[x], ids[y]
        shared = sorted(by_entry[ex].keys() & by_entry[ey].keys())
        seen = Counter(
            s.scalars(
                select(Battle.prompt_id).where(
                    Battle.voter == voter,
                    ((Battle.left_entry == ex) & (Battle.right_entry == ey))
                    | ((Battle.left_entry == ey) & (Battle.right_entry == ex)),
                )
            ).all()
        )
        fewest = min(seen.get(p, 0) for p in shared)
        choices = [p for p in shared if seen.get(p, 0) == fewest]
        prompt_id = choices[int(rng.integers(len(choices)))]
        if rng.random() < 0.5:
            ex, ey = ey, ex
        return Battle(
            id=new_id(),
            created_at=now(),
            category=category,
            prompt_id=prompt_id,
            left_entry=ex,
            right_entry=ey,
            left_path=by_entry[ex][prompt_id],
            right_path=by_entry[ey][prompt_id],
            voter=voter,
            min_seconds=self.format.seconds * self.rules.min_watch_fraction,
        )

    def _check_rate(self, s, voter: str) -> None:
        since = now() - dt.timedelta(hours=1)
        recent = s.scalar(
            select(func.count()).select_from(Vote).where(Vote.voter == voter, Vote.created_at >= since)
        ) + s.scalar(
            select(func.count())
            .select_from(GoldAnswer)
            .where(GoldAnswer.voter == voter, GoldAnswer.created_at >= since)
        )
        if recent >= self.rules.votes_per_hour:
            raise RateLimited(f"voter: {recent} votes in the last hour; the limit is {self.rules.votes_per_hour}")

    def image_path(self, battle_id: str) -> Path:
        """The given first frame of a TI2V battle's prompt."""
        with self.Session() as s:
            battle = s.get(Battle, battle_id)
            prompt = s.get(Prompt, battle.prompt_id) if battle is not None else None
        if prompt is None or not prompt.image or not Path(prompt.image).is_file():
            raise NotFound(f"battle: no first image for battle {battle_id!r}")
        return Path(prompt.image)

    def clip_path(self, battle_id: str, side: str) -> Path:
        if side not in ("left", "right"):
            raise ArenaError(f"side: must be left or right, got {side!r}")
        with self.Session() as s:
            battle = s.get(Battle, battle_id)
            if battle is None:
                raise NotFound(f"battle: no battle {battle_id!r}")
            return self.media_dir / (battle.left_path if side == "left" else battle.right_path)

    def vote(self, battle_id: str, voter_token: str, winner: str, at: dt.datetime | None = None) -> dict:
        """Record the voter's verdict on their battle (left, right, tie, both_bad) and reveal the names."""
        sides = {"left": "model_a", "right": "model_b", "tie": "tie", "both_bad": "both_bad"}
        if winner not in sides:
            raise ArenaError(f"winner: must be one of {', '.join(sides)}, got {winner!r}")
        voter = self.voter_id(voter_token)
        at = at or now()
        try:
            return self._record_vote(battle_id, voter, winner, sides, at)
        except IntegrityError:  # a second vote on the battle committed first (SQLite takes no row lock)
            raise Conflict("battle: already voted; one vote per battle") from None

    def _record_vote(self, battle_id: str, voter: str, winner: str, sides: dict, at: dt.datetime) -> dict:
        with self.Session.begin() as s:
            battle = s.get(Battle, battle_id, with_for_update=True)
            if battle is None:
                raise NotFound(f"battle: no battle {battle_id!r}")
            if battle.voter != voter:
                raise Forbidden("battle: this battle was served to another voter")
            if battle.voted:
                raise Conflict("battle: already voted; one vote per battle")
            waited = (at - battle.created_at).total_seconds()
            if waited < battle.min_seconds:
                raise Conflict(f"vote: came {waited:.1f} s after serving, before both clips could have played")
            self._check_rate(s, voter)
            battle.voted = True
            left, right = s.get(Entry, battle.left_entry), s.get(Entry, battle.right_entry)
            out = {"battle_id": battle_id, "winner": winner, "gold": battle.gold is not None}
            if battle.gold:
                correct = gold_correct(battle.gold_expect, winner)
                s.add(
                    GoldAnswer(
                        battle_id=battle_id, voter=voter, expect=battle.gold_expect, winner=winner, correct=correct
                    )
                )
                names = [left.codename, left.codename]
                if battle.gold == "broken":
                    names[0 if battle.gold_expect == "right" else 1] += " (deliberately broken copy)"
                out.update(left=names[0], right=names[1], correct=correct, gold_kind=battle.gold)
            else:
                s.add(
                    Vote(
                        battle_id=battle_id,
                        entry_a=left.id,
                        entry_b=right.id,
                        winner=sides[winner],
                        voter=voter,
                        category=battle.category,
                        source="web",
                    )
                )
                out.update(left=left.codename, right=right.codename)
            return out

    # ---------------------------------------------------------------------------------- imports

    def import_votes(self, path: str | Path, source: str | None = None) -> dict:
        """Add votes from a CSV, all rows or none (imports.import_votes)."""
        return imports.import_votes(self, path, source)

    # ---------------------------------------------------------------------------------- boards

    def board_settings(self, **overrides) -> BoardSettings:
        return boards.board_settings(self, **overrides)

    def leaderboard(self, category: str, judge: str = "human", **overrides) -> dict:
        """One board (DESIGN section 8): human votes only unless judge names the auto-judge (boards.leaderboard)."""
        return boards.leaderboard(self, category, judge, **overrides)

    def matrices(self, category: str, judge: str = "human") -> tuple[list[str], np.ndarray, np.ndarray]:
        """(names, win-rate matrix, battle-count matrix) over the raw votes of a board."""
        return boards.matrices(self, category, judge)

    def votes_dump(self, category: str | None = None) -> list[dict]:
        """Every vote, anonymised (boards.votes_dump)."""
        return boards.votes_dump(self, category)

    def categories_with_votes(self, judge: str = "human") -> list[str]:
        return boards.categories_with_votes(self, judge)
