"""The `happyhorse` command: a thin Typer layer over the Python API (DESIGN.md section 5), one module
per command group; importing this package registers them all."""

from . import arena, evaluate, generate, serve, train, world  # noqa: F401 - each registers its commands
from .common import app


def main() -> None:
    app()
