"""The report as a browser draws it: Playwright for Python driving the system's chromium.

Playwright's own browser builds are not used (no ``playwright install``): ``apt-get install
chromium`` and ``pip install playwright``. Without either, these tests skip and say why;
with ``WTFLOW_REQUIRE_BROWSER=1`` that skip becomes a failure.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import missing_backend

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

REQUIRE = "WTFLOW_REQUIRE_BROWSER"


# Module-scoped, not session-scoped: while Playwright's sync API is open, its event loop counts as
# running in this thread, and the tests that follow could not call asyncio.run.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium, headless, shared by a module's tests."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        missing_backend(f"Playwright for Python is missing ({exc}): pip install playwright", REQUIRE)
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        missing_backend("chromium is not installed: apt-get install chromium", REQUIRE)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Opened:
    """A report open in a page, with every request it made and every error it logged."""

    page: Page
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def open_report(browser: Browser) -> Iterator[Callable[..., Opened]]:
    """Open a report file in a fresh page (its own context) and wait until its script has drawn it."""
    contexts: list[Any] = []

    def open_(path: Path, *, width: int = 1280, height: int = 900) -> Opened:
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        opened = Opened(page)
        page.on("request", lambda request: opened.requests.append(request.url))
        page.on("console", lambda message: _console(opened, message))
        page.on("pageerror", lambda error: opened.errors.append(f"page error: {error}"))
        page.goto(path.as_uri())
        page.wait_for_selector("body[data-ready]")
        return opened

    yield open_
    for context in contexts:
        context.close()


def _console(opened: Opened, message: Any) -> None:
    if message.type == "error":
        opened.errors.append(f"console error: {message.text}")
