"""The whole pipeline: the default scenario end to end, a rerun, and a resume.

Runs the bundled `clinic` scenario (every guarantee, bundled data only) into a fresh folder
and times each step; reruns it into the same folder (every step kept); then runs it into a
second folder interrupted (KeyboardInterrupt) at the step `--interrupt-at`, resumes it, and
checks that the steps finished before the interruption were kept, not redone. Also times the
report's rendering and, when Chromium is installed, its screenshot.

Writes benchmarks/results/pipeline.json: default_scenario_s (goal: under 300 s on 2 cores),
steps, per_step_s, rerun_s, resume_s, kept_after_interrupt, verdicts, report_bytes,
screenshot_s.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import common
from veil import pipeline
from veil.pipeline import steps
from veil.report.summary import verdict


def _timed_run(sc, out: Path, **kw) -> tuple[float, dict, list[str]]:
    marks: list[tuple[str, float, bool]] = []

    def note(i, n, step_id, kind, kept):
        marks.append((step_id, time.perf_counter(), kept))

    start = time.perf_counter()
    ledger = pipeline.run(sc, out, quiet=True, on_step=note, **kw)
    end = time.perf_counter()
    times = [b[1] for b in marks[1:]] + [end]
    per_step = {sid: round(t1 - t0, 2) for (sid, t0, _), t1 in zip(marks, times, strict=True)}
    return end - start, {"per_step": per_step, "ledger": ledger}, [m[0] for m in marks if m[2]]


def _interrupted(sc, out: Path, at: str) -> None:
    real = steps._STEPS[next(s.kind for s in sc.steps if s.id == at)]

    def stop(cfg, ctx):
        if cfg.id == at:
            raise KeyboardInterrupt
        return real.run(cfg, ctx)

    kind = next(s.kind for s in sc.steps if s.id == at)
    steps._STEPS[kind] = steps.StepKind(real.config, stop, real.produces)
    try:
        pipeline.run(sc, out, quiet=True)
    except KeyboardInterrupt:
        pass
    finally:
        steps._STEPS[kind] = real


def main() -> None:
    p = common.parser("pipeline", __doc__.split("\n")[0])
    p.add_argument("--interrupt-at", default="tumour-he-serve", help="step to interrupt at")
    args = p.parse_args()
    sc = pipeline.load("clinic")
    with tempfile.TemporaryDirectory(prefix="veil-bench-pipeline-") as tmp:
        tmp = Path(tmp)
        full_s, full, _ = _timed_run(sc, tmp / "run")
        rerun_s, _, kept_rerun = _timed_run(sc, tmp / "run")
        _interrupted(sc, tmp / "resumed", args.interrupt_at)
        resume_s, _, kept = _timed_run(sc, tmp / "resumed")
        before = [s.id for s in sc.steps][: [s.id for s in sc.steps].index(args.interrupt_at)]
        report = tmp / "run" / "report.html"
        shot_s = None
        from veil.report.browser import find_browser, screenshot

        if find_browser():
            shot_s, _ = common.timed(lambda: screenshot(report, tmp / "shot.png"))
        report_bytes = report.stat().st_size
    ledger = full["ledger"]
    results = {
        "default_scenario_s": round(full_s, 2),
        "steps": len(sc.steps),
        "per_step_s": full["per_step"],
        "rerun_s": round(rerun_s, 2),
        "rerun_kept": len(kept_rerun),
        "interrupted_at": args.interrupt_at,
        "resume_s": round(resume_s, 2),
        "kept_after_interrupt": kept,
        "kept_all_finished": kept == before,
        "verdicts": {
            kind: verdict(ledger, kind)[0] for kind in ("training-data", "input", "output", "model")
        },  # fmt: skip
        "report_bytes": report_bytes,
        "screenshot_s": round(shot_s, 2) if shot_s is not None else None,
    }
    common.write_results("pipeline", results, args)


if __name__ == "__main__":
    main()
