"""Run a scenario: check its step graph, run each step, write ledger.json and report.html.

Nothing is lost: if a step fails, the ledger so far is still written (run status
``failed``, with the error) before the error is raised.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from veil.core.errors import ScenarioError, VeilError, refuse_overwrite
from veil.core.guarantees import Ledger
from veil.pipeline.scenario import ANY_FILE, Scenario
from veil.pipeline.steps import RunContext, step_kind

OUTPUTS = ("ledger.json", "report.html")


def check_graph(scenario: Scenario) -> None:
    """Every step id unique; every reference names an earlier step that produces that kind."""
    produced: dict[str, str | None] = {}
    problems = []
    for i, step in enumerate(scenario.steps):
        where = f"{scenario.source}, line {scenario.lines.get(('steps', i), '?')}"
        if step.id in produced:
            problems.append(f"{where}: step id {step.id!r} is used twice")
        for fld, (name, kind) in step.references().items():
            if name not in produced:
                problems.append(
                    f"{where}: {step.id}.{fld} needs {kind} {name!r}, which no earlier "
                    "step produces"
                )
            elif produced[name] != kind and not (kind == ANY_FILE and produced[name]):
                problems.append(
                    f"{where}: {step.id}.{fld} needs a {kind}, but step {name!r} "
                    f"produces {produced[name] or 'nothing'}"
                )
        produced[step.id] = step_kind(step.kind).produces
    if problems:
        raise ScenarioError("; ".join(problems))


def run(
    scenario: Scenario,
    out: str | Path = "veil-out",
    *,
    force: bool = False,
    quiet: bool | None = None,
    on_step: Callable[[int, int, str, str], None] | None = None,
) -> Ledger:
    """Run every step of ``scenario``; write ``ledger.json`` and ``report.html`` into ``out``."""
    from veil.report import write_html

    check_graph(scenario)
    out = Path(out)
    for name in OUTPUTS:
        refuse_overwrite(out / name, force)
    out.mkdir(parents=True, exist_ok=True)
    ledger = Ledger.start(
        scenario.header.name,
        scenario=scenario.source,
        seed=scenario.header.seed,
        steps=[s.id for s in scenario.steps],
    )
    ctx = RunContext(out, ledger, seed=scenario.header.seed, quiet=quiet)
    for i, step in enumerate(scenario.steps, 1):
        if on_step:
            on_step(i, len(scenario.steps), step.id, step.kind)
        try:
            artifact = step_kind(step.kind).run(step, ctx)
        except VeilError as e:
            ledger.finish(status="failed", failed_step=step.id, error=str(e))
            ledger.save(out / "ledger.json")
            raise type(e)(f"step {step.id!r} ({step.kind}) failed: {e}") from e
        if artifact is not None:
            ctx.artifacts[step.id] = artifact
            if artifact.path is not None:
                ledger.artifacts[step.id] = str(artifact.path)
    ledger.finish(status="ok")
    ledger.save(out / "ledger.json")
    write_html(ledger, out / "report.html")
    return ledger
