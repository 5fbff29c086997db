"""`happyhorse arena ...`: a thin Typer layer over `happyhorse.arena.Arena` (DESIGN.md section 5)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.console import Console

from ..arena import CATEGORIES, DEFAULT_DB
from ..arena.ratings import board_csv
from .common import app, output_dir, parse_size, refused, require_extra
from .generate import STEPS

arena_app = typer.Typer(no_args_is_help=True, help="The arena: blind battles, votes and Bradley-Terry boards.")
app.add_typer(arena_app, name="arena")


@arena_app.callback()
def arena_needs_its_extra() -> None:
    """The arena keeps its battles in a database (SQLAlchemy) and plots its boards: the serve extra."""
    require_extra("serve")


console = Console(stderr=True)
DB_HELP = "Database URL: sqlite:///FILE (default sqlite:///arena.db, or $HAPPYHORSE_ARENA_DB) or postgresql://..."


def _db(db: str | None) -> str:
    return db or os.environ.get("HAPPYHORSE_ARENA_DB") or DEFAULT_DB


def _open(db: str | None, **kwargs):
    from sqlalchemy.exc import SQLAlchemyError

    from ..arena.service import Arena, ArenaError

    try:
        return Arena(_db(db), **kwargs)
    except (ArenaError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--db") from None
    except (SQLAlchemyError, ImportError) as exc:  # a malformed URL, a driver not installed, no server
        raise typer.BadParameter(f"{type(exc).__name__}: {exc}", param_hint="--db") from None
    except OSError as exc:  # a SQLite file whose folder cannot be made (under a regular file, no permission)
        raise typer.BadParameter(f"cannot open {_db(db)}: {exc.strerror or exc}", param_hint="--db") from None


def _check_media(media: Path) -> None:
    """Refuse a --media folder that cannot be made: under a regular file, or where no folder can be written."""
    existing = next((p for p in (media, *media.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise typer.BadParameter(f"cannot create the directory {media}: {existing} is a file", param_hint="--media")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise typer.BadParameter(f"cannot write in {existing}", param_hint="--media")


def _fail(exc: Exception, hint: str):
    raise typer.BadParameter(str(exc), param_hint=hint) from None


def _identity(identity: str | None) -> dict | None:
    if identity is None:
        return None
    try:
        value = json.loads(identity)
    except json.JSONDecodeError:
        value = {"name": identity}
    if not isinstance(value, dict):
        raise typer.BadParameter(f"must be a name or a JSON object, got {identity!r}", param_hint="--identity")
    return value


def _write_seal(seal: dict, path: Path) -> None:
    from ..media import write_json_atomic

    write_json_atomic(path, json.dumps(seal, indent=1) + "\n")
    path.chmod(0o600)  # the salt is the secret until the reveal


def model_entry_info(model: Path, num_inference_steps: int | None = None, seed: int = 0) -> dict:
    """A model entry's public record, which `arena render` reads back to make its clips: the model directory,
    the sampling settings, and the training step the directory was exported at."""
    info = {"model": str(Path(model).resolve()), "num_inference_steps": num_inference_steps, "seed": seed}
    index = Path(model) / "model_index.json"
    if index.is_file():
        info["train_step"] = json.loads(index.read_text()).get("step")
    return info


def model_clips(info: dict, pipe=None):
    """The clip maker (`happyhorse.arena.service.ClipMaker`) of the model entry recorded as `info`: the
    pipeline (`pipe`, or the model directory's, loaded at the first clip) generates each prompt with the
    entry's settings. None for an entry that names no model directory."""
    if not info.get("model"):
        return None
    from ..generate import GenerateRequest, load_pipeline, run_generate

    loaded = [pipe]
    steps = info.get("num_inference_steps", info.get("steps"))  # "steps": entries made before the rename

    def make_clip(prompt: str, seconds: float, output: Path) -> None:
        if loaded[0] is None:
            loaded[0] = load_pipeline(info["model"])
        request = GenerateRequest(prompt, seconds=seconds, num_inference_steps=steps, seed=info.get("seed", 0))
        run_generate(loaded[0], request, output)

    return make_clip


@arena_app.command("init")
def init_command(
    db: str = typer.Option(None, help=DB_HELP),
    media: Path = typer.Option(None, help="Where normalised clips go (default: beside the SQLite file)."),
    size: str = typer.Option("64x64", help="Battle clip size WIDTHxHEIGHT (even numbers)."),
    fps: float = typer.Option(12.0, help="Battle clip frame rate."),
    seconds: float = typer.Option(2.0, help="Battle clip length; shorter clips are refused, longer ones trimmed."),
    sample_rate: int = typer.Option(16000, help="Battle clip audio rate (Hz)."),
    gold_rate: float = typer.Option(None, help="Share of battles that are gold checks (default 0.1)."),
    min_votes: int = typer.Option(None, help="Votes before a model is listed (default 20)."),
    anchor: str = typer.Option(None, help="Codename pinned at 1000 points (default: the mean)."),
) -> None:
    """Create an arena database (or change its rules) with the one clip format every battle uses."""
    from ..arena.clips import ArenaFormat

    width, height = parse_size(size)
    try:
        fmt = ArenaFormat(width, height, fps, seconds, sample_rate)
    except ValueError as exc:  # the message starts with the field it refuses
        field = str(exc).split(":")[0]
        _fail(exc, {"fps": "--fps", "seconds": "--seconds", "sample_rate": "--sample-rate"}.get(field, "--size"))
    if media is not None:  # checked before the database is made, so a refusal leaves nothing behind
        _check_media(media)
    arena = _open(db, media_dir=media, fmt=fmt)
    changes = {
        k: v for k, v in (("gold_rate", gold_rate), ("min_votes", min_votes), ("anchor", anchor)) if v is not None
    }
    if changes:
        try:
            arena.set_rules(**changes)
        except ValueError as exc:
            _fail(exc, "--" + next(iter(changes)).replace("_", "-"))
    console.print(f"arena at {_db(db)}; clips in {arena.media_dir}; format {arena.format.to_dict()}")


@arena_app.command("add-prompts")
def add_prompts_command(
    file: Path = typer.Argument(..., help="Text file, one prompt per line."),
    mode: str = typer.Option("t2v", help="t2v or ti2v."),
    db: str = typer.Option(None, help=DB_HELP),
) -> None:
    """Add prompts to the public pool that model entries render."""
    if not file.is_file():
        raise typer.BadParameter(f"no such file: {file}", param_hint="FILE")
    arena = _open(db)
    lines = [line.strip() for line in file.read_text().splitlines() if line.strip()]
    try:
        for line in lines:
            arena.add_prompt(line, mode)
    except ValueError as exc:
        _fail(exc, "FILE")
    console.print(f"{len(lines)} prompt(s) in the pool")


@arena_app.command("add")
def add_command(
    ctx: typer.Context,
    codename: str = typer.Argument(..., help="Public codename (letters, digits, _ . -)."),
    clips: Path = typer.Option(None, help="A directory of NAME.mp4 + NAME.json (prompt/caption, mode)."),
    model: Path = typer.Option(None, help="A model directory (any checkpoint): renders the prompt pool."),
    num_inference_steps: int = STEPS,
    seed: int = typer.Option(0, help="Seed for --model."),
    stealth: bool = typer.Option(False, help="Seal the identity as a salted hash commitment."),
    identity: str = typer.Option(None, help="Stealth identity: a name or a JSON object (default: the source)."),
    seal_out: Path = typer.Option(None, help="Where the stealth seal (identity + salt) is written."),
    db: str = typer.Option(None, help=DB_HELP),
) -> None:
    """Enter a competitor: a clips directory or one of our models, in the open or in stealth."""
    if (clips is None) == (model is None):
        raise typer.BadParameter("give exactly one of --clips DIR or --model DIR", param_hint="--clips")
    from ..diffusion.sampling import SamplingConfig

    try:  # the step count's one validator, before the entry or any clip is made
        SamplingConfig().with_overrides(num_inference_steps=num_inference_steps)
    except ValueError as exc:
        raise refused(exc, ctx) from None
    if stealth and seal_out is None:
        raise typer.BadParameter("a stealth entry needs --seal-out FILE to keep its seal", param_hint="--seal-out")
    if stealth:  # checked before the entry is committed: a seal that cannot be written is a lost salt
        if seal_out.exists():
            raise typer.BadParameter(f"{seal_out} exists; a seal is never overwritten", param_hint="--seal-out")
        if not seal_out.parent.is_dir() or not os.access(seal_out.parent, os.W_OK):
            raise typer.BadParameter(f"cannot write in {seal_out.parent}", param_hint="--seal-out")
    arena = _open(db)
    try:
        if clips is not None:
            result = arena.add_clips_entry(codename, clips, stealth=stealth, identity=_identity(identity))
        else:
            info = model_entry_info(model, num_inference_steps=num_inference_steps, seed=seed)
            result = arena.add_model_entry(
                codename, model_clips(info), info=info, stealth=stealth, identity=_identity(identity)
            )
    except (ValueError, FileNotFoundError) as exc:
        _fail(exc, "--clips" if clips is not None else "--model")
    for skip in result["skipped"]:
        console.print(f"skipped {skip['clip']}: {skip['reason']}")
    if stealth:
        try:
            _write_seal(result["seal"], seal_out)
        except OSError as exc:  # the entry is committed: print the seal rather than lose it
            print(json.dumps(result["seal"], indent=1))
            console.print(f"[red]could not write {seal_out} ({exc}); the seal is above: save it, it cannot be remade")
            raise typer.Exit(1) from None
        console.print(f"commitment {result['seal']['commitment']}; seal written to {seal_out} (keep it private)")
    console.print(f"entered {codename} with {result['clips']} clip(s)")


@arena_app.command("render")
def render_command(db: str = typer.Option(None, help=DB_HELP)) -> None:
    """Render the pool and user prompts that open model entries lack (user prompts join battles after this)."""
    result = _open(db).render_pending(model_clips)
    console.print(f"rendered {sum(result.values())} clip(s): {result or 'nothing was missing'}")


@arena_app.command("entries")
def entries_command(db: str = typer.Option(None, help=DB_HELP), as_json: bool = typer.Option(False, "--json")) -> None:
    """List every entry ever made (retired and revealed ones included), public fields only."""
    entries = _open(db).entries()
    if as_json:
        typer.echo(json.dumps(entries, indent=1))
        return
    for e in entries:
        state = "sealed" if e["sealed"] else ("revealed, verified" if e["verified"] else "open")
        typer.echo(f"{e['codename']:24s} {e['kind']:9s} {state:20s} clips {e['clips']:4d} {e['source'] or ''}")


@arena_app.command("reveal")
def reveal_command(
    codename: str = typer.Argument(...),
    seal: Path = typer.Option(..., help="The seal file written when the stealth entry was added."),
    db: str = typer.Option(None, help=DB_HELP),
) -> None:
    """Reveal a stealth entry: publish its identity and salt, checked against its commitment."""
    if not seal.is_file():
        raise typer.BadParameter(f"no such file: {seal}", param_hint="--seal")
    try:
        content = json.loads(seal.read_text())
        entry = _open(db).reveal(codename, content)
    except json.JSONDecodeError as exc:
        _fail(ValueError(f"not JSON: {exc.msg}"), "--seal")
    except ValueError as exc:
        _fail(exc, "--seal")
    typer.echo(json.dumps({k: entry[k] for k in ("codename", "identity", "salt", "commitment", "verified")}, indent=1))


@arena_app.command("verify")
def verify_command(codename: str = typer.Argument(...), db: str = typer.Option(None, help=DB_HELP)) -> None:
    """Recompute a revealed entry's commitment from its published identity and salt."""
    try:
        result = _open(db).verify(codename)
    except ValueError as exc:
        _fail(exc, "CODENAME")
    typer.echo(json.dumps(result, indent=1))
    if result["stealth"] and not result["sealed"] and not result["verified"]:
        raise typer.Exit(1)


@arena_app.command("retire")
def retire_command(codename: str = typer.Argument(...), db: str = typer.Option(None, help=DB_HELP)) -> None:
    """Stop serving an entry in battles; its record stays on the board."""
    try:
        _open(db).retire(codename)
    except ValueError as exc:
        _fail(exc, "CODENAME")
    console.print(f"retired {codename}")


@arena_app.command("import-votes")
def import_votes_command(
    file: Path = typer.Argument(..., help="CSV with columns model_a,model_b,winner,voter,category."),
    source: str = typer.Option(None, help="Whose row ids the `id` column holds (default: the file's name)."),
    db: str = typer.Option(None, help=DB_HELP),
) -> None:
    """Add votes from elsewhere (all rows or none); re-importing the same rows adds nothing."""
    try:
        result = _open(db).import_votes(file, source)
    except ValueError as exc:
        _fail(exc, "FILE")
    console.print(
        f"imported {result['imported']} of {result['rows']} vote(s) ({result['duplicates']} duplicate(s)); "
        f"new entries: {', '.join(result['new_entries']) or 'none'}"
    )


@arena_app.command("leaderboard")
def leaderboard_command(
    db: str = typer.Option(None, help=DB_HELP),
    category: str = typer.Option(None, help=f"One board: {', '.join(CATEGORIES)} (default: every board with votes)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (one board, or {category: board})."),
    csv_out: bool = typer.Option(False, "--csv", help="Print CSV rows."),
    judge: str = typer.Option("human", help="human, or auto:eval-suite for the auto-judged board."),
    min_votes: int = typer.Option(None, min=0, help="Override the listing threshold."),
    rounds: int = typer.Option(None, min=100, help="Bootstrap rounds (>= 100)."),
    anchor: str = typer.Option(None, help="Codename pinned at 1000 (default: the arena's rule)."),
) -> None:
    """The leaderboard: rating, 95 % interval, rank interval, votes, listed / preliminary."""
    if category is not None and category not in CATEGORIES:
        raise typer.BadParameter(f"must be one of {', '.join(CATEGORIES)}, got {category!r}", param_hint="--category")
    arena = _open(db)
    categories = [category] if category else arena.categories_with_votes(judge)
    try:
        boards = {c: arena.leaderboard(c, judge, min_votes=min_votes, rounds=rounds, anchor=anchor) for c in categories}
    except ValueError as exc:
        _fail(exc, "--rounds")
    if as_json:
        typer.echo(json.dumps(boards[category] if category else boards, indent=1))
        return
    if csv_out:
        typer.echo(board_csv(boards), nl=False)
        return
    if not boards:
        console.print("no votes yet")
    for name, result in boards.items():
        typer.echo(
            f"\n{name} ({result['votes']['counted']} of {result['votes']['total']} votes counted; {result['ties']})"
        )
        typer.echo(f"{'rank':>4} {'codename':24s} {'rating':>7} {'95% interval':>15} {'ranks':>7} {'votes':>6}")
        for row in result["rows"] + result["unlisted"]:
            note = "unlisted" if not row["listed"] else ("preliminary" if row["preliminary"] else "")
            typer.echo(
                f"{row['rank']:>4} {row['codename']:24s} {row['rating']:7.1f} {row['lo']:7.1f}..{row['hi']:<7.1f}"
                f" {row['rank_lo']:>3}-{row['rank_hi']:<3} {row['votes']:>6} {note}"
            )


@arena_app.command("dump")
def dump_command(
    out: Path = typer.Option(Path("arena_dump"), help="Directory for the JSON/CSV files and plots."),
    db: str = typer.Option(None, help=DB_HELP),
) -> None:
    """Write every board (JSON + CSV), the anonymised votes (JSON + CSV) and the matrix plots."""
    from ..arena.plots import write_dump

    paths = write_dump(_open(db), output_dir(out, "--out"))
    console.print(f"wrote {len(paths)} file(s) to {out}/")


@arena_app.command("seed")
def seed_command(
    battles: int = typer.Option(50, min=1, max=100_000, help="Auto-judged battles to add."),
    category: str = typer.Option("t2v-sound", help=f"One of {', '.join(CATEGORIES)}."),
    seed: int = typer.Option(0),
    db: str = typer.Option(None, help=DB_HELP),
) -> None:
    """Fill battles judged by the evaluation suite's metrics; they form their own board (judge
    auto:eval-suite), never the human one."""
    from ..arena.judge import seed_battles

    if category not in CATEGORIES:
        raise typer.BadParameter(f"must be one of {', '.join(CATEGORIES)}, got {category!r}", param_hint="--category")
    try:
        result = seed_battles(_open(db), battles, category, seed)
    except ValueError as exc:
        _fail(exc, "--category")
    console.print(f"auto-judged {result['battles']} battle(s) in {category}: {result['outcomes']}")
