"""The toolbar panels and the HTML report in a real browser: the example project's development
server, Debian's headless Chromium driven by Playwright, a user clicking each django-dbtune
panel, then opening the report.

A screenshot of each panel is saved in test-artifacts/; those of the report, at a desktop
width and at a phone's, in docs/_static/, which the docs page of the report shows.
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_writer import manage

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
DOCS_STATIC = ROOT / "docs" / "_static"


def _needs(condition, message):
    if not condition:
        if os.environ.get("DBTUNE_CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def server(project):
    _needs(
        CHROMIUM.exists(),
        "needs Debian's chromium at /usr/bin/chromium: install it with scripts/browser_setup",
    )
    manage(project, "migrate", "-v0")
    manage(project, "seed_demo", "--scale", "1", "-v0")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**project.env, "DJANGO_DEBUG": "1"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None:
                pytest.fail(f"the development server stopped: {process.stderr.read()}")
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


@pytest.fixture
def page(server):
    playwright_api = pytest.importorskip(
        "playwright.sync_api",
        reason="needs playwright: install the test dependencies (pip install --group dev)",
    )
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            yield page
        finally:
            browser.close()


def open_panel(page, panel_id, name):
    """Click the panel's button in the toolbar, as a user does; screenshot it."""
    page.click(f"#djdt-{panel_id} a")
    content = page.locator(f"#{panel_id} .djDebugPanelContent .djdbtune-panel")
    content.wait_for(state="visible", timeout=15000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"toolbar-{name}.png"))
    text = content.inner_text()
    page.click(f"#{panel_id} .djDebugClose")
    return text


def test_a_user_reads_each_panel_on_the_example_project(server, page, project):
    page.goto(f"{server}/crawler/pages/?url=https://")
    nplusone = open_panel(page, "NPlusOnePanel", "nplusone")
    assert "crawler.PageResult.crawl_job" in nplusone
    assert 'select_related("crawl_job__website")' in nplusone
    assert "crawler/templates/crawler/page_list.html" in nplusone  # the template line
    indexes = open_panel(page, "IndexesPanel", "indexes")
    assert "crawler.PageResult: no index leads with (url)" in indexes
    assert 'models.Index(fields=["url"]' in indexes
    page.goto(f"{server}/cached/")
    page.goto(f"{server}/cached/")  # the second visit is served from the query cache
    cache = open_panel(page, "QueryCachePanel", "query-cache")
    hits = page.locator("#QueryCachePanel .djdbtune-hits")
    assert "Hits" in cache and int(hits.inner_text()) >= 1
    subtitle = page.locator("#djdt-QueryCachePanel small").inner_text()
    assert subtitle.endswith("0 misses")

    # The report: one page, read in the same browser, on a desktop and on a phone.
    manage(project, "dbtune_report", "--output", "report.html", "--url", "/crawler/pages/")
    page.goto((project / "report.html").as_uri())
    page.screenshot(path=str(DOCS_STATIC / "report-desktop.png"), full_page=False)
    text = page.locator("body").inner_text()
    assert "N+1 on crawler.PageResult.crawl_job" in text
    assert "Meta.indexes: models.Index(" in text and "Index health" in text
    assert "Summary" in text and "Requested pages" in text
    page.set_viewport_size({"width": 420, "height": 900})
    page.goto((project / "report.html").as_uri())
    page.screenshot(path=str(DOCS_STATIC / "report-narrow.png"), full_page=False)
    # Nothing runs off the side of a narrow window: no sideways scrolling of the page.
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 420, f"the report is {width} px wide in a 420 px window"
    chart = page.locator("#pages svg").first.bounding_box()
    assert chart is not None and chart["x"] + chart["width"] <= 420
