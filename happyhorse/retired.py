"""Settings of earlier versions that were measured and not shipped (docs/experiments.md).

A stored config (a model directory's, a training run's) may still name one: where it is off it is read
past, where it is on it is refused by name, so that nothing loads and then samples or trains otherwise
than it did.
"""

from __future__ import annotations

from dataclasses import fields


def _comparable(value):
    return [_comparable(v) for v in value] if isinstance(value, list | tuple) else value


def read_config(d: dict, cls: type, retired: dict, where: str) -> dict:
    """`d` without its retired keys (each at its off value), checked to name only fields of the
    dataclass `cls`; `where` names the config in errors ("sampling config", "TrainConfig", ...)."""
    d = dict(d)
    for name, off in retired.items():
        if name in d and _comparable(d.pop(name)) != _comparable(off):
            raise ValueError(
                f"{name}: a setting measured and not shipped (docs/experiments.md; git tag lab-2026-12 has it); "
                f"remove it from the {where}"
            )
    known = {f.name for f in fields(cls)}
    if unknown := set(d) - known:
        raise ValueError(f"unknown {where} keys: {sorted(unknown)}; known: {sorted(known)}")
    return d
