"""``veil run``: run a scenario of steps into ``ledger.json`` and ``report.html``."""

from __future__ import annotations

from pathlib import Path

import typer


def run(
    scenario: str = typer.Argument(
        None, help="Scenario .toml, or a bundled name (default clinic)."
    ),
    out: Path = typer.Option(Path("veil-out"), "--out", "-o", help="Output folder."),
    force: bool = typer.Option(False, "--force", help="Overwrite an earlier run's outputs."),
    list_bundled: bool = typer.Option(False, "--list", help="List bundled scenarios and exit."),
    check: bool = typer.Option(False, "--check", help="Validate the scenario and stop."),
) -> None:
    """Run a privacy pipeline; with no SCENARIO, the bundled default on bundled data."""
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

    def announce(i: int, n: int, step_id: str, kind: str) -> None:
        console.print(f"[bold]step {i}/{n}[/] {step_id} ({kind})")

    ledger = pipeline.run(sc, out, force=force, on_step=announce)
    Console().print(summary_table(ledger))
    if ledger.records:
        Console().print(records_table(ledger))
    console.print(f"wrote {out / 'ledger.json'} and {out / 'report.html'}")
