"""Render a Ledger to one self-contained HTML page (jinja2; plots embedded as PNG)."""

from __future__ import annotations

import json
from pathlib import Path

from veil.core.guarantees import Ledger
from veil.report.plots import all_figures
from veil.report.summary import summary_rows


def _environment():
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("veil.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["compact"] = lambda v: json.dumps(_rounded(v), separators=(", ", ": "), default=str)
    env.filters["num"] = _format_number
    return env


def _format_number(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _is_series(v) -> bool:
    """A list of [x, y] points (a curve or ROC), which the report plots instead of printing."""
    return (
        isinstance(v, list)
        and len(v) > 2
        and all(isinstance(p, list | tuple) and len(p) == 2 for p in v[:20])
    )


def _is_image(v) -> bool:
    """Rows of pixels (H x W or H x W x C, H and W at least 3), which the report draws."""
    return isinstance(v, list) and len(v) > 2 and all(isinstance(r, list) and len(r) > 2 for r in v)


def _summary(v):
    if _is_series(v):
        return f"{len(v)} points, plotted below"
    if _is_image(v):
        return f"{len(v)}x{len(v[0])} image, drawn below"
    return _rounded(v)


def _rounded(value):
    """Floats to 4 significant digits; point series and images summarised (they are drawn)."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: _summary(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def step_order(ledger: Ledger) -> list[str]:
    """The run's steps in order: as the run listed them, then any other step named by an
    entry or a record (ledgers written by single commands list none)."""
    order = list(ledger.run.get("steps", []))
    for item in [*ledger.entries, *ledger.records]:
        if item.step and item.step not in order:
            order.append(item.step)
    return order


def step_sections(ledger: Ledger, figures: list) -> list[dict]:
    """One section per step: its kind, its ledger entries and records, and its figures;
    entries and records that name no step get a section ``run`` at the end."""
    kinds = ledger.run.get("step_kinds", {})
    order = step_order(ledger)
    if any(not item.step for item in [*ledger.entries, *ledger.records]):
        order.append("")
    return [
        {
            "id": step or "run",
            "kind": kinds.get(step, ""),
            "entries": [e for e in ledger.entries if e.step == step],
            "records": [r for r in ledger.records if r.step == step],
            "figures": [f for f in figures if step and f.step == step],
        }
        for step in order
    ]


def render_html(ledger: Ledger) -> str:
    """The report page for ``ledger`` as a string: a verdict card per guarantee, a section
    per step (entries, records, plots), plots across steps, artifacts, how to reproduce."""
    figures = all_figures(ledger)
    steps = step_sections(ledger, figures)
    named = {s["id"] for s in steps}
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            run=ledger.run,
            summary=summary_rows(ledger),
            steps=steps,
            across=[f for f in figures if f.step not in named],
            artifacts=ledger.artifacts,
        )
    )


def write_html(ledger: Ledger, path: str | Path) -> Path:
    """Write the report page for ``ledger`` to ``path`` (atomically)."""
    from veil.core.io import atomic_write

    return atomic_write(path, render_html(ledger))
