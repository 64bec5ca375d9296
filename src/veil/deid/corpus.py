"""Clinical notes with PHI spans: the PhysioNet deid format, a JSONL format, tokens and splits.

PhysioNet's gold standard (Neamatullah et al. 2008) keeps notes in a ``.text`` file as
``START_OF_RECORD=patient||||note||||`` + newline + body + ``||||END_OF_RECORD`` and PHI in a
``.phrase`` file, one ``patient note start end Category text`` line per span, offsets into the
body. Categories are mapped onto one tag set (:data:`LABELS`). Every malformed record or line
is an error that names it: nothing is dropped silently.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from veil.core.errors import DataError

LABELS = (
    "NAME-PATIENT",
    "NAME-DOCTOR",
    "NAME-RELATIVE",
    "LOCATION",
    "HOSPITAL",
    "DATE",
    "AGE>89",
    "PHONE",
    "ID",
    "EMAIL",
    "URL",
    "OTHER",
)
PHYSIONET_LABELS = {
    "HCPName": "NAME-DOCTOR",
    "PTName": "NAME-PATIENT",
    "PTNameInitial": "NAME-PATIENT",
    "RelativeProxyName": "NAME-RELATIVE",
    "Date": "DATE",
    "DateYear": "DATE",
    "Location": "LOCATION",
    "Phone": "PHONE",
    "Other": "OTHER",
    "Age": "AGE>89",
    "ProxyName": "NAME-RELATIVE",
    "Hospital": "HOSPITAL",
    "HospitalName": "HOSPITAL",
    "Email": "EMAIL",
    "URL": "URL",
    "SSN": "ID",
    "MRN": "ID",
    "ID": "ID",
}
RECORD = re.compile(
    r"START_OF_RECORD=([^|\n]*)\|\|\|\|([^|\n]*)\|\|\|\|\n(.*?)\|\|\|\|END_OF_RECORD", re.S
)
# Letters, digits and single other characters: "22at" -> 22, at; "8/23" -> 8, /, 23.
TOKEN = re.compile(r"[^\W\d_]+|\d+|\S")


@dataclass(frozen=True, order=True)
class Span:
    """Characters ``[start, end)`` of a note's text, with their PHI label."""

    start: int
    end: int
    label: str


@dataclass
class Note:
    """One note: who it is about, its text and its PHI spans (sorted)."""

    patient: str
    note: str
    text: str
    spans: list[Span] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.patient}/{self.note}"


class UnknownCategory(UserWarning):
    """A gold span's category veil does not map: kept, as OTHER."""


def label_of(category: str, where: str) -> str:
    """The veil label for a PhysioNet (or i2b2-style) category or a veil label.

    An unknown category is kept as OTHER with a warning that names ``where`` (a span is never
    dropped: for token-level scores only whether a token is PHI matters); a blank one is an
    error."""
    if category in LABELS:
        return category
    if category in PHYSIONET_LABELS:
        return PHYSIONET_LABELS[category]
    if not category.strip():
        raise DataError(f"{where}: a PHI span without a category")
    import warnings

    warnings.warn(
        f"{where}: unknown PHI category {category!r}, kept as OTHER (known: "
        f"{', '.join(sorted(PHYSIONET_LABELS))} or {', '.join(LABELS)})",
        UnknownCategory,
        stacklevel=2,
    )
    return "OTHER"


def _decode(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}") from e
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise DataError(f"{path} line {line}: not UTF-8 (byte {e.object[e.start]:#04x})") from e


def parse_records(text: str, name: str = "notes") -> list[Note]:
    """Notes of a PhysioNet ``.text`` file's content, in file order; duplicates refused."""
    notes, seen, pos = [], set(), 0
    for m in RECORD.finditer(text):
        _check_gap(text[pos : m.start()], name, text.count("\n", 0, pos) + 1)
        patient, number, body = m.group(1).strip(), m.group(2).strip(), m.group(3)
        key = (patient, number)
        if "START_OF_RECORD=" in body:
            line = text.count("\n", 0, m.start()) + 1
            raise DataError(
                f"{name} line {line}: record {patient}/{number} has no ||||END_OF_RECORD "
                "before the next START_OF_RECORD"
            )
        if not patient or not number or key in seen:
            line = text.count("\n", 0, m.start()) + 1
            what = "duplicate record" if key in seen else "record without patient or note id"
            raise DataError(f"{name} line {line}: {what} {patient}/{number}")
        seen.add(key)
        notes.append(Note(patient, number, body))
        pos = m.end()
    _check_gap(text[pos:], name, text.count("\n", 0, pos) + 1)
    return notes


def _check_gap(gap: str, name: str, line: int) -> None:
    if gap.strip():
        raise DataError(
            f"{name} line {line + len(gap) - len(gap.lstrip())}: text outside any "
            "START_OF_RECORD ... ||||END_OF_RECORD record (a malformed or truncated record?)"
        )


def parse_phrases(text: str, notes: list[Note], name: str = "phrases") -> None:
    """Attach the spans of a PhysioNet ``.phrase`` file's content to ``notes``, checked."""
    by_key = {(n.patient, n.note): n for n in notes}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{name} line {number}"
        parts = line.split(" ", 5)
        if len(parts) < 5 or not parts[2].isdigit() or not parts[3].isdigit():
            raise DataError(f"{where}: expected 'patient note start end Category text'")
        patient, note_id, start, end, category = parts[0], parts[1], *map(int, parts[2:4]), parts[4]
        note = by_key.get((patient, note_id))
        if note is None:
            raise DataError(f"{where}: no record {patient}/{note_id} in the notes")
        if not 0 <= start < end <= len(note.text):
            raise DataError(f"{where}: span {start}-{end} outside note {note.key}")
        if len(parts) == 6 and note.text[start:end].strip() != parts[5].strip():
            raise DataError(
                f"{where}: text {parts[5]!r} does not match the note at {start}-{end} "
                f"({note.text[start:end]!r}); offsets are into the note body"
            )
        start, end = _trim(note.text, start, end)
        note.spans.append(Span(start, end, label_of(category, where)))
    for note in notes:
        note.spans = sorted(set(note.spans))


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while end > start and text[end - 1].isspace():
        end -= 1
    while start < end and text[start].isspace():
        start += 1
    return start, end


