"""Consistent surrogates for PHI: the same person, place or number maps to the same stand-in.

Every choice is keyed by an HMAC-SHA-256 of (secret key, patient, label group, normalised
value), so one patient's "Nicholson" becomes the same surrogate in every note and in every
run with the same key, yet cannot be linked back without the key. Dates move by one secret
offset per patient (a multiple of 7 days when weekdays must be kept). The surrogate name and
place lists below were written for veil (common US names, invented town names).
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import hmac
import re

FIRST = [
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Daniel",
    "Lisa",
    "Matthew",
    "Nancy",
    "Anthony",
    "Betty",
    "Mark",
    "Sandra",
    "Donald",
    "Ashley",
    "Steven",
    "Kimberly",
    "Paul",
    "Emily",
    "Andrew",
    "Donna",
    "Joshua",
    "Michelle",
    "Kenneth",
    "Carol",
    "Kevin",
    "Amanda",
    "Brian",
    "Melissa",
    "George",
    "Deborah",
    "Timothy",
    "Stephanie",
    "Ronald",
    "Rebecca",
    "Jason",
    "Laura",
    "Edward",
    "Helen",
    "Jeffrey",
    "Sharon",
    "Ryan",
    "Cynthia",
    "Jacob",
    "Kathleen",
    "Gary",
    "Amy",
    "Nicholas",
    "Anna",
]
LAST = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Miller",
    "Davis",
    "Wilson",
    "Anderson",
    "Taylor",
    "Thomas",
    "Moore",
    "Martin",
    "Jackson",
    "Thompson",
    "White",
    "Harris",
    "Clark",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Hill",
    "Green",
    "Adams",
    "Baker",
    "Nelson",
    "Carter",
    "Mitchell",
    "Roberts",
    "Turner",
    "Phillips",
    "Campbell",
    "Parker",
    "Evans",
    "Edwards",
    "Collins",
    "Stewart",
    "Morris",
    "Rogers",
    "Reed",
    "Cook",
    "Morgan",
    "Bell",
    "Murphy",
    "Bailey",
    "Cooper",
    "Richardson",
    "Cox",
    "Howard",
    "Ward",
    "Peterson",
    "Gray",
    "Watson",
    "Brooks",
    "Kelly",
    "Sanders",
    "Price",
    "Bennett",
    "Wood",
]
PLACES = [
    "Alder Brook",
    "Bayfield",
    "Cedar Hollow",
    "Dunmore",
    "Elmstead",
    "Fairhaven",
    "Glenrock",
    "Harrowgate",
    "Ivybridge",
    "Juniper Falls",
    "Kingsport",
    "Larchmont",
    "Millbrook",
    "Northvale",
    "Oakridge",
    "Pinecrest",
    "Quarry Hill",
    "Riverton",
    "Stonebridge",
    "Thornbury",
    "Upton",
    "Valemont",
    "Westbury",
    "Yarrow Point",
]
HOSPITALS = [f"{p} {kind}" for p in PLACES[:12] for kind in ("General", "Medical Center")]
TITLES = frozenset(
    [
        "dr",
        "mr",
        "mrs",
        "ms",
        "miss",
        "prof",
        "md",
        "rn",
        "np",
        "pa",
        "phd",
        "sr",
        "jr",
        "ii",
        "iii",
    ]
)
MAX_SHIFT_DAYS = 365
_MONTH_NAMES = {m.lower(): i for i, m in enumerate(calendar.month_name) if m}
_MONTH_NAMES.update({m.lower(): i for i, m in enumerate(calendar.month_abbr) if m})
_MONTH_NAMES["sept"] = 9


class Surrogates:
    """Surrogate generator for one secret key."""

    def __init__(self, key: bytes, keep_weekday: bool = False):
        if len(key) < 16:
            raise ValueError("the surrogate key must be at least 16 bytes")
        self._key = key
        self.keep_weekday = keep_weekday

    def _digest(self, *parts: str) -> bytes:
        msg = "\x1f".join(parts).encode()
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    def _pick(self, options, *parts: str):
        return options[int.from_bytes(self._digest(*parts)[:8], "big") % len(options)]

    def date_shift(self, patient: str) -> int:
        """The patient's secret date offset in days (never 0; a multiple of 7 if asked)."""
        n = int.from_bytes(self._digest("date-shift", patient)[:8], "big")
        if self.keep_weekday:
            return 7 * (1 + n % (MAX_SHIFT_DAYS // 7)) * (1 if n >> 63 else -1)
        return (1 + n % MAX_SHIFT_DAYS) * (1 if n >> 63 else -1)

    def name(self, value: str, patient: str, label: str) -> str:
        words = re.findall(r"[^\W\d_]+|\S", value)
        out = []
        for i, w in enumerate(words):
            if not w.isalpha() or w.lower() in TITLES:
                out.append(w)
                continue
            norm = w.lower()
            if len(w) == 1:  # an initial stays an initial
                out.append(_case(self._pick("ABCDEFGHJKLMNPRSTW", patient, "initial", norm), w))
            else:
                pool = FIRST if i == 0 and len(words) > 1 else LAST
                out.append(_case(self._pick(pool, patient, "name", norm), w))
        return _join_like(value, words, out)

    def place(self, value: str, patient: str, label: str) -> str:
        pool = HOSPITALS if label == "HOSPITAL" else PLACES
        return _case(self._pick(pool, patient, label, " ".join(value.lower().split())), value)

    def digits(self, value: str, patient: str, label: str) -> str:
        """Same shape: digits to digits, letters to letters, other marks kept."""
        stream = self._digest(label, patient, value) * 4
        out = []
        for i, ch in enumerate(value):
            b = stream[i % len(stream)]
            if ch.isdigit():
                out.append(str(b % 10))
            elif ch.isalpha():
                out.append(_case(chr(ord("a") + b % 26), ch))
            else:
                out.append(ch)
        return "".join(out)

    def email(self, value: str, patient: str, label: str) -> str:
        return f"user{self._digest('email', patient, value.lower()).hex()[:8]}@example.org"

    def url(self, value: str, patient: str, label: str) -> str:
        return f"https://example.org/{self._digest('url', patient, value.lower()).hex()[:10]}"

    def date(self, value: str, patient: str, label: str) -> str | None:
        """The shifted date in the same format, or None when ``value`` is not a date veil
        can parse (the caller then masks it rather than leave it)."""
        return shift_date(value, self.date_shift(patient))


def _case(new: str, like: str) -> str:
    if like.isupper() and len(like) > 1 or len(like) == 1 and like.isupper():
        return new.upper()
    if like.islower():
        return new.lower()
    return new


def _join_like(value: str, old: list[str], new: list[str]) -> str:
    out, pos = [], 0
    for o, n in zip(old, new, strict=True):
        at = value.index(o, pos)
        out.append(value[pos:at] + n)
        pos = at + len(o)
    return "".join(out) + value[pos:]


_NUMERIC = re.compile(r"^(\d{1,2})([/\-])(\d{1,2})(?:\2(\d{2}|\d{4}))?$")
_ISO = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_NAMED = re.compile(r"^([A-Za-z]+)\.?(?:\s+(\d{1,2})(st|nd|rd|th)?)?(?:,?\s+(\d{4}))?$")
_YEAR = re.compile(r"^(19|20)\d\d$")
REFERENCE_YEAR = 2000  # a leap year: month/day without a year is shifted within it


def shift_date(value: str, days: int) -> str | None:
    """``value`` (7/22, 07/22/2010, 2010-07-22, July 22nd, 2010, 1998) moved by ``days``,
    written in the same format; None when it is not one of these forms or not a real date."""
    text = value.strip()
    delta = dt.timedelta(days=days)
    try:
        if m := _NUMERIC.match(text):
            month, day, year = int(m[1]), int(m[3]), m[4]
            d = dt.date(_full_year(year), month, day) + delta
            zero = m[1].startswith("0") or m[3].startswith("0")
            out = f"{_pad(d.month, zero)}{m[2]}{_pad(d.day, zero)}"
            if year:
                out += m[2] + (str(d.year) if len(year) == 4 else f"{d.year % 100:02d}")
            return out
        if m := _ISO.match(text):
            d = dt.date(int(m[1]), int(m[2]), int(m[3])) + delta
            zero = m[2].startswith("0") or m[3].startswith("0")
            return f"{d.year}-{_pad(d.month, zero)}-{_pad(d.day, zero)}"
        if _YEAR.match(text):
            return str((dt.date(int(text), 7, 1) + delta).year)
        if (m := _NAMED.match(text)) and m[1].lower() in _MONTH_NAMES and (m[2] or m[4]):
            month = _MONTH_NAMES[m[1].lower()]
            d = dt.date(int(m[4]) if m[4] else REFERENCE_YEAR, month, int(m[2] or 15)) + delta
            name = (
                calendar.month_name
                if len(m[1]) > 3 and m[1].lower() != "sept"
                else calendar.month_abbr
            )[d.month]
            out = _case(name, m[1]) + ("." if text[len(m[1]) : len(m[1]) + 1] == "." else "")
            if m[2]:
                out += f" {d.day}{_suffix(d.day) if m[3] else ''}"
            if m[4]:
                out += f", {d.year}" if "," in text else f" {d.year}"
            return out
    except ValueError:
        return None
    return None


def _full_year(year: str | None) -> int:
    """A written year as a number: none -> the reference year, 2 digits -> 1950..2049."""
    if not year:
        return REFERENCE_YEAR
    y = int(year)
    if len(year) == 4:
        return y
    return 2000 + y if y < 50 else 1900 + y


def _pad(n: int, zero: bool) -> str:
    return f"{n:02d}" if zero else str(n)


def _suffix(day: int) -> str:
    if 11 <= day % 100 <= 13:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
