"""The studio page generates a clip through the API and plays it, with sound, in headless Chromium."""

import pytest

from happyhorse.serve import ServeConfig
from tests.conftest import require_tool, tiny_pipeline
from tests.test_browser import CHROMIUM_ARGS, play_to_end
from tests.test_serve import live_server, png_bytes


@pytest.mark.browser
def test_studio_generates_and_plays_a_clip(tmp_path):
    chromium = require_tool("chromium", "chromium-browser")
    from playwright.sync_api import sync_playwright

    model = tiny_pipeline().save_pretrained(tmp_path / "tiny")
    (tmp_path / "first.png").write_bytes(png_bytes())
    with live_server(ServeConfig(model=model, data_dir=tmp_path / "data")) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(url + "/")
        page.wait_for_selector("#model:has-text('model: tiny')")
        page.fill("#prompt", "A small red rubber ball falls and bounces.")
        page.fill("#seconds", "1")
        page.fill("#seed", "5")
        page.set_input_files("#image", str(tmp_path / "first.png"))
        page.click("#generate")
        page.wait_for_selector("#status[data-status=completed]", timeout=300_000)
        page.wait_for_function("document.getElementById('player').src.startsWith('blob:')")
        result = play_to_end(page, "player")
        assert page.get_attribute("#download", "download").endswith(".mp4")
        page.wait_for_selector("#recent li img[src^='blob:']")
        errors = page.text_content("#error")
        browser.close()
    assert result.get("ended"), result
    assert result["width"] == 32 and result["audioBytes"] > 0 and abs(result["duration"] - 1.0) < 0.1
    assert not errors
