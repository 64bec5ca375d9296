import importlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.deid.corpus import Note, Span
from veil.deid.deidentify import Deidentifier, DeidError, blocks

KEY = b"s" * 32


class FixedTagger:
    """Stands in for a network: PHI where the test says."""

    def __init__(self, spans):
        self._spans = spans

    def predict(self, notes):
        return [self._spans(n.text) for n in notes]


def _find(*words_labels):
    def spans(text):
        out = []
        for word, label in words_labels:
            at = text.find(word)
            while at >= 0:
                out.append(Span(at, at + len(word), label))
                at = text.find(word, at + 1)
        return sorted(out)

    return spans


TAGGER = FixedTagger(
    _find(
        ("Jones", "NAME-DOCTOR"),
        ("7/22/2010", "DATE"),
        ("93", "AGE>89"),
        ("410-555-1234", "PHONE"),
        ("GH", "LOCATION"),
        ("13", "DATE"),
    )
)
TEXT = "Dr. Jones saw the 93 yo at GH on 7/22/2010, call 410-555-1234; day 13."


def test_surrogate_mode_replaces_every_span_and_keeps_the_rest():
    r = Deidentifier(TAGGER, "surrogate", KEY).text(TEXT, "p1")
    for word in ("Jones", "7/22/2010", "410-555-1234", " GH ", " 93 ", " 13."):
        assert word not in r.text
    assert "90+ yo" in r.text and "[DATE]" in r.text  # day "13" alone cannot be shifted
    pieces = [
        TEXT[a.end : b.start] for a, b in zip(r.replacements, r.replacements[1:], strict=False)
    ]
    for rep, piece in zip(r.replacements, pieces, strict=False):
        assert r.text[rep.new_end : rep.new_end + len(piece)] == piece
    assert r.counts() == {"NAME-DOCTOR": 1, "AGE>89": 1, "LOCATION": 1, "DATE": 2, "PHONE": 1}


def test_same_patient_same_surrogates_across_notes_and_runs():
    a = Deidentifier(TAGGER, key=KEY).notes([Note("p1", "1", TEXT), Note("p1", "2", "Jones.")])
    b = Deidentifier(TAGGER, key=KEY).text("Jones.", "p1")
    name = a[0].text[a[0].replacements[0].new_start : a[0].replacements[0].new_end]
    assert a[1].text == b.text == f"{name}."
    other = Deidentifier(TAGGER, key=KEY).text(TEXT, "p2").text
    assert other != a[0].text


def test_mask_and_redact_modes():
    masked = Deidentifier(TAGGER, "mask", KEY).text("Dr. Jones on 7/22/2010.").text
    assert masked == "Dr. [NAME-DOCTOR] on [DATE]."
    redacted = Deidentifier(TAGGER, "redact", KEY).text(TEXT).text
    assert len(redacted) == len(TEXT) and "Jones" not in redacted
    assert [i for i, c in enumerate(TEXT) if c.isspace()] == [
        i for i, c in enumerate(redacted) if c.isspace()
    ]
    with pytest.raises(DeidError, match="unknown mode"):
        Deidentifier(TAGGER, "erase", KEY)


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet="abc Jones\n7/2", max_size=120), st.integers(5, 40))
def test_long_text_in_blocks_equals_one_pass(text, size):
    parts = blocks(text, size)
    assert "".join(parts) == text
    d = Deidentifier(TAGGER, "mask", KEY)
    whole = d.notes([Note("-", "-", text)])[0]
    mod = importlib.import_module(
        "veil.deid.deidentify"
    )  # the package exports a function of that name

    old = mod.BLOCK_CHARS
    mod.BLOCK_CHARS = size
    try:
        joined = d.text(text)
    finally:
        mod.BLOCK_CHARS = old
    assert joined.text == whole.text
    for rep in joined.replacements:
        assert text[rep.start : rep.end] == "Jones"
        assert joined.text[rep.new_start : rep.new_end] == "[NAME-DOCTOR]"


def test_stream_yields_the_same_text_in_blocks(monkeypatch):
    mod = importlib.import_module(
        "veil.deid.deidentify"
    )  # the package exports a function of that name

    monkeypatch.setattr(mod, "BLOCK_CHARS", 30)
    lines = [f"line {i} Dr. Jones\n" for i in range(20)]
    d = Deidentifier(FixedTagger(_find(("Jones", "NAME-DOCTOR"))), "mask", KEY)
    out = list(d.stream(lines))
    text = "".join(lines)
    assert len(out) > 3
    assert "".join(r.text for r in out) == text.replace("Jones", "[NAME-DOCTOR]")
    reps = [x for r in out for x in r.replacements]
    assert len(reps) == 20 and all(text[x.start : x.end] == "Jones" for x in reps)
    joined = "".join(r.text for r in out)
    assert all(joined[x.new_start : x.new_end] == "[NAME-DOCTOR]" for x in reps)


def test_shipped_tagger_finds_obvious_phi():
    from veil.deid.deidentify import DEFAULT_MODEL, deidentify

    if not DEFAULT_MODEL.is_file():
        pytest.fail("the shipped tagger is missing from the package")
    text = "Pt seen by Dr. Foley on 8/23. Son Ed called from 410-555-9876.\n"
    r = deidentify(text, mode="mask", key=KEY)
    assert "8/23" not in r.text and "410-555-9876" not in r.text and "Foley" not in r.text
    assert "Pt seen by Dr." in r.text
