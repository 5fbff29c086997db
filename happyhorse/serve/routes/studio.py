"""/: the studio page, a form over /v1/videos; its script and style are served from /static."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

STATIC = Path(__file__).parent.parent / "static"
router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def studio() -> HTMLResponse:
    return HTMLResponse((STATIC / "studio.html").read_text())
