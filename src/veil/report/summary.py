"""The report's verdicts in the terminal: one row per guarantee, as a rich table."""

from __future__ import annotations

from veil.core.guarantees import GUARANTEE_TITLES, GUARANTEES, Ledger

# Record kinds that stand for a trained model (training-data privacy is about these).
MODEL_RECORDS = ("train", "collab", "backdoor-attack")
VERDICT_STYLE = {
    "holds": "bold green",
    "partial": "bold yellow",
    "does not hold": "bold red",
    "not claimed": "dim",
}


def unprotected_models(ledger: Ledger) -> list[str]:
    """Steps that trained a model but claim no training-data guarantee for it."""
    covered = {e.step for e in ledger.entries if e.guarantee == "training-data"}
    return [r.step for r in ledger.records if r.kind in MODEL_RECORDS and r.step not in covered]


def verdict(ledger: Ledger, kind: str) -> tuple[str, str]:
    """One guarantee's verdict for a newcomer - holds, partial, does not hold, not claimed -
    and the reason in a sentence."""
    given = [e for e in ledger.entries if e.guarantee == kind]
    audits = [e for e in ledger.entries if e.guarantee == "audit" and e.tests == kind]
    broken = [e for e in given + audits if e.status in ("violated", "failed")]
    if broken:
        names = ", ".join(sorted({f"{e.mechanism} ({e.step})" for e in broken}))
        return "does not hold", f"contradicted or failed: {names}"
    if not given:
        if audits:
            return "not claimed", f"nothing claims it; {len(audits)} audit(s) found no breach"
        return "not claimed", "no step of this run gives it"
    steps = sorted({e.step or e.mechanism for e in given})
    backing = f"; backed by {len(audits)} audit(s)" if audits else "; no audit ran"
    missing = unprotected_models(ledger) if kind == "training-data" else []
    if missing:
        return "partial", (
            f"holds for {', '.join(steps)}; not for {', '.join(missing)} (trained without "
            f"a training-data guarantee){backing}"
        )
    return "holds", f"given by {', '.join(steps)}{backing}"


def summary_rows(ledger: Ledger) -> list[dict]:
    """For each of the four guarantees: its verdict and why, its status word, the mechanisms
    behind it, the entries that give it, and the audits that test it (names and entries)."""
    rows = []
    for kind in GUARANTEES:
        entries = ledger.for_guarantee(kind)
        word, reason = verdict(ledger, kind)
        rows.append(
            {
                "guarantee": kind,
                "title": GUARANTEE_TITLES[kind],
                "verdict": word,
                "reason": reason,
                "status": ledger.status(kind),
                "mechanisms": sorted({e.mechanism for e in entries}),
                "given": [e for e in entries if e.guarantee == kind],
                "audits": [e.mechanism for e in entries if e.guarantee == "audit"],
                "audit_entries": [e for e in entries if e.guarantee == "audit"],
            }
        )
    return rows


def summary_table(ledger: Ledger):
    """A rich Table of :func:`summary_rows` (verdict, why, mechanisms), printed after a run;
    the claims themselves are in the report."""
    from rich.table import Table

    table = Table(title=f"veil privacy report: {ledger.run.get('name', 'run')}")
    for col in ("guarantee", "verdict"):
        table.add_column(col, no_wrap=True)
    for col in ("why", "mechanisms"):
        table.add_column(col, overflow="fold")
    for row in summary_rows(ledger):
        style = VERDICT_STYLE[row["verdict"]]
        table.add_row(
            row["title"],
            f"[{style}]{row['verdict']}[/]",
            row["reason"],
            ", ".join(row["mechanisms"]) or "-",
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
