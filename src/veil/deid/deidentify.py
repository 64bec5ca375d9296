"""De-identify text: detect PHI with the tagger (and rules), then replace, mask or redact it.

Modes: ``surrogate`` (default) writes realistic stand-ins (see :mod:`veil.deid.surrogates`):
names and places from a keyed choice, dates shifted by the patient's secret offset, ages over
89 as "90+", phone numbers and IDs digit for digit; ``mask`` writes ``[LABEL]``; ``redact``
writes ``X`` for every character (so the layout and every offset stay as they were). A date
the surrogate generator cannot parse is masked rather than left in place.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from veil.core.errors import VeilError
from veil.deid.corpus import Note, Span
from veil.deid.surrogates import Surrogates

MODES = ("surrogate", "mask", "redact")
DEFAULT_MODEL = Path(__file__).with_name("default-tagger.veil")
BLOCK_CHARS = 200_000  # text is tagged in blocks of about this size, cut at line breaks


class DeidError(VeilError):
    """Bad input or settings for de-identification."""


@dataclass
class Replacement:
    """One replaced span: where it was, where its stand-in is, its label."""

    start: int
    end: int
    new_start: int
    new_end: int
    label: str


@dataclass
class Result:
    text: str
    replacements: list[Replacement] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.replacements:
            out[r.label] = out.get(r.label, 0) + 1
        return out


@lru_cache(maxsize=4)
def _load(path: str):
    from veil.deid.tagger import Tagger

    return Tagger.load(path)


def load_tagger(path: str | Path | None = None):
    """The tagger in ``path``, else the one shipped with veil (cached)."""
    path = Path(path) if path else DEFAULT_MODEL
    return _load(str(path.resolve()))


class Deidentifier:
    """Detect and replace PHI with one tagger, one mode and one secret key."""

    def __init__(
        self,
        tagger=None,
        mode: str = "surrogate",
        key: bytes | None = None,
        keep_weekday: bool = False,
    ):
        if mode not in MODES:
            raise DeidError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
        self.tagger = tagger if tagger is not None else load_tagger()
        self.mode = mode
        self.surrogates = Surrogates(key or secrets.token_bytes(32), keep_weekday)

    def spans(self, notes: list[Note]) -> list[list[Span]]:
        return self.tagger.predict(notes)

    def apply(self, text: str, spans: list[Span], patient: str = "-") -> Result:
        """Rewrite ``text`` replacing each span; offsets of every change are returned."""
        out, reps, pos, shift = [], [], 0, 0
        for s in sorted(spans):
            if s.start < pos:
                continue
            new = self.replacement(text[s.start : s.end], s.label, patient)
            out.append(text[pos : s.start])
            start = s.start + shift
            out.append(new)
            reps.append(Replacement(s.start, s.end, start, start + len(new), s.label))
            shift += len(new) - (s.end - s.start)
            pos = s.end
        out.append(text[pos:])
        return Result("".join(out), reps)

    def replacement(self, value: str, label: str, patient: str) -> str:
        if self.mode == "mask":
            return f"[{label}]"
        if self.mode == "redact":
            return "".join(c if c.isspace() else "X" for c in value)
        g = self.surrogates
        if label.startswith("NAME-"):
            return g.name(value, patient, label)
        if label in ("LOCATION", "HOSPITAL"):
            return g.place(value, patient, label)
        if label == "DATE":
            return g.date(value, patient, label) or "[DATE]"
        if label == "AGE>89":
            return "90+"
        if label in ("PHONE", "ID"):
            return g.digits(value, patient, label)
        if label == "EMAIL":
            return g.email(value, patient, label)
        if label == "URL":
            return g.url(value, patient, label)
        return f"[{label}]"

    def notes(self, notes: list[Note]) -> list[Result]:
        """De-identify whole notes (one patient each), tagged together."""
        found = self.spans(notes)
        return [self.apply(n.text, f, n.patient) for n, f in zip(notes, found, strict=True)]

    def text(self, text: str, patient: str = "-") -> Result:
        """De-identify one text of any length, tagged block by block."""
        results = [self.notes([Note(patient, "-", b)])[0] for b in blocks(text)]
        return _join(results)

    def stream(self, lines: Iterable[str], patient: str = "-") -> Iterator[Result]:
        """De-identify a stream of lines block by block (bounded memory); each block's
        :class:`Result` has offsets into the whole stream."""
        buf, size, old, new = [], 0, 0, 0
        for line in lines:
            buf.append(line)
            size += len(line)
            if size >= BLOCK_CHARS and line.endswith("\n"):
                result = _moved(self.notes([Note(patient, "-", "".join(buf))])[0], old, new)
                old, new = old + size, new + len(result.text)
                yield result
                buf, size = [], 0
        if buf:
            yield _moved(self.notes([Note(patient, "-", "".join(buf))])[0], old, new)


def blocks(text: str, size: int = BLOCK_CHARS) -> list[str]:
    """``text`` cut at line breaks into pieces of about ``size`` characters (joined: ``text``)."""
    out, start = [], 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            cut = text.rfind("\n", start, end)
            end = cut + 1 if cut > start else end
        out.append(text[start:end])
        start = end
    return out or [""]


def _join(results: list[Result]) -> Result:
    """One result of consecutive pieces' results (offsets moved into the whole)."""
    text, reps, old, new = [], [], 0, 0
    for r in results:
        reps.extend(_moved(r, old, new).replacements)
        old += len(r.text) - sum(
            x.new_end - x.new_start - (x.end - x.start) for x in r.replacements
        )
        new += len(r.text)
        text.append(r.text)
    return Result("".join(text), reps)


def _moved(result: Result, old: int, new: int) -> Result:
    """``result`` of a piece that starts at ``old`` in the input and ``new`` in the output."""
    reps = [
        Replacement(x.start + old, x.end + old, x.new_start + new, x.new_end + new, x.label)
        for x in result.replacements
    ]
    return Result(result.text, reps)


def deidentify(
    text: str,
    *,
    mode: str = "surrogate",
    key: bytes | None = None,
    patient: str = "-",
    model: str | Path | None = None,
    keep_weekday: bool = False,
) -> Result:
    """De-identify ``text`` with the shipped tagger (or ``model``); see :class:`Deidentifier`."""
    tagger = load_tagger(model)
    return Deidentifier(tagger, mode, key, keep_weekday).text(text, patient)
