"""``veil report``: render a ledger as one self-contained HTML page and a terminal summary."""

from __future__ import annotations

from pathlib import Path

import typer


def report(
    ledger: Path = typer.Argument(..., help="ledger.json written by a veil command."),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="HTML file to write."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing report."),
    screenshot: Path = typer.Option(
        None, help="Also render the page in headless Chromium to this PNG (top of the page)."
    ),
) -> None:
    """Render LEDGER as an HTML report and print the four guarantees' verdicts."""
    from rich.console import Console

    from veil.core.errors import refuse_overwrite
    from veil.core.guarantees import Ledger
    from veil.report import records_table, summary_table, write_html

    run_ledger = Ledger.load(ledger)
    refuse_overwrite(out, force)
    write_html(run_ledger, out)
    console = Console()
    console.print(summary_table(run_ledger))
    if run_ledger.records:
        console.print(records_table(run_ledger))
    console.print(f"wrote {out}")
    if screenshot is not None:
        from veil.report.browser import BrowserError
        from veil.report.browser import screenshot as render

        refuse_overwrite(screenshot, force)
        shot = render(out, screenshot)
        if shot.console_errors:
            raise BrowserError(f"the page logged errors: {shot.console_errors}")
        console.print(f"wrote {screenshot} (headless Chromium)")
