"""A world clip plays to its end, with sound, in headless Chromium (Debian's chromium package)."""

import functools
import http.server
import threading

import pytest

from happyhorse.world import make_clip, write_sample
from tests.conftest import require_tool

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


PLAY_TO_END = """(id) => new Promise((done) => {
    const v = document.getElementById(id);
    v.muted = true;
    v.onended = () => done({ended: true, time: v.currentTime, duration: v.duration,
        width: v.videoWidth, audioBytes: v.webkitAudioDecodedByteCount});
    v.onerror = () => done({error: v.error && v.error.code});
    v.play().catch((e) => done({error: String(e)}));
    setTimeout(() => done({timeout: v.currentTime}), 20000);
})"""


def play_to_end(page, element_id: str) -> dict:
    """Play a <video> muted to its end in the page: ended, time, duration, width, decoded audio bytes."""
    return page.evaluate(PLAY_TO_END, element_id)


@pytest.mark.browser
def test_world_clip_plays_to_the_end_in_chromium(tmp_path):
    chromium = require_tool("chromium", "chromium-browser")
    from playwright.sync_api import sync_playwright

    write_sample(make_clip(2), tmp_path, "clip")
    (tmp_path / "index.html").write_text('<video id="v" src="clip.mp4" muted playsinline></video>')
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
            result = play_to_end(page, "v")
            browser.close()
    finally:
        server.shutdown()
    assert result.get("ended"), result
    assert abs(result["duration"] - 2.0) < 0.05 and result["time"] >= result["duration"] - 0.05
    assert result["width"] == 64 and result["audioBytes"] > 0
