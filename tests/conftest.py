"""Shared fixtures. Tests that need a system tool (ffprobe, Chromium) skip when it is missing, unless
HAPPYHORSE_REQUIRE_ALL=1 (set by CI and scripts/test.sh), which turns the skip into a failure."""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    message = f"needs {' or '.join(names)} (Debian: apt-get install ffmpeg chromium)"
    if os.environ.get("HAPPYHORSE_REQUIRE_ALL") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def world_clip():
    from happyhorse.world import make_clip

    return make_clip(3)
