"""Guarantee records and the Ledger: validation, statuses, exact JSON round trip."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from veil.core.errors import LedgerError
from veil.core.guarantees import GUARANTEES, Guarantee, Ledger, Record


def _dp(**kw):
    base = dict(
        guarantee="training-data",
        mechanism="DP-SGD",
        claim="(2, 1e-5)-DP",
        threat_model="adversary sees the final model",
        parameters={"sigma": 1.1},
        numbers={"epsilon": 2.0, "delta": 1e-5},
    )
    return Guarantee(**(base | kw))


def test_round_trip_is_exact(tmp_path):
    ledger = Ledger.start("t", seed=1)
    ledger.add(_dp())
    ledger.add(
        _dp(
            guarantee="audit",
            mechanism="LiRA",
            tests="training-data",
            status="supported",
            evidence={"auc": 0.51, "roc": [[0, 0], [1, 1]]},
        )
    )
    ledger.record(Record("train", "s1", metrics={"acc": 0.9}, curves={"loss": [1.0, 0.5]}))
    ledger.artifacts["m"] = "models/m.veil"
    ledger.finish(status="ok")
    path = ledger.save(tmp_path / "l.json")
    again = Ledger.load(path)
    assert again == ledger
    assert again.to_json() == ledger.to_json()


@given(
    eps=st.floats(0.01, 100),
    params=st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8)),
)
def test_round_trip_property(eps, params):
    ledger = Ledger(run={"name": "p"})
    ledger.add(_dp(numbers={"epsilon": eps}, parameters=params))
    assert Ledger.from_dict(json.loads(ledger.to_json())) == ledger


def test_status_precedence():
    ledger = Ledger()
    assert ledger.status("training-data") == "not claimed"
    ledger.add(_dp())
    assert ledger.status("training-data") == "claimed"
    ledger.add(_dp(guarantee="audit", mechanism="audit", tests="training-data", status="supported"))
    assert ledger.status("training-data") == "supported"
    ledger.add(_dp(guarantee="audit", mechanism="LiRA", tests="training-data", status="violated"))
    assert ledger.status("training-data") == "violated"
    assert all(ledger.status(g) == "not claimed" for g in GUARANTEES if g != "training-data")


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"guarantee": "privacy"}, "unknown guarantee"),
        ({"status": "probably"}, "unknown status"),
        ({"guarantee": "audit"}, "must name the guarantee"),
        ({"threat_model": " "}, "threat model"),
        ({"numbers": {"epsilon": float("inf")}}, "finite"),
        ({"parameters": {"f": object()}}, "plain JSON"),
    ],
)
def test_invalid_guarantees_refused(kw, msg):
    with pytest.raises(LedgerError, match=msg):
        _dp(**kw)


def test_bad_files(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{not json")
    with pytest.raises(LedgerError, match="cannot read"):
        Ledger.load(p)
    p.write_text(json.dumps({"veil_ledger": 99}))
    with pytest.raises(LedgerError, match="version 99"):
        Ledger.load(p)
    p.write_text(json.dumps({"entries": []}))
    with pytest.raises(LedgerError, match="not a veil ledger"):
        Ledger.load(p)
    p.write_text(json.dumps({"veil_ledger": 1, "entries": [{"guarantee": "input"}]}))
    with pytest.raises(LedgerError, match="malformed"):
        Ledger.load(p)
    p.write_text(json.dumps({"veil_ledger": 1, "entries": [3]}))
    with pytest.raises(LedgerError, match="malformed"):
        Ledger.load(p)
    with pytest.raises(LedgerError, match="does not exist"):
        Ledger.load(tmp_path / "nope.json")
