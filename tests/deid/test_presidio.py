"""Presidio interop: the tagger as a recognizer; Presidio offline as a baseline."""

import pytest

pytest.importorskip("presidio_analyzer")

from veil.core.errors import VeilError  # noqa: E402
from veil.deid.presidio import analyzer_spans, presidio_analyzer, recognizer  # noqa: E402

TEXT = "Seen by Dr. Foley on 8/23, call 410-555-9876 or mail jo@example.org."


@pytest.fixture(scope="module")
def analyzer():
    return presidio_analyzer()


def test_patterns_only_analyzer_finds_formats_offline(analyzer):
    found = {(TEXT[s.start : s.end], s.label) for s in analyzer_spans(analyzer, TEXT)}
    assert ("410-555-9876", "PHONE") in found and ("jo@example.org", "EMAIL") in found
    assert not any("Foley" in text for text, _ in found)  # no NER without a spaCy model


def test_veil_recognizer_plugs_into_presidio(analyzer):
    analyzer.registry.add_recognizer(recognizer())
    results = analyzer.analyze(text=TEXT, language="en", entities=["PERSON", "DATE_TIME"])
    found = {(TEXT[r.start : r.end], r.entity_type) for r in results}
    assert ("Foley", "PERSON") in found and ("8/23", "DATE_TIME") in found


def test_missing_spacy_model_is_an_error_not_a_download():
    with pytest.raises(VeilError, match="not installed"):
        presidio_analyzer("en_core_web_nonexistent")
