"""What the browser tests share: where Chromium is and how it is started, a real daphne
process on a free port, logging in, and ORM work from a test that drives Playwright.
The fixtures built on them (daphne, browser) are in tests/acceptance/conftest.py."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from django.db import connections

from tests.support import processes

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
MISSING = (f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does) "
           "to run the browser test")
OUTPUT = processes.ROOT / "test-output"
PASSWORD = "browser-test-pw-81723"
# Reported by the page itself; Playwright's init script is not subject to the policy.
WATCH_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(
    `${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""



class Daphne:
    """A daphne process on a fixed port, restartable (the 'server comes back' case)."""

    def __init__(self, port: int, log: Path):
        self.port, self.log, self.proc = port, log, None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port),
                 "taskservice.asgi:application"],
                cwd=processes.ROOT, env=processes.process_env(), stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"daphne did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            processes.stop(self.proc, signal.SIGTERM, timeout=10)


def db(fn):
    """Run `fn` (ORM work) in a thread of its own: Playwright's sync API keeps an event loop
    in the test's thread, where Django refuses database calls. Its connection is closed
    after, so the test database can be dropped at the end."""
    def call():
        try:
            return fn()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result()


def login(browser, server, django_user_model, size=(1440, 900), javascript=True):
    """A new page of `browser` logged in to `server`'s admin as a superuser, "operator"."""
    def create():
        if not django_user_model.objects.filter(username="operator").exists():
            django_user_model.objects.create_superuser("operator", "op@example.com", PASSWORD)
    db(create)
    context = browser.new_context(viewport={"width": size[0], "height": size[1]},
                                  java_script_enabled=javascript)
    page = context.new_page()
    page.set_default_timeout(15_000)
    sign_in(page, server.url)
    return page


def sign_in(page, base_url: str, next_path: str = "/admin/") -> None:
    """Sign in as the operator on the admin's login page, landing on `next_path`."""
    page.goto(f"{base_url}/admin/login/?next={next_path}")
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"**{next_path}")
