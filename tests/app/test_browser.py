"""End to end in a real Chromium: label with the keyboard, see the retrain and re-ranking, undo, export."""
import csv
import io
import os
from pathlib import Path

import pytest

from tests.app.conftest import CLASSES

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is missing; .ci/run must install it")
        pytest.skip("chromium not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.mark.browser
@pytest.mark.slow
def test_label_retrain_rerank_undo_export(photos, server_factory, browser, tmp_path: Path) -> None:
    root, truth = photos
    s = server_factory(root, "--retrain-every", "10", "--min-labels", "20", "--epochs", "3", "--budget", "60")
    page = browser.new_page(viewport={"width": 1200, "height": 820}, accept_downloads=True)
    page.goto(s.url + "/?annotator=tester")
    page.wait_for_selector("#class-buttons button >> nth=9")
    assert "cold start" in page.inner_text("#model-status")
    page.keyboard.press("?")
    assert page.is_visible("#help") and "skip" in page.inner_text("#help")
    page.keyboard.press("?")

    def current() -> str:
        page.wait_for_function("document.getElementById('current').dataset.imageId !== ''")
        return page.get_attribute("#current", "src").split("/img/")[1].split("?")[0]

    labeled: list[str] = []
    for _ in range(24):  # a batch past the cold-start threshold, by keyboard, with the true classes
        name = current()
        key = str((truth[name] + 1) % 10)
        page.keyboard.press(key)
        page.wait_for_function(f"document.getElementById('labeled-count').textContent === '{len(labeled) + 1}'")
        labeled.append(name)
    assert page.inner_text("#labeled-count") == "24"

    page.wait_for_function("document.body.dataset.reranked >= 1", timeout=180_000)
    assert "queue re-ranked" in page.inner_text("#message")
    page.wait_for_function("!document.getElementById('model-status').textContent.includes('training')",
                           timeout=180_000)
    assert page.inner_text("#model-status").startswith("model v")
    quality = page.inner_text("#model-quality")
    assert "held-out" in quality

    before_undo = current()
    page.keyboard.press("u")
    page.wait_for_function("document.getElementById('labeled-count').textContent === '23'")
    assert current() == labeled[-1] and current() != before_undo
    page.keyboard.press(str((truth[labeled[-1]] + 1) % 10))
    page.wait_for_function("document.getElementById('labeled-count').textContent === '24'")
    skipped = current()
    page.keyboard.press("s")
    page.wait_for_function(f"!document.getElementById('current').src.includes('{skipped}')")

    shots = Path(os.environ.get("ALKIT_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "labeling-app.png"))

    with page.expect_download() as download:
        page.click("#export")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert len(rows) == 24 and {r["annotator"] for r in rows} == {"tester"}
    assert all(r["label"] == CLASSES[truth[r["file"]]] for r in rows)
    page.close()
