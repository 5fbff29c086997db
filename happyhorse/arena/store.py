"""The arena's state in SQL (SQLAlchemy): entries, prompts, clips, battles, votes, gold answers.

SQLite file by default, PostgreSQL (or any SQLAlchemy database) by URL. Every operation that writes
runs in one transaction, so a failed import or a crash mid-way leaves the database as it was.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from pathlib import Path

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from ..database import create_tables

WINNERS = ("model_a", "model_b", "tie", "both_bad")
SCORE = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "both_bad": 0.5}  # model_a's share of the win


def new_id() -> str:
    """A battle's id: 128 random bits, so that a voter cannot guess another's battle."""
    return secrets.token_hex(16)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Setting(Base):
    __tablename__ = "arena_settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Entry(Base):
    """A competitor under a public codename. A stealth entry's identity is only a commitment until revealed."""

    __tablename__ = "arena_entries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    codename: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # clips | model | external
    source: Mapped[str | None] = mapped_column(Text, nullable=True)  # public provenance; None while sealed
    info: Mapped[str] = mapped_column(Text, default="{}")  # JSON: steps, checkpoint step, seed ...
    stealth: Mapped[bool] = mapped_column(Boolean, default=False)
    commitment: Mapped[str | None] = mapped_column(String(64), nullable=True)
    identity: Mapped[str | None] = mapped_column(Text, nullable=True)  # canonical JSON, set at reveal
    salt: Mapped[str | None] = mapped_column(String(64), nullable=True)  # set at reveal
    revealed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=now)


class Prompt(Base):
    __tablename__ = "arena_prompts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)  # hash of (mode, text, image digest)
    text: Mapped[str] = mapped_column(Text)
    mode: Mapped[str] = mapped_column(String(8))  # t2v | ti2v
    image: Mapped[str | None] = mapped_column(Text, nullable=True)
    source: Mapped[str] = mapped_column(String(16))  # pool | user | clips
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=now)


class ClipRow(Base):
    """One entry's clip of one prompt, normalised: with sound and silent (paths relative to the media dir)."""

    __tablename__ = "arena_clips"
    __table_args__ = (UniqueConstraint("entry_id", "prompt_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("arena_entries.id"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("arena_prompts.id"))
    sound_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    silent_path: Mapped[str] = mapped_column(Text)


class Battle(Base):
    __tablename__ = "arena_battles"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # random token, unguessable
    category: Mapped[str] = mapped_column(String(16))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("arena_prompts.id"))
    left_entry: Mapped[int] = mapped_column(ForeignKey("arena_entries.id"))
    right_entry: Mapped[int] = mapped_column(ForeignKey("arena_entries.id"))
    left_path: Mapped[str] = mapped_column(Text)
    right_path: Mapped[str] = mapped_column(Text)
    gold: Mapped[str | None] = mapped_column(String(16), nullable=True)  # identical | broken
    gold_expect: Mapped[str | None] = mapped_column(String(8), nullable=True)  # tie | left | right
    voter: Mapped[str] = mapped_column(String(32))
    min_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=now)
    voted: Mapped[bool] = mapped_column(Boolean, default=False)


class Vote(Base):
    """A counted-or-not vote: entry_a / entry_b are the left / right models of a web battle."""

    __tablename__ = "arena_votes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    battle_id: Mapped[str | None] = mapped_column(ForeignKey("arena_battles.id"), unique=True, nullable=True)
    entry_a: Mapped[int] = mapped_column(ForeignKey("arena_entries.id"))
    entry_b: Mapped[int] = mapped_column(ForeignKey("arena_entries.id"))
    winner: Mapped[str] = mapped_column(String(16))  # model_a | model_b | tie | both_bad
    voter: Mapped[str] = mapped_column(String(32))  # salted hash, never the raw id
    category: Mapped[str] = mapped_column(String(16))
    judge: Mapped[str] = mapped_column(String(32), default="human")  # human | auto:eval-suite
    source: Mapped[str] = mapped_column(String(16))  # web | import | seed
    dedupe_key: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=now)


class GoldAnswer(Base):
    __tablename__ = "arena_gold"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    battle_id: Mapped[str] = mapped_column(ForeignKey("arena_battles.id"), unique=True)
    voter: Mapped[str] = mapped_column(String(32))
    expect: Mapped[str] = mapped_column(String(8))
    winner: Mapped[str] = mapped_column(String(16))
    correct: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=now)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def open_engine(db_url: str) -> Engine:
    """An engine for `db_url`, with the tables created; a SQLite file's folder is created too."""
    try:
        url = make_url(db_url)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises several types for a bad URL
        raise ValueError(f"db: not a database URL: {db_url!r} (e.g. sqlite:///arena.db, postgresql://...)") from exc
    kwargs = {}
    if url.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, future=True, **kwargs)
    if url.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    create_tables(engine, Base.metadata)
    return engine


def default_media_dir(db_url: str) -> Path:
    """Beside a SQLite file (arena.db -> arena_media/), else ./arena_media."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        path = Path(url.database)
        return (path.parent / f"{path.stem}_media").resolve()
    return Path(os.environ.get("HAPPYHORSE_ARENA_MEDIA", "arena_media")).resolve()


def sessions(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


def dumps(value) -> str:
    """Canonical JSON: sorted keys, no spaces, so hashes of it are reproducible anywhere."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
