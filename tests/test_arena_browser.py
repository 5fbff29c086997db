"""The arena in headless Chromium: play a battle, see the vote unlock only after both clips played, vote,
see the reveal, and find the vote on the leaderboard page."""

import socket
import threading
import time

import pytest

from tests.conftest import require_tool
from tests.test_arena_battles import SECONDS, make_entry_dirs
from tests.test_browser import CHROMIUM_ARGS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.browser
def test_play_vote_reveal_and_board_in_chromium(tmp_path):
    chromium = require_tool("chromium", "chromium-browser")
    import uvicorn
    from fastapi import FastAPI
    from playwright.sync_api import sync_playwright

    from happyhorse.arena.clips import ArenaFormat
    from happyhorse.arena.service import Arena
    from happyhorse.arena.web import create_router

    dirs = make_entry_dirs(tmp_path / "clips", seeds=(0,))
    arena = Arena(f"sqlite:///{tmp_path}/arena.db", fmt=ArenaFormat(seconds=SECONDS))
    arena.set_rules(gold_rate=0.0, min_votes=1)
    arena.add_clips_entry("alpha", dirs["alpha"])
    arena.add_clips_entry("charlie", dirs["charlie"])  # same world config as alpha, so the same prompt
    application = FastAPI()
    application.include_router(create_router(arena.db_url))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(application, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.set_default_timeout(120000)  # a loaded 2-core machine may take a while; a pass takes seconds
            page.goto(f"http://127.0.0.1:{port}/arena")
            page.wait_for_function("document.getElementById('prompt').textContent.startsWith('Prompt:')")
            left_button = page.locator("#votes button[data-winner=left]")
            assert left_button.is_disabled()
            page.click("#play-left")
            page.wait_for_function("document.getElementById('left').ended", timeout=120000)
            assert left_button.is_disabled()  # one clip played is not enough
            page.click("#play-right")
            page.wait_for_function(
                "!document.querySelector('#votes button[data-winner=left]').disabled", timeout=120000
            )
            left_button.click()
            page.wait_for_function("!document.getElementById('reveal').hidden", timeout=120000)
            reveal = page.text_content("#reveal")
            assert "alpha" in reveal and "charlie" in reveal
            winner = page.text_content("#left-name").removeprefix("A: ")
            page.goto(f"http://127.0.0.1:{port}/arena/leaderboard")
            page.wait_for_function("document.querySelectorAll('#rows tr').length === 2", timeout=120000)
            rows = page.locator("#rows tr").all_inner_texts()
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert winner in rows[0] and "\t1\t" in rows[0]  # the winner leads with its one vote
