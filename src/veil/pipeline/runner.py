"""Run a scenario: check its step graph, run each step, write ledger.json and report.html.

Nothing is lost: if a step fails or the run is interrupted, the ledger so far is still
written (run status ``failed`` or ``interrupted``) before the error is raised, and every
finished step's outcome is kept in ``steps/`` so that the next run resumes from there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from veil.core.errors import ScenarioError, VeilError
from veil.core.guarantees import Ledger
from veil.pipeline import resume
from veil.pipeline.scenario import Scenario, kind_fits
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
            elif not kind_fits(kind, produced[name]):
                problems.append(
                    f"{where}: {step.id}.{fld} needs a {kind}, but step {name!r} "
                    f"produces {produced[name] or 'nothing'}"
                )
        produced[step.id] = step_kind(step.kind).produces
    if problems:
        raise ScenarioError("; ".join(problems))


# Packages whose versions can change a run's numbers (the report's reproducibility footer).
PACKAGES = ("torch", "numpy", "scipy", "scikit-learn", "dp-accounting", "opacus", "flwr",
            "tenseal", "pydicom", "cryptography")  # fmt: skip


def versions() -> dict[str, str]:
    """Python's and the installed :data:`PACKAGES`' versions."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def _check_folder(out: Path, scenario: Scenario, force: bool) -> None:
    """An earlier run in ``out`` may be resumed only if it ran the same scenario."""
    if force or not (out / "ledger.json").exists():
        return
    try:
        earlier = Ledger.load(out / "ledger.json").run.get("name")
    except VeilError:
        earlier = None
    if earlier != scenario.header.name:
        what = f"a run of scenario {earlier!r}" if earlier else "a ledger.json veil cannot read"
        raise ScenarioError(
            f"{out} holds {what}, not of {scenario.header.name!r}: choose another folder, or "
            "pass --force to run over it"
        )


def run(
    scenario: Scenario,
    out: str | Path = "veil-out",
    *,
    force: bool = False,
    from_step: str | None = None,
    quiet: bool | None = None,
    on_step: Callable[[int, int, str, str, bool], None] | None = None,
) -> Ledger:
    """Run ``scenario`` into ``out``: ``ledger.json``, ``report.html`` and each step's outputs.

    A rerun into the same folder skips every step whose settings, inputs and outputs are
    unchanged (see :mod:`veil.pipeline.resume`) and takes its ledger part as it was, so an
    interrupted run resumes where it stopped. ``from_step`` reruns that step and all after
    it; ``force`` reruns everything (and may run over another scenario's folder).
    ``on_step(i, n, id, kind, reused)`` is told of each step before it runs.
    """
    from veil.report import write_html

    check_graph(scenario)
    ids = [s.id for s in scenario.steps]
    if from_step is not None and from_step not in ids:
        raise ScenarioError(f"--from {from_step!r}: no such step; steps: {', '.join(ids)}")
    out = Path(out)
    _check_folder(out, scenario, force)
    out.mkdir(parents=True, exist_ok=True)
    ledger = Ledger.start(
        scenario.header.name,
        scenario=scenario.source,
        scenario_sha256=scenario.digest,
        seed=scenario.header.seed,
        steps=ids,
        step_kinds={s.id: s.kind for s in scenario.steps},
        versions=versions(),
    )
    ctx = RunContext(out, ledger, seed=scenario.header.seed, quiet=quiet)
    done: dict[str, str] = {}  # step id -> its identity for the steps that use it
    reused, rerun = [], force
    for i, step in enumerate(scenario.steps, 1):
        rerun = rerun or step.id == from_step
        mark = resume.fingerprint(step, scenario.header.seed, done)
        saved = None if rerun else resume.load(out, step.id, mark)
        if on_step:
            on_step(i, len(ids), step.id, step.kind, saved is not None)
        if saved is not None:
            part, artifact, output_digest = saved
            reused.append(step.id)
            ledger.entries += part.entries
            ledger.records += part.records
        else:
            part, artifact = _run_step(step, ctx, out)
            output_digest = resume.save(out, step.id, mark, part, artifact)
        done[step.id] = resume.identity(mark, output_digest)
        if artifact is not None:
            ctx.artifacts[step.id] = artifact
            if artifact.path is not None:
                ledger.artifacts[step.id] = str(artifact.path)
    ledger.finish(status="ok", reused=reused)
    ledger.save(out / "ledger.json")
    write_html(ledger, out / "report.html")
    return ledger


def _run_step(step, ctx: RunContext, out: Path):
    """Run one step; return the ledger part it added and its output. On failure or
    interruption the ledger so far is saved (status failed or interrupted) first."""
    ledger = ctx.ledger
    first_entry, first_record = len(ledger.entries), len(ledger.records)
    try:
        artifact = step_kind(step.kind).run(step, ctx)
    except VeilError as e:
        ledger.finish(status="failed", failed_step=step.id, error=str(e))
        ledger.save(out / "ledger.json")
        raise type(e)(f"step {step.id!r} ({step.kind}) failed: {e}") from e
    except KeyboardInterrupt:
        ledger.finish(status="interrupted", interrupted_step=step.id)
        ledger.save(out / "ledger.json")
        raise
    part = Ledger(entries=ledger.entries[first_entry:], records=ledger.records[first_record:])
    return part, artifact
