import pytest

from veil.deid import rules
from veil.deid.corpus import Span


@pytest.mark.parametrize(
    "text,found",
    [
        ("seen on 7/22 by", [("7/22", "DATE")]),
        ("admitted 07/22/2010.", [("07/22/2010", "DATE")]),
        ("since January 5th, 2010 at", [("January 5th, 2010", "DATE")]),
        ("back in nov. 2016.", [("nov. 2016", "DATE")]),
        ("call 410-555-1234 today", [("410-555-1234", "PHONE")]),
        ("pager #54321 if", [("54321", "PHONE")]),
        ("Pager: #54321  Time", [("54321", "PHONE")]),
        ("reached at beeper number 55037 for", [("55037", "PHONE")]),
        ("AS APPROP.  PG 33445", [("33445", "PHONE")]),
        ("MRN: 1234567", [("1234567", "ID")]),
        ("a 92 yo woman", [("92", "AGE>89")]),
        ("mail jo.doe@example.com now", [("jo.doe@example.com", "EMAIL")]),
        ("see https://example.org/x.", [("https://example.org/x", "URL")]),
    ],
)
def test_rules_find_phi_formats(text, found):
    assert [(text[s.start : s.end], s.label) for s in rules.spans(text)] == found


@pytest.mark.parametrize(
    "text",
    [
        "BP 120/80 HR 90",
        "placed on PSV 10/5 peep",
        "1/2 NS at 75cc/hr",
        "pain 5/10 relieved",
        "IABP 1:1 ratio",
        "approx 1030 bp down",
        "a 74 yo woman",
        "K 3.4 Mg 2.1",
        "600x12/5/40%",
    ],
)
def test_rules_leave_clinical_numbers_alone(text):
    assert rules.spans(text) == []


def test_merge_joins_overlaps_keeping_the_longer_label():
    merged = rules.merge([Span(0, 4, "DATE"), Span(2, 10, "PHONE"), Span(12, 13, "ID")])
    assert merged == [Span(0, 10, "PHONE"), Span(12, 13, "ID")]


def test_initials_join_the_name_after_them():
    text = "as per E. WELSH and J Smith, not CXR Jones"
    found = [
        Span(text.index(w), text.index(w) + len(w), "NAME-DOCTOR")
        for w in ("WELSH", "Smith", "Jones")
    ]
    joined = rules.with_initials(text, found)
    assert [text[s.start : s.end] for s in joined] == ["E. WELSH", "J Smith", "Jones"]
