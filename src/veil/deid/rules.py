"""High-precision PHI patterns: dates, phones, IDs, ages over 89, e-mails, URLs, saints'
hospitals, and names after a title ("Dr. Foley", "mr nicholson") or on a signature line.

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
_NOT_NUM = r"(?<![\d/.\-])(?<!\d:)"  # not the tail of a longer number, ratio, time or dose
# "1/2 NS", "3/4 strength", pain "5/10"
_FRACTION = r"(?:(?:1/[2-4]|[23]/[34])(?!\d)|\d/10(?!/))"
_END_NUM = r"(?![\d/:]|\.\d|\s*(?:mg|mcg|ml|cc|mm|meq|units?|%)\b)"
# A lookahead for the first character lets the regex engine skip to candidates (5x faster
# scanning); it never changes what a pattern matches.
_DIGIT = r"(?=\d)"
_MONTH_LETTER = r"(?=[adfjmnos])"  # under re.I
# Words no name is: they end a name ("Griffin and Swackhamer", "griffin made aware", see
# tidy) and are never taken for one after a title
_NON_NAME_WORDS = r"and|to|in|at|on|the|was|is|aware|notified|called|with|made"
# A name after a title, past an initial ("Dr. A. Forman"), never a common word ("dr aware")
_NOT_NAME = (
    rf"(?!(?i:{_NON_NAME_WORDS}|of|for|paged|here|about|office|team|note|orders?|said|who"
    r"|that|this)\b)"
)
_NAME = rf"(?:[A-Z]\.[ \t]*)?{_NOT_NAME}([A-Za-z][A-Za-z'\-]*[A-Za-z])"
_NAME_UPPER = rf"(?:[A-Z]\.[ \t]*)?{_NOT_NAME}([A-Z][A-Za-z'\-]*[A-Za-z])"
_KIN = (
    r"son|daughter|wife|husband|brother|sister|mother|father|niece|nephew|granddaughter"
    r"|grandson|cousin|aunt|uncle|friend|fiance|partner"
)
_CREDENTIAL = r"(?:RN|R\.N\.|rn|MD|M\.D\.|CRT|crt|RRT|rrt|NP|LICSW|licsw|PA-C|SN)\.?"

# An initial and a surname where a clinician is named ("as per B. KARGAS", "E. WELSH AWARE",
# "Reported to D. Phyl."): after "per", "to", "by"... or a mark or at a line's start
# (:data:`_CLINICIAN_BEFORE`, checked in :func:`find`: a regex that began with it would be
# tried at every character) and before "aware", a credential or a mark. The initial may not
# follow a mark, so "70'S. REMAINS", "N/V. NPO" and "V.O. DR." are no names; 8 of 8 matches
# in the train and dev notes are gold names.
_INITIAL_NAME = re.compile(
    rf"(?=[A-Z]\.)(?<![\w./'])[A-Z]\.[ \t]?{_NOT_NAME}[A-Z][A-Za-z'\-]*[A-Za-z]"
    r"(?=[ \t]*(?:[,.:;\-]|(?i:aware|notified|paged|called|here|in[ \t]+to|md|pa|np|rn|rrt)\b))"
)
_CLINICIAN_BEFORE = re.compile(
    r"(?:\b(?i:per|to|by|with|from|called|paged|notified)[ \t]+|[.;:\-][ \t]*|^[ \t]*)$", re.M
)

PATTERNS: dict[str, list[re.Pattern]] = {
    "DATE": [
        # 7/22, 07/22/2010, 6/30-7/2: month/day(/year), or a range of two; BP-like 120/80
        # fails the month range.
        re.compile(
            rf"{_DIGIT}{_NOT_NUM}(?!{_FRACTION}){_MONTH}/{_DAY}(?:/{_YEAR})?"
            rf"(?:-{_MONTH}/{_DAY}(?:/{_YEAR})?)?{_END_NUM}"
        ),
        re.compile(rf"{_DIGIT}{_NOT_NUM}{_MONTH}-{_DAY}-{_YEAR}{_END_NUM}"),
        re.compile(rf"{_DIGIT}{_NOT_NUM}(?:19|20)\d\d-{_MONTH}-{_DAY}{_END_NUM}"),
        # January 5th, 2010 / Jan. 5 / 5 January 2010 / nov. 2016
        re.compile(
            rf"{_MONTH_LETTER}\b{MONTHS}\.?\s+{_DAY}(?:st|nd|rd|th)?\b(?:,?\s+(?:19|20)\d\d\b)?",
            re.I,
        ),
        re.compile(
            rf"{_DIGIT}\b{_DAY}(?:st|nd|rd|th)?\s+(?:of\s+)?{MONTHS}\b\.?(?:,?\s+(?:19|20)\d\d)?",
            re.I,
        ),
        re.compile(rf"{_MONTH_LETTER}\b{MONTHS}\.?,?\s+(?:19|20)\d\d\b", re.I),
        # a year written short after an apostrophe: "s/p cabg '95" (8 in gold PHI on the
        # train+dev notes, none outside)
        re.compile(r"(?<![\w'])'(\d\d)\b(?!')"),
        # a day of the month: "on the 11th." (not "the 2nd dose": a word may not follow)
        re.compile(rf"\b(?i:the)\s+({_DAY}(?:st|nd|rd|th))\b(?=\s*(?:[.,;:)\"']|$))"),
    ],
    "PHONE": [
        # 410-555-1234, (410) 555-1234, 410.555.1234, 201/324/1423
        re.compile(r"(?=[(\d])\(?\b\d{3}\)?[\s.\-/]?\d{3}[\s.\-/]\d{4}\b"),
        re.compile(
            r"(?=[ptbcfexPTBCFEX])\b(?:phone|tel|telephone|pager|page|pgr|pg|beeper|beep|call"
            r"|cell|fax|ext|x)\.?"
            r"(?:\s*(?:number|num|no\.?|[:#]))*\s*#?\s*"  # "Pager: #54321", "beeper number 55037"
            r"(\d{3}[\-.]\d{4}|\d{4,5})\b",
            re.I,
        ),
    ],
    "ID": [
        re.compile(
            r"(?=[maisuMAISU])\b(?:mrn|mr#|medical record(?: number)?|acct|account|ssn|unit no|id)"
            r"\s*[:#]?\s*"
            r"(\d[\d\-]{4,})\b",
            re.I,
        ),
        re.compile(rf"{_DIGIT}\b\d{{3}}-\d{{2}}-\d{{4}}\b"),
    ],
    "AGE>89": [
        re.compile(
            rf"{_DIGIT}\b(9\d|1[01]\d)\s*(?:-|\s)?\s*(?:yo|y/o|y\.o\.|yrs?|years?)(?:[\s-]*old)?\b",
            re.I,
        ),
    ],
    "EMAIL": [re.compile(r"\b[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+\b")],
    "URL": [re.compile(r"(?=[hwHW])\b(?:https?://|www\.)[^\s<>\"]+[^\s<>\".,;:)]", re.I)],
    # hospitals named for a saint: "St. Agnes", "St A." (never "ST" as in ST elevation)
    "LOCATION": [re.compile(r"\b(?:St|Saint)\.?\s+[A-Z][a-z']*\b")],
    # "Dr. Foley", "dr green"; a signature line "Ilene Macdonald RN", "q. lander rrt"
    "NAME-DOCTOR": [
        re.compile(rf"\b[Dd][Rr]\.?[ \t]+{_NAME}"),
        re.compile(
            rf"(?m)^[ \t]*(?:[A-Za-z]\.?[ \t]+)?([A-Za-z][A-Za-z\-]+(?:[ \t]+[A-Za-z][A-Za-z\-]+)?)"
            rf",?[ \t]+{_CREDENTIAL}[ \t]*$"
        ),
        _INITIAL_NAME,
        # ... and a signature that does not start its line ("... PATIENT Q. LANDER RRT"):
        # 12 of 12 matches in the train and dev notes are gold names
        re.compile(
            rf"(?m)(?=[A-Za-z]\.)(?<![\w./'])[A-Za-z]\.[ \t]*([A-Za-z][A-Za-z\-]+),?[ \t]+"
            rf"{_CREDENTIAL}[ \t]*$"
        ),
    ],
    # a capitalised name after a kin word ("Son, Ed,", "daughter Thelma in", "wife (Irene
    # Sherwood"): 21 of 21 such matches are gold relatives in the train and dev notes
    "NAME-RELATIVE": [
        re.compile(
            rf"(?=[sdwhbmfncgaupSDWHBMFNCGAUP])\b(?i:{_KIN})s?[ \t]*[,:(\-]?[ \t]*"
            rf"{_NOT_NAME}(?!(?i:will|visit\w*)\b)"
            rf"([A-Z][a-z]+(?:[ \t]+{_NOT_NAME}[A-Z][a-z]+)?)\b"
        ),
    ],
    # "mr nicholson", "Mrs. Haas", "Ms Waite" (not "MS" as in mental status, nor "+MR." as in
    # mitral regurgitation)
    "NAME-PATIENT": [
        re.compile(rf"(?<![\w+\-])(?:[Mm]rs?|MRS?)\.?[ \t]+{_NAME}"),
        re.compile(rf"\b(?:Ms|Miss)\.?[ \t]+{_NAME_UPPER}"),
    ],
}


# Ventilator, pain-scale and murmur-grade settings ("PSV 10/5", "600x12/5", "50% 5/5", "weaning
# trial 5/5", "mask ventilation 5/5", "increased to 10/5", "8/10 pain", "#4/10", "+3/6 SEM",
# "5/5 ABG") look like dates.
_SETTINGS_BEFORE = re.compile(
    r"(?:\b(?:ps|psv|pap|cpap|bipap|peep|vent|ventilation|ventilator|settings|flowby|ac|imv|simv"
    r"|pain|trial|grade)"
    r"|\bwean(?:ed|ing)?(?:\s+(?:down|back))?\s+(?:to|on)"
    r"|\b(?:changed|increased|decreased)(?:\s+(?:over|back))?\s+to"
    r"|\bpain\s*\("  # "chest pain (7/10)"
    r"|(?<![a-z])x|[&%#+])[\s:,]*$",  # "600x12/5", not the x of "lasix 4/14" or "HX:8/30"
    re.I,
)
_SETTINGS_AFTER = re.compile(
    r"^\s*(?:peep|cm|psv|ps\b|fio2|pain|%|bpm|cp\b|angina|sem\b|murmur|abg)", re.I
)


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
        if label == "EMAIL" and "@" not in text:  # its regex would try every word
            continue
        for pattern in patterns:
            for m in pattern.finditer(text):
                start, end = m.span(1) if m.re.groups else m.span()
                if label == "DATE" and _settings_like(text, start, end):
                    continue
                if pattern is _INITIAL_NAME and not _CLINICIAN_BEFORE.search(
                    text, max(0, start - 16), start
                ):
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


# an initial: a capital, or a small letter with its period ("q. lander rrt")
_INITIAL = re.compile(r"(?<![^\W\d_])([A-Z]\.?|[a-z]\.)\s{0,2}$")


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
# of an abbreviation ("St.", "Jan.") and parentheses the span both opens and closes. Names
# also break at words no name is ("Griffin and Swackhamer", "griffin made aware"), and a
# place leaves out a trailing "hospital" ("Sinai" of "Sinai hospital").
_NAME_BREAK = re.compile(
    r"[^\w\s'\-]+"
    rf"|\s*\b(?i:{_NON_NAME_WORDS}|or|per)\b\s*"
)
_GENERIC_PLACE = re.compile(r"\s+(?:hospital|hosp)\.?\s*$", re.I)
# A US state alone is not PHI (HIPAA's Safe Harbor keeps states; the PhysioNet annotators
# mark none outside an institution's name in the train and dev notes, where 7 stand alone)
_STATES = (
    "alabama|alaska|arizona|arkansas|california|calif|colorado|connecticut|delaware|florida"
    "|georgia|hawaii|idaho|illinois|indiana|iowa|kansas|kentucky|louisiana|maine|maryland"
    "|massachusetts|michigan|minnesota|mississippi|missouri|montana|nebraska|nevada"
    "|new hampshire|new jersey|new mexico|new york|north carolina|north dakota|ohio|oklahoma"
    "|oregon|pennsylvania|rhode island|south carolina|south dakota|tennessee|texas|utah"
    "|vermont|virginia|washington|west virginia|wisconsin|wyoming"
)
_STATE = re.compile(rf"(?i:{_STATES})")
# ... but "University of Maryland", "Maryland Rehab" are institutions, and "Virginia" may be
# a name: a state is dropped where it is a place ("lives in California", "son from TEXAS")
_PLACE_BEFORE = re.compile(r"\b(?i:in|from|to)\s+$")
_INSTITUTION_BEFORE = re.compile(r"\b(?i:university\s+of)\s+$")
_INSTITUTION_AFTER = re.compile(
    r"\s+(?i:hospital|hosp|medical|rehab|rehabilitation|center|clinic|general|university)\b"
)
_HOUR_AT_END = re.compile(r"(?:\s+|(?<![\w/\-.:]))(?:1[0-2]|0?[1-9])$")
_AM_PM = re.compile(r"(?i:[ap]m?)\b")
# Clock times, never PHI: "8/25 @ 1230" is a date and a time, "1900-0700" a shift, "12n" noon
# (no gold date of the PhysioNet train and dev notes ends with a time, no gold phone is one)
_CLOCK = r"(?:[01]\d|2[0-3])[0-5]\d"
_CLOCK_AT_END = re.compile(rf"(?:\s*@\s*|\s+)({_CLOCK})$")
_SHIFT = re.compile(rf"{_CLOCK}(?:\s*-+>?\s*{_CLOCK})?")
_TIME = re.compile(r"\d{1,4}\s*(?:[ap]\.?m?\.?|n|noon)", re.I)
# a title, a kin word or a role is no part of a name ("LEGAL GUARDIAN: Niece, Patricia WAITE")
_NO_NAME_PART = re.compile(rf"(?:mr|mrs|ms|dr|miss|(?:{_KIN}|guardian|proxy|hcp)s?)$", re.I)
# Devices, tears and syndromes named for two people are not PHI ("Passy Muir valve", "passe
# muir", "mallory weiss tear", "Swan-Ganz"); a span inside such a pair is dropped. None of
# these pairs is in gold PHI in the train and dev notes; the tagger marked 6 tokens of them
# on the dev patients (a train-only tagger at bias 3.75, 35 false positives in all)
_EPONYM = re.compile(
    r"\b(?:pass\w{0,3}[\s\-]*muir|mallory[\s\-]*weiss|swan[\s\-]*ganz|bair[\s\-]*hugger"
    r"|cheyne[\s\-]*stokes|guillain[\s\-]*barr[ée]|stevens[\s\-]*johnson|jackson[\s\-]*pratt"
    r"|sengstaken[\s\-]*blakemore|wolff[\s\-]*parkinson)\b",
    re.I,
)
_ABBREVIATION = re.compile(rf"\b(?:st|mt|ft|{MONTHS})\.$", re.I)


def tidy(text: str, found: list[Span]) -> list[Span]:
    """``found`` with the edges the annotators use: names split at marks and at words no
    name is, titles dropped, a place's trailing "hospital" dropped, marks trimmed from both
    ends of every span, a name's parts around a hyphen joined; spans left empty are
    dropped, and so are dates that no date is written as and US states named as places."""
    out = []
    for span in found:
        if span.label == "LOCATION" and (m := _GENERIC_PLACE.search(text, span.start, span.end)):
            span = Span(span.start, m.start(), span.label)
        hour = span.label == "DATE" and _HOUR_AT_END.search(text, span.start, span.end)
        if hour and _AM_PM.match(text, span.end):  # "10-18-20 7A TO 1200": a shift's hour
            span = Span(span.start, hour.start(), span.label)
        clock = span.label == "DATE" and _CLOCK_AT_END.search(text, span.start, span.end)
        if clock and not 1900 <= int(clock[1]) < 2100:  # "2015" may be the year
            span = Span(span.start, clock.start(), span.label)
        parts = _name_parts(text, span) if span.label.startswith("NAME-") else [span]
        trimmed = (_trimmed(text, p) for p in parts)
        out.extend(
            t
            for t in trimmed
            if t is not None and _may_be(text, t) and not _state(text, t) and not _eponym(text, t)
        )
    return _joined_names(text, sorted(out, key=lambda s: s.start))


def _eponym(text: str, span: Span) -> bool:
    """A span inside a two-person eponym ("Muir" of "Passy-Muir valve")."""
    start = max(0, span.start - 16)
    return any(
        m.start() <= span.start and span.end <= m.end()
        for m in _EPONYM.finditer(text, start, span.end + 16)
    )


def _state(text: str, span: Span) -> bool:
    """A span that is a US state's name standing as a place, not inside an institution's."""
    if not _STATE.fullmatch(text, span.start, span.end):
        return False
    before = text[max(0, span.start - 20) : span.start]
    if _INSTITUTION_AFTER.match(text, span.end) or _INSTITUTION_BEFORE.search(before):
        return False
    return span.label == "LOCATION" or bool(_PLACE_BEFORE.search(before))


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
# words an upper-case note writes that are not the acronyms a year follows ("CABG 81"):
# "HCT FALLING TO 22", "SUGAR WAS 95"
_WORDS = r"(?:TO|WAS|IS|AT|OF|ON|BY|FOR|AS|OR|UP|NOW|FROM|OVER|WITH|THEN|ARE|WERE|BE)\s"
_YEAR_BEFORE = re.compile(
    rf"(?:'|\b(?:in|and)\s+|\b(?!{_VITALS}|{_WORDS})[A-Z]{{2,5}}(?:x\d)?\s+)$"
)


def _may_be(text: str, span: Span) -> bool:
    """False for a numeric "date" that no date is written as: a month over 12 ("18-16",
    "94/3": settings and lab values), three or four digits that are not a year ("1230",
    "0321": times), settings where a rule's date would be refused ("PSV 10/5", "8/10 pain"),
    numbers apart ("3 2"), one or two digits alone ("HR 83", "# 8") unless
    a month name is next to them ("may 16") or they follow an apostrophe, "in" or an
    acronym as a year does ("'95", "CVA in 94", "CABG 81"); also a time ("12n", "7p") taken
    for a date and a shift ("1900-0700") taken for a phone. No gold date or phone of the
    PhysioNet train and dev notes fails this (a test checks it)."""
    words = text[span.start : span.end]
    if span.label == "PHONE":
        return not _SHIFT.fullmatch(words)
    if span.label != "DATE":
        return True
    if _TIME.fullmatch(words):
        return False
    if not _NUMERIC.fullmatch(words):
        return True
    numbers = re.findall(r"\d+", words)
    if not numbers:
        return False
    if re.search(r"[/\-]", words):
        return 1 <= int(numbers[0]) <= 12 and not _settings_like(text, span.start, span.end)
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
    return [p for p in parts if not _NO_NAME_PART.match(text[p.start : p.end].strip())]


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
