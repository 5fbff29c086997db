"""What every `happyhorse` command shares: the Typer app, the console, and argument parsing helpers."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

app = typer.Typer(add_completion=False, no_args_is_help=True, help="HappyHorse: joint video + audio generation.")
console = Console(stderr=True)


def parse_size(value: str, option: str = "--size") -> tuple[int, int]:
    """'WxH' -> (W, H) (`generate.parse_size`), with an error that names the option."""
    from ..generate import parse_size as parse

    try:
        return parse(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc).removeprefix("size: "), param_hint=option) from None


def output_dir(path: Path, option: str) -> Path:
    """Create the directory `path` (with its parents) for a command's output, or fail naming `option`:
    a path under a regular file, or one this user cannot write in, is refused before any work."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot create the directory {path}: {exc.strerror or exc}", param_hint=option
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise typer.BadParameter(f"cannot write in {path}", param_hint=option)
    return path


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def check_device(device: str, dtype: str) -> None:
    """--device and --dtype of generate, eval and serve, refused before any model loads."""
    from ..devices import resolve_device, resolve_dtype

    try:
        chosen = resolve_device(device)
    except ValueError as exc:
        raise typer.BadParameter(str(exc).removeprefix("device: "), param_hint="--device") from None
    try:
        resolve_dtype(dtype, chosen)
    except ValueError as exc:
        raise typer.BadParameter(str(exc).removeprefix("dtype: "), param_hint="--dtype") from None


DEVICE_HELP = "auto (the GPU where there is one, else the CPU), cpu, cuda or cuda:N."
DTYPE_HELP = (
    "auto (bfloat16 on a GPU and on a CPU with native bfloat16, else float32), float32, bfloat16 or float16 (GPU only)."
)


def refused(exc: ValueError, ctx: typer.Context) -> typer.BadParameter:
    """A ValueError of the Python API ("FIELD: what was wrong, what is allowed") as the CLI's error,
    naming the option whose parameter is FIELD: the API's checks are the only ones, reported by flag.
    Width and height come from --size."""
    field, _, problem = str(exc).partition(": ")
    if field in ("width", "height"):
        field, problem = "size", str(exc)
    for param in ctx.command.params:
        if param.name == field and problem:
            return typer.BadParameter(problem, param_hint="/".join(param.opts))
    return typer.BadParameter(str(exc))


EXTRAS = {
    "eval": ("cv2", "librosa", "skimage", "matplotlib"),
    "train": ("matplotlib",),
    "serve": ("fastapi", "uvicorn", "sqlalchemy", "multipart", "matplotlib"),
}


def require_extra(extra: str) -> None:
    """Exit 2 with the install command where this command's optional dependencies are missing: the core
    install (`pip install happyhorse`) generates; evaluation, training and serving have extras."""
    import importlib.util

    missing = [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]
    if missing:
        console.print(
            f"this command needs the {extra!r} extra ({', '.join(missing)} not installed): "
            f"pip install 'happyhorse[{extra}]'",
            markup=False,
        )
        raise typer.Exit(2)
