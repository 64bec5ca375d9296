import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from veil.deid.surrogates import MAX_SHIFT_DAYS, Surrogates, shift_date

KEY = b"k" * 32


@given(st.dates(dt.date(1950, 1, 1), dt.date(2049, 12, 31)), st.integers(-365, 365))
def test_numeric_dates_shift_exactly_and_back(day, shift):
    text = f"{day.month}/{day.day}/{day.year}"
    moved = shift_date(text, shift)
    m, d, y = map(int, moved.split("/"))
    assert dt.date(y, m, d) - day == dt.timedelta(days=shift)
    assert shift_date(moved, -shift) == text


@pytest.mark.parametrize(
    "text,shift,want",
    [
        ("7/22", 10, "8/1"),
        ("07/22/10", 10, "08/01/10"),
        ("2010-07-22", -22, "2010-06-30"),
        ("July 22nd, 2010", 10, "August 1st, 2010"),
        ("nov. 2016", 30, "dec. 2016"),
        ("1998", 200, "1999"),
        ("2/30", 3, None),
        ("13", 3, None),
        ("may", 3, None),
    ],
)
def test_date_formats_are_kept(text, shift, want):
    assert shift_date(text, shift) == want


def test_surrogates_are_consistent_per_patient_and_key():
    a, b = Surrogates(KEY), Surrogates(b"j" * 32)
    assert a.name("Nicholson", "p1", "NAME-PATIENT") == a.name("Nicholson", "p1", "NAME-PATIENT")
    assert a.name("NICHOLSON", "p1", "x") == a.name("nicholson", "p1", "x").upper()
    assert a.date_shift("p1") == Surrogates(KEY).date_shift("p1")
    names = {b.name("Nicholson", str(p), "x") for p in range(30)}
    assert len(names) > 5  # different patients, different stand-ins


def test_titles_and_initials_keep_their_shape():
    out = Surrogates(KEY).name("Dr. E. WELSH", "p", "NAME-DOCTOR")
    assert out.startswith("Dr. ") and out[5] == "." and out[4].isupper() and out[6:].isupper()


@given(st.text(alphabet="0123456789-() x", min_size=1, max_size=20))
def test_digits_keep_the_format(value):
    out = Surrogates(KEY).digits(value, "p", "PHONE")
    assert len(out) == len(value)
    for a, b in zip(value, out, strict=True):
        assert a.isdigit() == b.isdigit() and (a.isdigit() or a.isalpha() or a == b)


def test_date_shift_is_bounded_nonzero_and_weekday_preserving():
    plain, weekly = Surrogates(KEY), Surrogates(KEY, keep_weekday=True)
    for p in map(str, range(200)):
        s, w = plain.date_shift(p), weekly.date_shift(p)
        assert 0 < abs(s) <= MAX_SHIFT_DAYS and 0 < abs(w) <= MAX_SHIFT_DAYS and w % 7 == 0


def test_short_keys_are_refused():
    with pytest.raises(ValueError, match="16 bytes"):
        Surrogates(b"short")
