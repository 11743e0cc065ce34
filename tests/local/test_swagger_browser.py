"""`make serve`'s Swagger UI in a real headless Chromium: the page loads, "Try it out" -> Execute on POST /predict
shows a prediction, and every request the page made stayed on 127.0.0.1.

The browser is Debian's chromium (``apt-get install chromium``; CHROMIUM=path for another), driven by Playwright
(requirements/dev.txt); Playwright's own browser downloads are never used. SWAGGER_SCREENSHOT=1 writes the
screenshot that docs/api.md shows to docs/img/swagger.png (otherwise it goes to the test's tmp_path).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import BUNDLED, ROOT
from tests.local.test_local import _free_port

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# The flags Debian's chromium needs as root in a container, and nothing that phones home.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = ROOT / "docs" / "img" / "swagger.png"
REVIEW = "Works great, setup took two minutes."  # synthetic, written for this test


def _wait_for_health(base: str) -> None:
    """Until the server's /health answers (it loads the bundled model first), at most about a minute."""
    for _ in range(300):
        try:
            urllib.request.urlopen(base + "/health", timeout=2).read()
            return
        except OSError:
            time.sleep(0.2)


@pytest.fixture(scope="module")
def browser_type() -> Iterator[object]:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no chromium at {CHROMIUM}: apt-get install chromium (.ci/run does) or set CHROMIUM")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements/dev.txt)")
    with sync_api.sync_playwright() as playwright:
        yield playwright.chromium


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """`python -m local.serve` (what `make serve` runs) with the bundled model, docs left at the default."""
    if not (BUNDLED / "model.json").is_file():
        pytest.skip("model_artifacts/ holds no bundled model")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "API_DOCS"}
    env.update({"MODEL_DIR": str(BUNDLED), "MODEL_BACKEND": "tflite", "POWERTOOLS_LOG_LEVEL": "WARNING"})
    process = subprocess.Popen([sys.executable, "-m", "local.serve", "--port", str(port)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_health(base)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_try_it_out_predicts_from_the_page_and_nothing_leaves_127_0_0_1(browser_type, server: str,
                                                                         tmp_path: Path) -> None:
    # GIVEN a fresh browser profile that records every request and lets only this server's through
    context = browser_type.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True,
                                                     args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900})
    requested: list[str] = []
    elsewhere: list[str] = []
    console_errors: list[str] = []

    def only_local(route) -> None:  # playwright's Route
        url = route.request.url
        if urlsplit(url).scheme in ("data", "blob") or urlsplit(url).hostname == "127.0.0.1":
            route.continue_()
        else:
            elsewhere.append(url)
            route.abort()

    context.route("**/*", only_local)
    context.on("request", lambda request: requested.append(request.url))
    try:
        page = context.new_page()
        page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)

        # WHEN the page loads and "Try it out" -> Execute sends one review to POST /predict
        response = page.goto(server + "/docs")
        assert response is not None and response.status == 200
        operation = page.locator("#operations-default-predict_predict_post")
        operation.locator(".opblock-summary").click()
        operation.get_by_role("button", name="Try it out").click()
        operation.locator("textarea.body-param__text").fill(json.dumps({"text": REVIEW}))
        with page.expect_response(lambda r: r.request.method == "POST" and r.url == server + "/predict") as sent:
            operation.get_by_role("button", name="Execute").click()
        assert sent.value.status == 200
        live = operation.locator(".live-responses-table tbody tr.response")
        live.locator(".response-col_status").wait_for()

        # THEN the page shows the status and the response body, with a label, as the server sent it
        assert live.locator(".response-col_status").inner_text().strip() == "200"
        shown = json.loads(live.locator(".response-col_description pre.microlight").first.inner_text())
        assert shown == sent.value.json()
        assert shown["results"][0]["label"] in ("POSITIVE", "NEGATIVE") and 0.5 <= shown["results"][0]["score"] <= 1
        # ... and every request the page made went to this server: the page, its two assets and the prediction
        assert elsewhere == []
        assert all(urlsplit(url).hostname == "127.0.0.1" for url in requested if urlsplit(url).scheme in ("http", "https"))
        assert {server + "/docs", server + "/docs/swagger-ui.js", server + "/docs/swagger-ui.css",
                server + "/predict"} <= set(requested)
        assert console_errors == []  # no CSP violation, no failed load

        # The page from its top down to the response shown (page coordinates: the click may have scrolled).
        bottom = live.evaluate("row => row.getBoundingClientRect().bottom + window.scrollY")
        path = SCREENSHOT if os.environ.get("SWAGGER_SCREENSHOT") == "1" else tmp_path / "swagger.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True, clip={"x": 0, "y": 0, "width": 1280, "height": bottom + 24})
        assert path.stat().st_size > 10_000
    finally:
        context.close()


def test_docs_are_off_with_no_docs() -> None:
    """`python -m local.serve --no-docs` answers /docs as the deployed API's default does: 404."""
    if not (BUNDLED / "model.json").is_file():
        pytest.skip("model_artifacts/ holds no bundled model")
    port = _free_port()
    env = {**os.environ, "MODEL_DIR": str(BUNDLED), "MODEL_BACKEND": "tflite", "API_DOCS": "true"}
    process = subprocess.Popen([sys.executable, "-m", "local.serve", "--port", str(port), "--no-docs"], cwd=ROOT,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_health(base)
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(base + "/docs", timeout=10)
        assert error.value.code == 404 and json.loads(error.value.read())["error"]["code"] == "not_found"
    finally:
        process.terminate()
        process.wait(timeout=10)
