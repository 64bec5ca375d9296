"""``veil run``: run a scenario of steps into ``ledger.json`` and ``report.html``."""

from __future__ import annotations

from pathlib import Path

import typer


def run(
    scenario: str = typer.Argument(
        None, help="Scenario .toml, or a bundled name (default clinic)."
    ),
    out: Path = typer.Option(Path("veil-out"), "--out", "-o", help="Output folder."),
    force: bool = typer.Option(
        False, "--force", help="Rerun every step, even over another scenario's folder."
    ),
    from_step: str = typer.Option(None, "--from", help="Rerun this step and every step after it."),
    list_bundled: bool = typer.Option(False, "--list", help="List bundled scenarios and exit."),
    check: bool = typer.Option(False, "--check", help="Validate the scenario and stop."),
) -> None:
    """Run a privacy pipeline; with no SCENARIO, the bundled default on bundled data.

    Run again into the same folder to resume: unchanged steps are kept, not redone."""
    from rich.console import Console

    from veil import pipeline
    from veil.report import records_table, summary_table

    console = Console(stderr=True)
    if list_bundled:
        for name in pipeline.bundled():
            typer.echo(name)
        return
    sc = pipeline.load(scenario)
    pipeline.check_graph(sc)
    if check:
        console.print(f"{sc.source}: {len(sc.steps)} steps, graph ok")
        return

    def announce(i: int, n: int, step_id: str, kind: str, reused: bool) -> None:
        done = " [dim]unchanged: kept from the earlier run[/]" if reused else ""
        console.print(f"[bold]step {i}/{n}[/] {step_id} ({kind}){done}")

    ledger = pipeline.run(sc, out, force=force, from_step=from_step, on_step=announce)
    Console().print(summary_table(ledger))
    if ledger.records:
        Console().print(records_table(ledger))
    console.print(f"wrote {out / 'ledger.json'} and {out / 'report.html'}")
