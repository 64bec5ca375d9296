"""The report's verdicts in the terminal: one row per guarantee, as a rich table."""

from __future__ import annotations

from veil.core.guarantees import GUARANTEE_TITLES, GUARANTEES, Ledger

STATUS_STYLE = {
    "supported": "bold green",
    "claimed": "green",
    "not claimed": "dim",
    "violated": "bold red",
    "failed": "bold red",
}


def summary_rows(ledger: Ledger) -> list[dict]:
    """For each of the four guarantees: its status, the mechanisms behind it, their claims."""
    rows = []
    for kind in GUARANTEES:
        entries = ledger.for_guarantee(kind)
        rows.append(
            {
                "guarantee": kind,
                "title": GUARANTEE_TITLES[kind],
                "status": ledger.status(kind),
                "mechanisms": sorted({e.mechanism for e in entries}),
                "claims": [e.claim for e in entries if e.guarantee == kind],
                "audits": [e.mechanism for e in entries if e.guarantee == "audit"],
            }
        )
    return rows


def summary_table(ledger: Ledger):
    """A rich Table of :func:`summary_rows`, for printing after a run."""
    from rich.table import Table

    table = Table(title=f"veil privacy report: {ledger.run.get('name', 'run')}")
    for col in ("guarantee", "status"):
        table.add_column(col, no_wrap=True)
    for col in ("mechanisms", "claim", "audits"):
        table.add_column(col, overflow="fold")
    for row in summary_rows(ledger):
        style = STATUS_STYLE.get(row["status"], "")
        table.add_row(
            row["title"],
            f"[{style}]{row['status']}[/]" if style else row["status"],
            ", ".join(row["mechanisms"]) or "-",
            "; ".join(row["claims"]) or "-",
            ", ".join(row["audits"]) or "-",
        )
    return table


def records_table(ledger: Ledger):
    """A rich Table of training and evaluation results (step, kind, headline metrics)."""
    from rich.table import Table

    table = Table(title="training and evaluation")
    for col in ("step", "kind", "metrics"):
        table.add_column(col)
    for rec in ledger.records:
        shown = ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in rec.metrics.items()
        )
        table.add_row(rec.step, rec.kind, shown or "-")
    return table