def read_physionet(text_path: str | Path, phrase_path: str | Path | None = None) -> list[Note]:
    """Notes (and, given the ``.phrase`` file, their gold spans) in the PhysioNet format."""
    text_path = Path(text_path)
    notes = parse_records(_decode(text_path), str(text_path))
    if not notes:
        raise DataError(f"{text_path}: no START_OF_RECORD ... END_OF_RECORD records")
    if phrase_path is not None:
        parse_phrases(_decode(Path(phrase_path)), notes, str(phrase_path))
    return notes


def read_jsonl(path: str | Path) -> list[Note]:
    """Notes from JSON lines ``{"text": ..., "spans": [{"start", "end", "label"}]}``.

    Optional ``patient`` and ``note`` fields; without them each line is its own patient.
    """
    path = Path(path)
    notes = []
    for number, line in enumerate(_decode(path).splitlines(), 1):
        if line.strip():
            notes.append(_jsonl_note(line, f"{path} line {number}", number))
    return notes


def _jsonl_note(line: str, where: str, number: int) -> Note:
    try:
        doc = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: not JSON ({e.msg})") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
        raise DataError(f"{where}: expected an object with a string 'text'")
    text, spans = doc["text"], []
    for s in doc.get("spans", []):
        try:
            start, end, label = int(s["start"]), int(s["end"]), str(s["label"])
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{where}: a span needs integer start, end and a label") from e
        if not 0 <= start < end <= len(text):
            raise DataError(f"{where}: span {start}-{end} outside the text")
        spans.append(Span(*_trim(text, start, end), label_of(label, where)))
    patient = str(doc.get("patient", number))
    return Note(patient, str(doc.get("note", number)), text, sorted(set(spans)))


def read_notes(path: str | Path, phrases: str | Path | None = None) -> list[Note]:
    """Notes from ``.jsonl`` or a PhysioNet ``.text`` file (``.phrase`` beside it if present)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    if phrases is None and path.with_suffix(".phrase").is_file():
        phrases = path.with_suffix(".phrase")
    return read_physionet(path, phrases)


def write_jsonl(path: str | Path, notes: Iterable[Note]) -> None:
    """Write notes as JSON lines (the format :func:`read_jsonl` reads)."""
    from veil.core.io import atomic_write

    lines = [
        json.dumps(
            {
                "patient": n.patient,
                "note": n.note,
                "text": n.text,
                "spans": [{"start": s.start, "end": s.end, "label": s.label} for s in n.spans],
            }
        )
        for n in notes
    ]
    atomic_write(path, "".join(line + "\n" for line in lines))


def tokens(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each token: runs of letters, runs of digits, single other marks."""
    return [m.span() for m in TOKEN.finditer(text)]


def offsets(toks: list[tuple[int, int]]) -> np.ndarray:
    """``toks`` as an ``(n, 2)`` int64 array of starts and ends."""
    flat = np.fromiter(itertools.chain.from_iterable(toks), dtype=np.int64, count=2 * len(toks))
    return flat.reshape(len(toks), 2)


def distinct(words: Iterable[str]) -> tuple[list[str], np.ndarray]:
    """Each distinct word once (first seen first), and for every word the index of its own:
    what is computed per word is then computed per spelling and copied
    (``per_word = np.stack([f(w) for w in once])[where]``)."""
    index: dict[str, int] = {}
    where = [index.setdefault(w, len(index)) for w in words]
    return list(index), np.array(where, dtype=np.int64)


def token_mask(toks: list[tuple[int, int]], spans: Iterable[Span], length: int) -> np.ndarray:
    """For each token, whether it overlaps any of ``spans``."""
    covered = np.zeros(length + 1, dtype=np.int32)
    for s in spans:
        covered[s.start] += 1
        covered[s.end] -= 1
    at = offsets(toks)
    return any_between(np.cumsum(covered)[:-1] > 0, at[:, 0], at[:, 1])


def any_between(hit: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """For each ``i``, whether ``hit`` (one flag per character) holds anywhere in
    ``[starts[i], ends[i])``."""
    seen = np.concatenate([[0], np.cumsum(hit)])
    return seen[ends] > seen[starts]


def split_patients(
    notes: list[Note], fractions: tuple[float, ...], seed: int = 0
) -> list[list[Note]]:
    """Split notes into parts by patient (never by note), seeded, sizes by ``fractions``."""
    patients = sorted({n.patient for n in notes})
    order = np.random.default_rng(seed).permutation(len(patients))
    cuts = np.round(np.cumsum(fractions) / sum(fractions) * len(patients)).astype(int)
    groups = np.split(order, cuts[:-1])
    which = {patients[i]: g for g, idx in enumerate(groups) for i in idx}
    parts: list[list[Note]] = [[] for _ in fractions]
    for n in notes:
        parts[which[n.patient]].append(n)
    return parts


def by_patient(notes: Iterable[Note]) -> Iterator[tuple[str, list[Note]]]:
    """Notes grouped by patient, in first-seen order."""
    groups: dict[str, list[Note]] = {}
    for n in notes:
        groups.setdefault(n.patient, []).append(n)
    yield from groups.items()
