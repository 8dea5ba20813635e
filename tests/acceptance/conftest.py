"""Fixtures of the browser tests: a real daphne on a free port, and a headless Chromium
(each browser test module skips itself when Chromium is missing)."""

from __future__ import annotations

import pytest

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, Daphne
from tests.support.processes import free_port


@pytest.fixture
def daphne(tmp_path):
    server = Daphne(free_port(), tmp_path / "daphne.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                      headless=True)
        yield chromium
        chromium.close()
