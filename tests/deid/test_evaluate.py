import pytest

from veil.deid.corpus import Note, Span
from veil.deid.evaluate import bootstrap, evaluate, precision_bound, token_counts

NOTE = Note(
    "1",
    "1",
    "Dr. Jones saw Ann Lee on 7/22 .",
    [Span(4, 9, "NAME-DOCTOR"), Span(14, 21, "NAME-PATIENT"), Span(25, 29, "DATE")],
)


def test_token_and_entity_scores_by_hand():
    # found: Jones exactly (right), "Ann" only (a partial hit), "saw" (wrong), no date
    pred = [[Span(4, 9, "NAME-DOCTOR"), Span(10, 13, "NAME-DOCTOR"), Span(14, 17, "NAME-PATIENT")]]
    assert token_counts([NOTE], pred).tolist() == [[2, 1, 4]]  # gold tokens: Jones Ann Lee 7 / 22
    r = evaluate([NOTE], pred, draws=0)
    assert r["token_recall"] == pytest.approx(2 / 6)
    assert r["token_precision"] == pytest.approx(2 / 3)
    assert r["entity_strict_precision"] == pytest.approx(1 / 3)
    assert r["entity_strict_recall"] == pytest.approx(1 / 3)
    assert r["entity_overlap_precision"] == pytest.approx(2 / 3)
    assert r["entity_overlap_recall"] == pytest.approx(2 / 3)
    assert r["category_recall"] == {"NAME-DOCTOR": 1.0, "NAME-PATIENT": 0.5, "DATE": 0.0}


def test_perfect_prediction_scores_one_with_a_degenerate_interval():
    notes = [NOTE, NOTE]
    r = evaluate(notes, [NOTE.spans, NOTE.spans], draws=200)
    assert r["token_f1"] == r["entity_strict_f1"] == 1.0
    assert r["token_ci95"]["recall"] == [1.0, 1.0]


def test_bootstrap_interval_contains_the_point_estimate():
    import numpy as np

    counts = np.array([[5, 1, 0], [2, 0, 3], [7, 2, 1], [0, 0, 1]])
    ci = bootstrap(counts, draws=500)
    tp, fp, fn = counts.sum(0)
    assert ci["recall"][0] <= tp / (tp + fn) <= ci["recall"][1]
    assert ci["precision"][0] < ci["precision"][1]


def test_precision_bound_falls_with_confidence_and_is_exact_when_notes_agree():
    import numpy as np

    counts = np.array([[9, 1, 0], [5, 5, 1], [8, 0, 2], [3, 3, 0], [10, 1, 1]])
    tp, fp, _ = counts.sum(0)
    bounds = [precision_bound(counts, c) for c in (0.5, 0.8, 0.95)]
    assert bounds[0] >= bounds[1] >= bounds[2] and bounds[1] < tp / (tp + fp)
    assert precision_bound(np.array([[3, 1, 0]] * 6), 0.95) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="confidence"):
        precision_bound(counts, 1.0)
