"""High-precision PHI patterns: dates, phones, IDs, ages over 89, e-mails, URLs, saints' hospitals.

The rules are unioned with the tagger's spans (they catch formats a network sees too rarely
to learn) and are the tagger's input features. Each pattern was kept only if it is precise on
the PhysioNet notes: clinical text is full of ratios ("1:1"), blood pressures ("120/80") and
doses that a loose date or phone pattern would flag.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from veil.deid.corpus import Span

MONTHS = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|jun(?:e)?|jul(?:y)?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_MONTH = r"(?:0?[1-9]|1[0-2])"
_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_YEAR = r"(?:19\d\d|20\d\d|\d\d)"
_NOT_NUM = r"(?<![\d/.:\-])"  # not the tail of a longer number, ratio or dose
# "1/2 NS", "3/4 strength", pain "5/10"
_FRACTION = r"(?:(?:1/[2-4]|[23]/[34])(?!\d)|\d/10(?!/))"
_END_NUM = r"(?![\d/:]|\.\d|\s*(?:mg|mcg|ml|cc|mm|meq|units?|%)\b)"

PATTERNS: dict[str, list[re.Pattern]] = {
    "DATE": [
        # 7/22, 07/22/2010, 7-22-10: month/day(/year); BP-like 120/80 fails the month range.
        re.compile(rf"{_NOT_NUM}(?!{_FRACTION}){_MONTH}/{_DAY}(?:/{_YEAR})?{_END_NUM}"),
        re.compile(rf"{_NOT_NUM}{_MONTH}-{_DAY}-{_YEAR}{_END_NUM}"),
        re.compile(rf"{_NOT_NUM}(?:19|20)\d\d-{_MONTH}-{_DAY}{_END_NUM}"),
        # January 5th, 2010 / Jan. 5 / 5 January 2010 / nov. 2016
        re.compile(rf"\b{MONTHS}\.?\s+{_DAY}(?:st|nd|rd|th)?\b(?:,?\s+(?:19|20)\d\d\b)?", re.I),
        re.compile(
            rf"\b{_DAY}(?:st|nd|rd|th)?\s+(?:of\s+)?{MONTHS}\b\.?(?:,?\s+(?:19|20)\d\d)?", re.I
        ),
        re.compile(rf"\b{MONTHS}\.?,?\s+(?:19|20)\d\d\b", re.I),
    ],
    "PHONE": [
        re.compile(r"\(?\b\d{3}\)?[\s.\-/]?\d{3}[\s.\-]\d{4}\b"),
        re.compile(
            r"\b(?:phone|tel|telephone|pager|page|pgr|pg|beeper|beep|call|cell|fax|ext|x)\.?"
            r"(?:\s*(?:number|num|no\.?|[:#]))*\s*#?\s*"  # "Pager: #54321", "beeper number 55037"
            r"(\d{3}[\-.]\d{4}|\d{4,5})\b",
            re.I,
        ),
    ],
    "ID": [
        re.compile(
            r"\b(?:mrn|mr#|medical record(?: number)?|acct|account|ssn|unit no|id)\s*[:#]?\s*"
            r"(\d[\d\-]{4,})\b",
            re.I,
        ),
        re.compile(r"\b\d{3}-\d{2}-\d{4}\b"),
    ],
    "AGE>89": [
        re.compile(
            r"\b(9\d|1[01]\d)\s*(?:-|\s)?\s*(?:yo|y/o|y\.o\.|yrs?|years?)(?:[\s-]*old)?\b", re.I
        ),
    ],
    "EMAIL": [re.compile(r"\b[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+\b")],
    "URL": [re.compile(r"\b(?:https?://|www\.)[^\s<>\"]+[^\s<>\".,;:)]", re.I)],
    # hospitals named for a saint: "St. Agnes", "St A." (never "ST" as in ST elevation)
    "LOCATION": [re.compile(r"\b(?:St|Saint)\.?\s+[A-Z][a-z']*\b")],
}


# Ventilator and pain-scale settings ("PSV 10/5", "600x12/5", "50% 5/5", "weaning trial 5/5",
# "increased to 10/5", "8/10 pain") look like dates.
_SETTINGS_BEFORE = re.compile(
    r"(?:\b(?:ps|psv|pap|cpap|bipap|peep|vent|ventilator|settings|flowby|ac|imv|simv|pain|trial)"
    r"|\bwean(?:ed|ing)?(?:\s+(?:down|back))?\s+(?:to|on)"
    r"|\b(?:changed|increased|decreased)(?:\s+(?:over|back))?\s+to"
    r"|x|&|%)[\s:,]*$",
    re.I,
)
_SETTINGS_AFTER = re.compile(r"^\s*(?:peep|cm|psv|ps\b|fio2|pain|%|bpm)", re.I)


def _settings_like(text: str, start: int, end: int) -> bool:
    """Whether a month/day match sits where ventilator or pain-scale settings are written."""
    if "/" not in text[start:end]:
        return False
    return bool(
        _SETTINGS_BEFORE.search(text[max(0, start - 24) : start])
        or _SETTINGS_AFTER.match(text[end : end + 8])
    )


def find(text: str) -> Iterator[Span]:
    """Every rule match in ``text`` as a span (the captured group when a rule has one)."""
    for label, patterns in PATTERNS.items():
        for pattern in patterns:
            for m in pattern.finditer(text):
                start, end = m.span(1) if m.re.groups else m.span()
                if label == "DATE" and _settings_like(text, start, end):
                    continue
                yield Span(start, end, label)


def spans(text: str) -> list[Span]:
    """Rule spans of ``text``, overlaps merged (the longer part's label wins), sorted."""
    return merge(find(text))


def merge(found) -> list[Span]:
    """Overlapping spans joined into one; the label of the longest part is kept."""
    out: list[Span] = []
    for s in sorted(found, key=lambda s: (s.start, -s.end)):
        if out and s.start < out[-1].end:
            last = out[-1]
            keep = last.label if last.end - last.start >= s.end - s.start else s.label
            out[-1] = Span(last.start, max(last.end, s.end), keep)
        else:
            out.append(s)
    return out


_INITIAL = re.compile(r"(?<![^\W\d_])([A-Z])\.?\s{0,2}$")


def with_initials(text: str, found: list[Span]) -> list[Span]:
    """Names extended back over an initial just before them ("E. Welsh", "J Smith"): the
    tagger often leaves the initial out, and an initial next to a surname identifies."""
    out = list(found)
    for s in found:
        if s.label.startswith("NAME-"):
            before = text[max(0, s.start - 4) : s.start]
            if m := _INITIAL.search(before):
                out.append(Span(s.start - len(before) + m.start(1), s.end, s.label))
    return merge(out)


# Span edges as the PhysioNet annotators draw them: names without titles and without marks
# ("A" and "FORMAN-LYONS" in "Dr. A. FORMAN-LYONS,"; hyphens and apostrophes stay), and no
# span begins or ends with a mark outside a word ("Leeuwen (", "8604."), except the period
# of an abbreviation ("St.", "Jan.") and parentheses the span both opens and closes.
_NAME_BREAK = re.compile(r"[^\w\s'\-]+")
_TITLE = re.compile(r"(?:mr|mrs|ms|dr|miss)$", re.I)
_ABBREVIATION = re.compile(rf"\b(?:st|mt|ft|{MONTHS})\.$", re.I)


def tidy(text: str, found: list[Span]) -> list[Span]:
    """``found`` with the edges the annotators use: names split at marks and titles
    dropped, marks trimmed from both ends of every span, a name's parts around a hyphen
    joined; spans left empty are dropped, and so are dates that no date is written as."""
    out = []
    for span in found:
        parts = _name_parts(text, span) if span.label.startswith("NAME-") else [span]
        trimmed = (_trimmed(text, p) for p in parts)
        out.extend(t for t in trimmed if t is not None and _may_be(text, t))
    return _joined_names(text, sorted(out, key=lambda s: s.start))


def _joined_names(text: str, found: list[Span]) -> list[Span]:
    """Name parts on both sides of a hyphen or apostrophe joined ("FORMAN-LYONS", "O'Brien")."""
    out: list[Span] = []
    for s in found:
        last = out[-1] if out else None
        if (
            last
            and last.label.startswith("NAME-")
            and s.label.startswith("NAME-")
            and text[last.end : s.start] in ("-", "'")
        ):
            out[-1] = Span(last.start, s.end, last.label)
        else:
            out.append(s)
    return out


# What a numeric date may look like (see _may_be)
_NUMERIC = re.compile(r"[\d\s/\-.]+")
_MONTH_NEAR = re.compile(rf"\b{MONTHS}\b", re.I)
_VITALS = r"(?:HR|BP|RR|SBP|DBP|MAP|CVP|PAP|TV|VT|PS|PEEP|FIO|GCS|NA|MG|CA|HCT|WBC|BUN)\s"
_YEAR_BEFORE = re.compile(rf"(?:'|\b(?:in|and)\s+|\b(?!{_VITALS})[A-Z]{{2,5}}(?:x\d)?\s+)$")


def _may_be(text: str, span: Span) -> bool:
    """False for a numeric "date" that no date is written as: a month over 12 ("18-16",
    "94/3": settings and lab values), three or four digits that are not a year ("1230",
    "0321": times), numbers apart ("3 2"), one or two digits alone ("HR 83", "# 8") unless
    a month name is next to them ("may 16") or they follow an apostrophe, "in" or an
    acronym as a year does ("'95", "CVA in 94", "CABG 81"). No gold date of the PhysioNet
    train and dev notes fails this (a test checks it)."""
    words = text[span.start : span.end]
    if span.label != "DATE" or not _NUMERIC.fullmatch(words):
        return True
    numbers = re.findall(r"\d+", words)
    if not numbers:
        return False
    if re.search(r"[/\-]", words):
        return 1 <= int(numbers[0]) <= 12
    if len(numbers) > 1:  # "3 2" (Tylenol #3, 2 tabs)
        return False
    number = numbers[0]
    if len(number) in (3, 4):
        return 1900 <= int(number) <= 2099
    if len(number) <= 2:
        near = text[max(0, span.start - 10) : span.end + 10]
        before = max(0, span.start - 12)
        year = len(number) == 2 and _YEAR_BEFORE.search(text, before, span.start)
        return bool(_MONTH_NEAR.search(near) or year)
    return True


def _name_parts(text: str, span: Span) -> list[Span]:
    cuts = [span.start]
    for m in _NAME_BREAK.finditer(text, span.start, span.end):
        cuts += [m.start(), m.end()]
    cuts.append(span.end)
    parts = [Span(a, b, span.label) for a, b in zip(cuts[::2], cuts[1::2], strict=True)]
    return [p for p in parts if not _TITLE.match(text[p.start : p.end].strip())]


def _kept(text: str, i: int) -> bool:
    """A letter or digit, or a mark inside a word ("FORMAN-LYONS", "O'brien", "7/22")."""
    if text[i].isalnum():
        return True
    return 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()


def _trimmed(text: str, span: Span) -> Span | None:
    start, end = span.start, span.end
    inside = text[start:end]
    while start < end and not _kept(text, start) and not (text[start] == "(" and ")" in inside):
        start += 1
    while end > start and not _kept(text, end - 1):
        if text[end - 1] == ")" and "(" in inside:
            break
        if text[end - 1] == "." and _ABBREVIATION.search(text, start, end):
            break
        end -= 1
    return Span(start, end, span.label) if end > start else None
