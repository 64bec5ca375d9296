"""Scores of predicted PHI spans against gold: token-level (the headline) and entity-level.

Token level: each token (see :func:`veil.deid.corpus.tokens`) is PHI if it overlaps a gold
span and flagged if it overlaps a predicted one; binary recall, precision, F1. Entity level,
micro over notes: *strict* counts a predicted span correct when a gold span has the same
start, end and label; *overlap* when it overlaps any gold span (label ignored). Confidence
intervals: 95% percentile bootstrap over notes.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from veil.deid.corpus import LABELS, Note, Span, token_mask, tokens


def _prf(tp: float, fp: float, fn: float) -> dict:
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": float(p), "recall": float(r), "f1": float(f)}


def token_counts(notes: list[Note], predicted: list[list[Span]]) -> np.ndarray:
    """Per note: true positives, false positives, false negatives (tokens)."""
    out = np.zeros((len(notes), 3), dtype=np.int64)
    for i, (n, pred) in enumerate(zip(notes, predicted, strict=True)):
        toks = tokens(n.text)
        g, p = token_mask(toks, n.spans, len(n.text)), token_mask(toks, pred, len(n.text))
        out[i] = (g & p).sum(), (~g & p).sum(), (g & ~p).sum()
    return out


def scores(counts: np.ndarray) -> dict:
    """Precision, recall, F1 of per-note counts (:func:`token_counts`) summed."""
    return _prf(*counts.sum(0))


def token_scores(notes: list[Note], predicted: list[list[Span]]) -> dict:
    return scores(token_counts(notes, predicted))


def entity_counts(notes, predicted, strict: bool) -> np.ndarray:
    out = np.zeros((len(notes), 3), dtype=np.int64)
    for i, (n, pred) in enumerate(zip(notes, predicted, strict=True)):
        if strict:
            gold, found = set(n.spans), set(pred)
            tp = len(gold & found)
            out[i] = tp, len(found) - tp, len(gold) - tp
        else:
            hit_p = sum(any(_overlap(p, g) for g in n.spans) for p in pred)
            hit_g = sum(any(_overlap(p, g) for p in pred) for g in n.spans)
            out[i] = hit_p, len(pred) - hit_p, len(n.spans) - hit_g
    return out


def _overlap(a: Span, b: Span) -> bool:
    return a.start < b.end and b.start < a.end


def category_recall(notes: list[Note], predicted: list[list[Span]]) -> dict:
    """Token recall per gold label (labels with gold tokens only)."""
    hit, total = Counter(), Counter()
    for n, pred in zip(notes, predicted, strict=True):
        toks = tokens(n.text)
        p = token_mask(toks, pred, len(n.text))
        for label in LABELS:
            g = token_mask(toks, [s for s in n.spans if s.label == label], len(n.text))
            total[label] += int(g.sum())
            hit[label] += int((g & p).sum())
    return {k: hit[k] / total[k] for k in LABELS if total[k]}


def _resampled(counts: np.ndarray, draws: int, seed: int) -> np.ndarray:
    """Precision, recall, F1 (columns) of ``draws`` resamples of the notes (rows of ``counts``)."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(counts), size=(draws, len(counts)))
    return np.array([list(_prf(*s).values()) for s in counts[rows].sum(1)])


def bootstrap(counts: np.ndarray, draws: int = 1000, seed: int = 0) -> dict:
    """95% intervals of precision, recall, F1 resampling notes (rows of ``counts``)."""
    lo, hi = np.percentile(_resampled(counts, draws, seed), [2.5, 97.5], axis=0)
    return {k: [float(lo[j]), float(hi[j])] for j, k in enumerate(("precision", "recall", "f1"))}


def precision_bound(
    counts: np.ndarray, confidence: float, draws: int = 1000, seed: int = 0
) -> float:
    """A lower bound on token precision held with ``confidence`` (one-sided, bootstrap over
    the notes, the rows of ``counts``): the (1 - confidence) quantile of resampled precision."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, not {confidence}")
    return float(np.quantile(_resampled(counts, draws, seed)[:, 0], 1 - confidence))


def evaluate(notes: list[Note], predicted: list[list[Span]], draws: int = 1000) -> dict:
    """Every score the ``veil deid eval`` command reports, as one flat-ish dict."""
    tok = token_counts(notes, predicted)
    t = _prf(*tok.sum(0))
    strict = _prf(*entity_counts(notes, predicted, True).sum(0))
    loose = _prf(*entity_counts(notes, predicted, False).sum(0))
    return {
        "notes": len(notes),
        "tokens": int(sum(len(tokens(n.text)) for n in notes)),
        "gold_spans": int(sum(len(n.spans) for n in notes)),
        "token_recall": t["recall"],
        "token_precision": t["precision"],
        "token_f1": t["f1"],
        "token_ci95": bootstrap(tok, draws) if draws and len(notes) > 1 else None,
        "entity_strict_precision": strict["precision"],
        "entity_strict_recall": strict["recall"],
        "entity_strict_f1": strict["f1"],
        "entity_overlap_precision": loose["precision"],
        "entity_overlap_recall": loose["recall"],
        "entity_overlap_f1": loose["f1"],
        "category_recall": category_recall(notes, predicted),
    }
