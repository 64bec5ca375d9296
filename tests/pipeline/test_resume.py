"""Resuming runs: unchanged steps kept, changes rerun downstream, interruptions lose nothing."""

import json
from dataclasses import asdict

import pytest

from veil import pipeline
from veil.core.errors import ScenarioError
from veil.core.guarantees import Ledger
from veil.pipeline import steps

SCENARIO = """\
[scenario]
name = "resume"
seed = 1

[[steps]]
id = "fit"
kind = "train"
data = "digits"
epochs = 2
limit = 300

[[steps]]
id = "private"
kind = "dp-train"
data = "digits"
epsilon = 4.0
noise_seed = 3
lr = 0.2
batch_size = 100
epochs = 2
limit = 300

[[steps]]
id = "check"
kind = "evaluate"
uses = "private"
"""


def _run(out, text=SCENARIO, **kw):
    seen = []
    ledger = pipeline.run(
        pipeline.parse(text), out, on_step=lambda i, n, sid, k, kept: seen.append(kept), **kw
    )
    return ledger, seen


def _timeless(value):
    """``value`` without its clock readings (timestamps and durations differ run to run)."""
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items() if k not in ("time", "seconds")}
    return [_timeless(v) for v in value] if isinstance(value, list) else value


def _content(ledger: Ledger) -> list:
    return _timeless([asdict(x) for x in ledger.entries + ledger.records])


def test_a_rerun_keeps_every_unchanged_step(tmp_path):
    first, seen = _run(tmp_path / "out")
    assert seen == [False, False, False]
    again, seen = _run(tmp_path / "out")
    assert seen == [True, True, True] and again.run["reused"] == ["fit", "private", "check"]
    assert again.entries == first.entries and again.records == first.records
    assert Ledger.load(tmp_path / "out/ledger.json").records == first.records


def test_an_interrupted_run_resumes_to_the_same_ledger(tmp_path, monkeypatch):
    whole, _ = _run(tmp_path / "whole")
    evaluate = steps._STEPS["evaluate"]

    def interrupted(cfg, ctx):
        raise KeyboardInterrupt

    monkeypatch.setitem(
        steps._STEPS, "evaluate", steps.StepKind(evaluate.config, interrupted, None)
    )
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "out")
    saved = json.loads((tmp_path / "out/ledger.json").read_text())
    assert saved["run"]["status"] == "interrupted" and saved["run"]["interrupted_step"] == "check"
    monkeypatch.setitem(steps._STEPS, "evaluate", evaluate)
    resumed, seen = _run(tmp_path / "out")
    assert seen == [True, True, False]
    assert _content(resumed) == _content(whole)


def test_a_changed_setting_reruns_its_step_and_the_steps_that_use_it(tmp_path):
    _run(tmp_path / "out")
    _, seen = _run(tmp_path / "out", SCENARIO.replace("epsilon = 4.0", "epsilon = 5.0"))
    assert seen == [True, False, False]
    _, seen = _run(tmp_path / "out")  # back to epsilon 4: the saved state is epsilon 5's
    assert seen == [True, False, False]


def test_a_changed_output_is_made_again(tmp_path):
    _run(tmp_path / "out")
    model = tmp_path / "out/models/private.veil"
    model.write_bytes(model.read_bytes()[:-1])
    _, seen = _run(tmp_path / "out")
    assert seen == [True, False, True]  # same bytes again (fixed seeds): check is kept
    (tmp_path / "out/steps/fit.json").write_text("{not json")
    _, seen = _run(tmp_path / "out")
    assert seen == [False, True, True]


def test_from_reruns_a_step_and_all_after_it(tmp_path):
    _run(tmp_path / "out")
    _, seen = _run(tmp_path / "out", from_step="private")
    assert seen == [True, False, False]
    with pytest.raises(ScenarioError, match="--from 'nope': no such step"):
        _run(tmp_path / "out", from_step="nope")


def test_another_scenarios_folder_is_refused_unless_forced(tmp_path):
    _run(tmp_path / "out")
    other = SCENARIO.replace('name = "resume"', 'name = "other"')
    with pytest.raises(ScenarioError, match="holds a run of scenario 'resume'"):
        _run(tmp_path / "out", other)
    _, seen = _run(tmp_path / "out", other, force=True)
    assert seen == [False, False, False]


def test_a_changed_veil_reruns_every_step(tmp_path, monkeypatch):
    from veil.pipeline import resume

    _run(tmp_path / "out")
    monkeypatch.setattr(resume, "code_digest", lambda: "another veil at the same version")
    _, seen = _run(tmp_path / "out")
    assert seen == [False, False, False]
