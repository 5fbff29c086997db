"""The arena on the web: `create_router(db_url)` gives the battle and leaderboard pages under /arena and
the JSON routes under /v1/arena, to mount on any FastAPI app (the served app includes it).

A voter is a random token in an HttpOnly cookie, signed with the arena's secret (HMAC-SHA256) so that
only the server mints voters, at most `new_voters_per_hour` per client address; a script that
invents a cookie per vote to escape the per-voter caps, gold checks and outlier test gets a 403.
Tokens are stored only as a salted hash. Clip URLs name the
battle and the side, never the clip or the model, and both clips of a battle are served at the same
byte length (an MP4 `free` box pads the shorter), so neither the URL nor the file gives a model away.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import secrets
import struct
import threading
import time
from collections import defaultdict, deque
from html import escape

from fastapi import APIRouter, Cookie, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from . import CATEGORIES
from .service import Arena, ArenaError

COOKIE = "hh_arena_voter"
PAD_BLOCK = 4096


class BattleRequest(BaseModel):
    category: str = Field("t2v-sound", description=f"One of {', '.join(CATEGORIES)}.")


class VoteRequest(BaseModel):
    winner: str = Field(..., description="left, right, tie or both_bad.")


class PromptRequest(BaseModel):
    text: str = Field(..., min_length=1, max_length=2000)
    mode: str = Field("t2v", description="t2v or ti2v.")


def _raise(exc: ArenaError):
    raise HTTPException(status_code=exc.status, detail=str(exc)) from None


def padded_pair(left: bytes, right: bytes) -> tuple[bytes, bytes]:
    """Both files grown to one length with a trailing MP4 `free` box (players skip it)."""
    target = -(-(max(len(left), len(right)) + 8) // PAD_BLOCK) * PAD_BLOCK
    out = []
    for data in (left, right):
        pad = target - len(data)
        out.append(data + struct.pack(">I", pad) + b"free" + bytes(pad - 8))
    return out[0], out[1]


def create_router(db_url: str) -> APIRouter:
    """Pages (/arena, /arena/leaderboard) and JSON routes (/v1/arena/...) over the arena in `db_url`."""
    arena = Arena(db_url)
    router = APIRouter()
    cache: dict = {}
    lock = threading.Lock()

    recent: dict[tuple[str, str], deque] = defaultdict(deque)  # (what, client address) -> times, last hour

    def admit(what: str, request: Request, limit: int, advice: str) -> None:
        """At most `limit` of `what` per client address per hour (kept in this process)."""
        address = request.client.host if request.client else "unknown"
        cutoff = time.monotonic() - 3600
        with lock:
            times = recent[(what, address)]
            while times and times[0] < cutoff:
                times.popleft()
            if len(times) >= limit:
                raise HTTPException(429, f"{what}: {limit} from this address in the last hour; {advice}")
            times.append(time.monotonic())

    def sign(token: str) -> str:
        return hmac.new(arena.secret.encode(), token.encode(), hashlib.sha256).hexdigest()[:32]

    def verified(cookie: str | None) -> str | None:
        """The token of a cookie this arena signed, else None."""
        token, _, signature = (cookie or "").partition(".")
        if len(token) == 32 and len(signature) == 32 and hmac.compare_digest(sign(token), signature):
            return token
        return None

    def voter(cookie: str | None, request: Request, response: Response) -> str:
        token = verified(cookie)
        if token:
            return token
        admit("new voters", request, arena.refresh_rules().new_voters_per_hour, "keep your cookie")
        token = secrets.token_hex(16)
        response.set_cookie(COOKIE, f"{token}.{sign(token)}", max_age=365 * 86400, httponly=True, samesite="lax")
        return token

    def board(category: str, judge: str) -> dict:
        """Boards are cached until what they show changes: a vote or gold answer, an entry added, revealed
        or retired, or the rules (the CLI changes those from another process). The bootstrap is the
        costly part."""
        from dataclasses import asdict

        from sqlalchemy import func, select

        from .store import Entry, GoldAnswer, Vote

        rules = asdict(arena.refresh_rules())
        with arena.Session() as s:
            stamp = (
                s.scalar(select(func.max(Vote.id))),
                s.scalar(select(func.count()).select_from(GoldAnswer)),
                tuple(s.execute(select(Entry.id, Entry.active, Entry.revealed_at).order_by(Entry.id)).all()),
                tuple(sorted(rules.items())),
            )
        key = (category, judge)
        with lock:
            hit = cache.get(key)
            if hit and hit[0] == stamp:
                return hit[1]
        result = arena.leaderboard(category, judge)
        with lock:
            cache[key] = (stamp, result)
        return result

    # ------------------------------------------------------------------------------------- pages

    @router.get("/arena", response_class=HTMLResponse, include_in_schema=False)
    def battle_page() -> HTMLResponse:
        return HTMLResponse(BATTLE_PAGE.replace("{{options}}", _options()))

    @router.get("/arena/leaderboard", response_class=HTMLResponse, include_in_schema=False)
    def leaderboard_page() -> HTMLResponse:
        return HTMLResponse(BOARD_PAGE.replace("{{options}}", _options()))

    # ------------------------------------------------------------------------------------- JSON

    @router.post("/v1/arena/battles", tags=["arena"])
    def new_battle(
        request: BattleRequest, http: Request, response: Response, hh_arena_voter: str | None = Cookie(None)
    ) -> dict:
        """Serve a blind battle to this voter: the prompt and two clip URLs, models hidden."""
        token = voter(hh_arena_voter, http, response)
        try:
            battle = arena.new_battle(token, request.category)
        except ArenaError as exc:
            _raise(exc)
        base = f"/v1/arena/battles/{battle['battle_id']}"
        urls = {"left_url": f"{base}/left.mp4", "right_url": f"{base}/right.mp4"}
        if battle.pop("has_image"):  # TI2V: the frame both models were given
            urls["image_url"] = f"{base}/image.png"
        return {**battle, **urls}

    @router.get("/v1/arena/battles/{battle_id}/image.png", tags=["arena"])
    def battle_image(battle_id: str) -> Response:
        try:
            path = arena.image_path(battle_id)
        except ArenaError as exc:
            _raise(exc)
        return Response(path.read_bytes(), media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @router.get("/v1/arena/battles/{battle_id}/{side}.mp4", tags=["arena"])
    def battle_clip(battle_id: str, side: str) -> Response:
        try:
            left, right = arena.clip_path(battle_id, "left"), arena.clip_path(battle_id, "right")
        except ArenaError as exc:
            _raise(exc)
        if side not in ("left", "right"):
            raise HTTPException(404, f"side: must be left or right, got {side!r}")
        data = padded_pair(left.read_bytes(), right.read_bytes())[0 if side == "left" else 1]
        return Response(data, media_type="video/mp4", headers={"Cache-Control": "private, max-age=3600"})

    @router.post("/v1/arena/battles/{battle_id}/vote", tags=["arena"])
    def vote(battle_id: str, request: VoteRequest, hh_arena_voter: str | None = Cookie(None)) -> dict:
        """Vote on your battle; the answer reveals both models."""
        token = verified(hh_arena_voter)
        if not token:
            raise HTTPException(403, "voter: no valid arena cookie; ask for a battle first (POST /v1/arena/battles)")
        try:
            return arena.vote(battle_id, token, request.winner)
        except ArenaError as exc:
            _raise(exc)

    @router.get("/v1/arena/leaderboard", tags=["arena"])
    def leaderboard(category: str | None = None, judge: str = "human", format: str = "json") -> Response:
        """One board (?category=) or every board with votes; ?format=csv for CSV."""
        if format not in ("json", "csv"):
            raise HTTPException(400, f"format: must be json or csv, got {format!r}")
        if category is not None and category not in CATEGORIES:
            raise HTTPException(400, f"category: must be one of {', '.join(CATEGORIES)}, got {category!r}")
        categories = [category] if category else arena.categories_with_votes(judge)
        boards = {c: board(c, judge) for c in categories}
        if format == "csv":
            from .ratings import board_csv

            return Response(board_csv(boards), media_type="text/csv")
        return JSONResponse(boards[category] if category else boards)

    @router.get("/v1/arena/votes", tags=["arena"])
    def votes(category: str | None = None, format: str = "json") -> Response:
        """Every vote, anonymised (voters as v1, v2, ...; days, not times)."""
        try:
            rows = arena.votes_dump(category)
        except ArenaError as exc:
            _raise(exc)
        if format == "csv":
            out = io.StringIO()
            writer = csv.DictWriter(
                out, ["n", "category", "model_a", "model_b", "winner", "voter", "judge", "source", "day"]
            )
            writer.writeheader()
            writer.writerows(rows)
            return Response(out.getvalue(), media_type="text/csv")
        if format != "json":
            raise HTTPException(400, f"format: must be json or csv, got {format!r}")
        return JSONResponse(rows)

    @router.get("/v1/arena/entries", tags=["arena"])
    def entries() -> list[dict]:
        """Every entry ever made: codename, commitment, and after a reveal the identity, salt and check."""
        return arena.entries()

    @router.get("/v1/arena/entries/{codename}", tags=["arena"])
    def entry(codename: str) -> dict:
        try:
            return arena.entry(codename)
        except ArenaError as exc:
            _raise(exc)

    @router.post("/v1/arena/prompts", tags=["arena"])
    def submit_prompt(request: PromptRequest, http: Request) -> dict:
        """A user's prompt joins the pool; model entries render it at the next `happyhorse arena render`."""
        admit("prompts", http, arena.refresh_rules().prompts_per_hour, "every entry renders each one")
        try:
            return {"id": arena.add_prompt(request.text, request.mode, source="user"), "status": "queued"}
        except ArenaError as exc:
            _raise(exc)

    @router.get("/v1/arena/plots/{category}/{kind}.png", tags=["arena"])
    def plot(category: str, kind: str) -> Response:
        """Win-rate (kind=winrate) or battle-count (kind=battles) matrix of a board."""
        from .plots import board_matrices

        if category not in CATEGORIES or kind not in ("winrate", "battles"):
            raise HTTPException(404, f"plot: category in {', '.join(CATEGORIES)}, kind winrate or battles")
        win, battles = board_matrices(arena, category, result=board(category, "human"))
        return Response(win if kind == "winrate" else battles, media_type="image/png")

    return router


