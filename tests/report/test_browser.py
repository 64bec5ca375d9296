"""The report renders in headless Chromium: no console errors, a non-empty screenshot."""

import numpy as np
import pytest
from PIL import Image

from veil.core.guarantees import Guarantee, Ledger
from veil.report import write_html
from veil.report.browser import BrowserError, find_browser, screenshot

pytestmark = pytest.mark.skipif(
    find_browser() is None, reason="chromium missing (Debian's chromium package; make installs it)"
)


def _ledger() -> Ledger:
    ledger = Ledger.start("browser", scenario="x.toml", scenario_sha256="ab" * 32, seed=3)
    ledger.add(
        Guarantee(
            "training-data",
            "DP-SGD",
            "(2, 1e-05)-DP for each training example",
            "adversary sees the model",
            numbers={"epsilon": 2.0, "delta": 1e-5, "test_accuracy": 0.9},
            evidence={"epsilon_curve": [[1, 0.5], [2, 1.0], [3, 2.0]]},
            step="fit",
        )
    )
    ledger.finish(status="ok")
    return ledger


def test_the_report_renders_without_errors(tmp_path):
    page = write_html(_ledger(), tmp_path / "report.html")
    shot = screenshot(page, tmp_path / "shot.png", width=900, height=1200)
    assert shot.console_errors == []
    with Image.open(shot.png) as im:
        assert im.size == (900, 1200)
        pixels = np.asarray(im.convert("L"))
    assert pixels.min() < 100 < pixels.max()  # text on a light page: not blank
    assert (pixels < 200).mean() > 0.01


def test_console_errors_are_reported(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("<p>x</p><script>undefinedFunction();</script>")
    shot = screenshot(page, tmp_path / "bad.png", 300, 200)
    assert any("undefinedFunction" in e for e in shot.console_errors)
    with pytest.raises(BrowserError, match="does not exist"):
        screenshot(tmp_path / "none.html", tmp_path / "x.png")
