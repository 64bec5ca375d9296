import numpy as np
import pytest

from veil import collab
from veil.collab.participant import flat
from veil.collab.updates import SparseUpdate, UpdateRejected
from veil.core.errors import VeilError

FAST = {"data": "digits", "participants": 4, "rounds": 4, "eval_limit": 200}


def _cfg(**kw):
    return collab.CollabConfig(**(FAST | kw))


def test_dssgd_learns_and_shares_a_tenth():
    r = collab.run(_cfg(rounds=6), quiet=True)
    assert r.final_accuracy >= 0.6  # chance is 0.1
    assert r.totals["upload_fraction"] < 0.12
    assert r.guarantee.guarantee == "training-data" and "10%" in r.guarantee.claim
    assert len(r.history) == 6 and len(r.history[-1]["participant_accuracy"]) == 4


def test_runs_are_deterministic():
    a, b = (collab.run(_cfg(order="random"), quiet=True) for _ in range(2))
    assert np.array_equal(flat(a.model), flat(b.model))


@pytest.mark.parametrize(
    "kw",
    [
        {"order": "round-robin", "drop_rate": 0.3},
        {"order": "async", "dssgd": collab.DSSGDConfig(staleness=2)},
        {"algo": "fedavg", "fedavg": collab.FedAvgConfig(fraction=0.5, dp_sigma=0.5)},
    ],
)
def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path, kw):
    whole = collab.run(_cfg(**kw), quiet=True)

    def crash(row):
        if row["round"] == 2:
            raise KeyboardInterrupt  # the server process dies after round 2's checkpoint

    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        collab.run(_cfg(**kw), checkpoint=ckpt, on_round=crash, quiet=True)
    resumed = collab.run(_cfg(**kw), checkpoint=ckpt, resume=True, quiet=True)
    assert np.array_equal(flat(whole.model), flat(resumed.model))
    untimed = [
        [{k: v for k, v in h.items() if k != "seconds"} for h in r.history]
        for r in (whole, resumed)
    ]
    assert untimed[0] == untimed[1]


def test_resume_refuses_other_settings_and_unasked_overwrite(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    collab.run(_cfg(rounds=1), checkpoint=ckpt, quiet=True)
    with pytest.raises(VeilError, match="other settings"):
        collab.run(_cfg(rounds=2, participants=3), checkpoint=ckpt, resume=True, quiet=True)
    with pytest.raises(VeilError, match="exists"):
        collab.run(_cfg(rounds=1), checkpoint=ckpt, quiet=True)
    longer = collab.run(_cfg(rounds=2), checkpoint=ckpt, resume=True, quiet=True)
    assert [h["round"] for h in longer.history] == [1, 2]


def test_dropouts_are_counted_and_do_not_stop_the_run():
    r = collab.run(_cfg(drop_rate=0.5, rounds=3), quiet=True)
    assert r.totals["dropped"] > 0
    assert r.totals["updates_accepted"] + r.totals["dropped"] == 4 * 3


def test_async_rejects_stale_updates_and_loses_nothing_accepted():
    r = collab.run(_cfg(order="async", dssgd=collab.DSSGDConfig(staleness=0)), quiet=True)
    assert r.totals["updates_rejected"].get("stale", 0) > 0
    assert r.totals["updates_accepted"] + r.totals["updates_rejected"]["stale"] == 4 * 4


def test_a_malicious_participant_cannot_corrupt_the_server():
    cfg = _cfg(rounds=1)
    state = collab.runner.Run(cfg, quiet=True)
    before = state.server.params.copy()
    bad = SparseUpdate(0, np.array([0, 0], np.int64), np.array([1e9, 1e9], np.float32), 0)
    assert state.deliver(bad) == 0
    assert np.array_equal(state.server.params, before)
    with pytest.raises(UpdateRejected):
        state.server.apply(bad)


def test_dp_dssgd_reports_whole_run_epsilon_within_target():
    cfg = _cfg(dssgd=collab.DSSGDConfig(upload="svt", gamma=0.01, tau=0.001, dp_epsilon=5.0))
    r = collab.run(cfg, quiet=True)
    n = r.guarantee.numbers
    assert n["epsilon"] <= 5.0 + 1e-9
    assert n["epsilon_per_parameter_paper"] < n["epsilon_per_upload"]
    assert "whole data set over the whole run" in r.guarantee.claim


def test_local_dp_sgd_reports_record_level_epsilon():
    cfg = _cfg(rounds=2, local=collab.LocalTraining(lr=0.5, batch_size=32, dp_sigma=1.0))
    r = collab.run(cfg, quiet=True)
    assert 0 < r.guarantee.numbers["record_epsilon"] < 50
    assert "per record" in r.guarantee.claim


def test_fedavg_learns():
    local = collab.LocalTraining(epochs=3)
    r = collab.run(_cfg(algo="fedavg", rounds=5, local=local), quiet=True)
    assert r.final_accuracy >= 0.7
    assert r.totals["upload_fraction"] == pytest.approx(1.0)


def test_set_flat_copies_and_never_aliases_the_callers_array():
    from veil.collab.participant import set_flat
    from veil.core.models import build

    model = build("mlp", (1, 8, 8), 10)
    vector = np.zeros(flat(model).size, np.float32)
    set_flat(model, vector)
    next(model.parameters()).data.add_(1.0)
    assert not vector.any()  # training the model leaves the source untouched
    with pytest.raises(ValueError):
        set_flat(model, vector[:-1])