def _options() -> str:
    return "".join(f'<option value="{escape(c)}">{escape(c)}</option>' for c in CATEGORIES)


STYLE = """
body{font-family:system-ui,sans-serif;max-width:980px;margin:1.5em auto;padding:0 1em;color:#222}
nav a{margin-right:1em} .pair{display:flex;gap:1em} figure{flex:1;margin:0}
video{width:100%;background:#000;image-rendering:pixelated;aspect-ratio:1}
figcaption{text-align:center;font-weight:bold;margin:.3em} #votes button{font-size:1.05em;margin:.3em}
button:disabled{opacity:.45} #reveal{background:#eef6ee;padding:.6em;margin:.6em 0}
table{border-collapse:collapse;width:100%} td,th{border-bottom:1px solid #ddd;padding:.3em;text-align:left}
.note{color:#666;font-size:.9em} .prelim{color:#a60}
"""

BATTLE_PAGE = (
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>HappyHorse arena: battle</title>
<style>"""
    + STYLE
    + """</style></head>
<body>
<nav><a href="/arena">Battle</a><a href="/arena/leaderboard">Leaderboard</a></nav>
<h1>Which clip is better?</h1>
<p class="note">Two models, one prompt, names hidden until you vote. Play both clips to the end to vote.</p>
<label>Board <select id="category">{{options}}</select></label>
<button id="next">New battle</button>
<p id="prompt"></p>
<figure id="given" hidden><img id="given-image" alt="the given first frame" width="128" height="128"
 style="image-rendering:pixelated"><figcaption class="note">Both clips start from this frame.</figcaption></figure>
<div class="pair">
 <figure><video id="left" controls playsinline preload="auto"></video>
  <figcaption id="left-name">Model A</figcaption><button id="play-left">Play A</button></figure>
 <figure><video id="right" controls playsinline preload="auto"></video>
  <figcaption id="right-name">Model B</figcaption><button id="play-right">Play B</button></figure>
</div>
<p id="status">Loading a battle...</p>
<div id="votes">
 <button data-winner="left" disabled>A is better</button>
 <button data-winner="right" disabled>B is better</button>
 <button data-winner="tie" disabled>Tie</button>
 <button data-winner="both_bad" disabled>Both are bad</button>
</div>
<div id="reveal" hidden></div>
<form id="prompt-form"><label>Suggest a prompt <input id="user-prompt" maxlength="2000" size="50"></label>
 <button type="submit">Submit</button> <span id="prompt-status" class="note"></span></form>
<script>
const $ = (id) => document.getElementById(id);
const buttons = Array.from(document.querySelectorAll('#votes button'));
let battle = null, played = {left: false, right: false};
function lock(on) { buttons.forEach((b) => { b.disabled = on; }); }
function unlockIfPlayed() {
  if (played.left && played.right && battle && !battle.voted) {
    lock(false); $('status').textContent = 'Both clips played: cast your vote.';
  }
}
['left', 'right'].forEach((side) => {
  $(side).addEventListener('ended', () => { played[side] = true; unlockIfPlayed(); });
  $('play-' + side).addEventListener('click', () => { $(side).currentTime = 0; $(side).play(); });
});
async function next() {
  lock(true); $('reveal').hidden = true; played = {left: false, right: false};
  $('left-name').textContent = 'Model A'; $('right-name').textContent = 'Model B';
  const r = await fetch('/v1/arena/battles', {method: 'POST', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({category: $('category').value})});
  const body = await r.json();
  if (!r.ok) { battle = null; $('status').textContent = body.detail || 'No battle available.'; return; }
  battle = body; $('prompt').textContent = 'Prompt: ' + body.prompt;
  $('given').hidden = !body.image_url; if (body.image_url) $('given-image').src = body.image_url;
  $('left').src = body.left_url; $('right').src = body.right_url;
  $('status').textContent = 'Play both clips to the end to unlock the vote.';
}
buttons.forEach((b) => b.addEventListener('click', async () => {
  if (!battle) return;
  lock(true);
  const r = await fetch('/v1/arena/battles/' + battle.battle_id + '/vote', {method: 'POST',
    headers: {'Content-Type': 'application/json'}, body: JSON.stringify({winner: b.dataset.winner})});
  const body = await r.json();
  if (!r.ok) { $('status').textContent = body.detail; unlockIfPlayed(); return; }
  battle.voted = true;
  $('left-name').textContent = 'A: ' + body.left; $('right-name').textContent = 'B: ' + body.right;
  const gold = body.gold ? ' This was a check battle with a known answer.' : '';
  $('reveal').textContent = 'Thanks! A was ' + body.left + ', B was ' + body.right + '.' + gold;
  $('reveal').hidden = false; $('status').textContent = 'Voted. See the leaderboard, or start a new battle.';
}));
$('next').addEventListener('click', next);
$('prompt-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const r = await fetch('/v1/arena/prompts', {method: 'POST', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({text: $('user-prompt').value, mode: $('category').value.split('-')[0]})});
  $('prompt-status').textContent = r.ok ? 'Queued: it joins battles once models have rendered it.' : 'Refused.';
});
next();
</script>
</body></html>
"""
)

BOARD_PAGE = (
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>HappyHorse arena: leaderboard</title>
<style>"""
    + STYLE
    + """</style></head>
<body>
<nav><a href="/arena">Battle</a><a href="/arena/leaderboard">Leaderboard</a></nav>
<h1>Leaderboard</h1>
<label>Board <select id="category">{{options}}</select></label>
<p id="method" class="note"></p>
<table><thead><tr><th>Rank</th><th>Model</th><th>Rating</th><th>95 % interval</th><th>Rank range</th>
<th>Votes</th><th>Status</th></tr></thead><tbody id="rows"></tbody></table>
<p class="note" id="unlisted"></p>
<p><a id="csv" href="#">CSV</a> · <a id="json" href="#">JSON</a> · <a href="/v1/arena/votes?format=csv">votes (CSV,
anonymised)</a></p>
<p><img id="winrate" alt="win-rate matrix"> <img id="battles" alt="battle-count matrix"></p>
<script>
const $ = (id) => document.getElementById(id);
function cell(text) { const td = document.createElement('td'); td.textContent = text; return td; }
async function load() {
  const c = $('category').value, url = '/v1/arena/leaderboard?category=' + encodeURIComponent(c);
  $('csv').href = url + '&format=csv'; $('json').href = url;
  const body = await (await fetch(url)).json();
  $('method').textContent = body.method + '; ' + body.ties + '; ' + body.scale + ' (anchor: ' + body.anchor +
    '). Votes counted: ' + body.votes.counted + ' of ' + body.votes.total + '.';
  const rows = $('rows'); rows.replaceChildren();
  body.rows.forEach((r) => {
    const tr = document.createElement('tr');
    let name = r.codename;
    if (r.sealed) name += ' (stealth)';
    if (r.revealed_as) name += ' = ' + r.revealed_as;
    [r.rank, name, r.rating.toFixed(1), r.lo.toFixed(0) + ' .. ' + r.hi.toFixed(0), r.rank_lo + '-' + r.rank_hi,
     r.votes, r.preliminary ? 'preliminary' : ''].forEach((v) => tr.appendChild(cell(String(v))));
    if (r.preliminary) tr.className = 'prelim';
    rows.appendChild(tr);
  });
  $('unlisted').textContent = body.unlisted.length ? 'Not yet listed (too few votes): ' +
    body.unlisted.map((r) => r.codename + ' (' + r.votes + ')').join(', ') : '';
  if (body.rows.length + body.unlisted.length) {
    $('winrate').src = '/v1/arena/plots/' + c + '/winrate.png';
    $('battles').src = '/v1/arena/plots/' + c + '/battles.png';
  }
}
$('category').addEventListener('change', load);
load();
</script>
</body></html>
"""
)
