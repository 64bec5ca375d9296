"""Render a report in headless Chromium: a screenshot, and the page's console errors.

Used by the docs script that takes the README's screenshot and by the test that the report
renders. Chromium comes from Debian's package (``/usr/bin/chromium``); it is started with a
fresh profile and with background networking off (this machine has no network, and a page
of veil's needs none: everything, plots included, is inside the HTML).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from veil.core.errors import VeilError

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",  # run as root in CI containers; the page is veil's own file
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
)


class BrowserError(VeilError):
    """No Chromium, or Chromium failed to render the page."""


@dataclass
class Rendered:
    png: Path
    console_errors: list[str]


def find_browser() -> str | None:
    """The path of a Chromium found on PATH, or None."""
    return next((found for b in BROWSERS if (found := shutil.which(b))), None)


def _console_errors(log: str) -> list[str]:
    return [
        line.split("] ", 1)[-1]
        for line in log.splitlines()
        if ":CONSOLE" in line and ("Uncaught" in line or "rror" in line)
    ]


def screenshot(
    page: str | Path, png: str | Path, width: int = 1100, height: int = 1500, timeout: float = 90
) -> Rendered:
    """Render ``page`` (an HTML file) to ``png`` at ``width`` x ``height`` pixels."""
    browser = find_browser()
    if browser is None:
        raise BrowserError("no Chromium found: install Debian's chromium package")
    page, png = Path(page).resolve(), Path(png).resolve()
    if not page.is_file():
        raise BrowserError(f"{page} does not exist")
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="veil-chromium-") as profile:
        cmd = [browser, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
               f"--screenshot={png}", page.as_uri()]  # fmt: skip
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise BrowserError(f"Chromium did not finish rendering {page} in {timeout} s") from e
    if proc.returncode != 0 or not png.is_file() or png.stat().st_size == 0:
        tail = (proc.stderr or "").strip().splitlines()[-3:]
        raise BrowserError(f"Chromium failed on {page} (exit {proc.returncode}): {tail}")
    return Rendered(png, _console_errors(proc.stderr))
