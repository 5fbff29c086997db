"""The package's shape, as issue 40 left it: who may import whom, how long a module may grow, how wide
the call is. Read from the source (ast), so a lazy import inside a function counts too."""

import ast
import inspect
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "happyhorse"


def imported_modules(path: Path, root: Path = PACKAGE) -> set[str]:
    """Absolute names of every happyhorse module a file imports, at any depth of the file."""
    package = ".".join(path.relative_to(root.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names |= {f"{module}.{a.name}" for a in node.names}
    return {n for n in names if n == "happyhorse" or n.startswith("happyhorse.")}


def files(*parts: str) -> list[Path]:
    return sorted((PACKAGE.joinpath(*parts)).rglob("*.py"))


def imports_any(path: Path, prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in imported_modules(path) if any(m == p or m.startswith(p + ".") for p in prefixes))


def test_only_the_cli_imports_the_cli():
    outside = [p for p in files() if "cli" not in p.relative_to(PACKAGE).parts and p.name != "__main__.py"]
    offenders = {str(p.relative_to(PACKAGE)): imports_any(p, ("happyhorse.cli",)) for p in outside}
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize("part", ["train", "distill", "model", "diffusion", "codecs", "world"])
def test_training_and_the_maths_import_no_inference_module(part):
    inference = ("happyhorse.pipeline", "happyhorse.generate", "happyhorse.serve", "happyhorse.cli")
    offenders = {str(p.relative_to(PACKAGE)): imports_any(p, inference) for p in files(part)}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_arena_ranks_clips_and_never_loads_a_pipeline():
    makers = ("happyhorse.pipeline", "happyhorse.generate", "happyhorse.cli", "happyhorse.components")
    offenders = {str(p.relative_to(PACKAGE)): imports_any(p, makers) for p in files("arena")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_module_is_over_600_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in files() if (n := len(p.read_text().splitlines())) > 600}
    assert long == {}


def test_the_pipeline_call_takes_at_most_16_parameters():
    from happyhorse import HappyHorsePipeline

    assert len(inspect.signature(HappyHorsePipeline.__call__).parameters) <= 16


def test_the_import_reader_sees_relative_and_lazy_imports(tmp_path):
    """The rules above are only as good as this reader: a relative import inside a function is seen."""
    probe = tmp_path / "happyhorse" / "arena" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("def f():\n    from ..pipeline import HappyHorsePipeline\n    from . import store\n")
    assert {"happyhorse.pipeline", "happyhorse.arena.store"} <= imported_modules(probe, tmp_path / "happyhorse")
