import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from veil.core.errors import DataError
from veil.deid.corpus import (
    LABELS,
    Note,
    Span,
    UnknownCategory,
    parse_phrases,
    parse_records,
    read_jsonl,
    read_physionet,
    split_patients,
    token_mask,
    tokens,
    write_jsonl,
)

TEXT = (
    "START_OF_RECORD=1||||1||||\nSeen by Dr. Jones on 7/22.\n||||END_OF_RECORD\n\n"
    "START_OF_RECORD=1||||2||||\nCall 410-555-1234.\n||||END_OF_RECORD\n"
    "START_OF_RECORD=2||||1||||\nNo PHI here.\n||||END_OF_RECORD\n"
)
PHRASES = "1 1 12 17 HCPName Jones\n1 1 21 25 Date 7/22\n1 2 5 17 Phone 410-555-1234\n"


def _write(tmp_path, text=TEXT, phrases=PHRASES):
    (tmp_path / "n.text").write_text(text)
    (tmp_path / "n.phrase").write_text(phrases)
    return tmp_path / "n.text", tmp_path / "n.phrase"


def test_reads_physionet_records_and_maps_categories(tmp_path):
    notes = read_physionet(*_write(tmp_path))
    assert [n.key for n in notes] == ["1/1", "1/2", "2/1"]
    assert notes[0].text == "Seen by Dr. Jones on 7/22.\n"
    assert notes[0].spans == [Span(12, 17, "NAME-DOCTOR"), Span(21, 25, "DATE")]
    assert notes[1].spans == [Span(5, 17, "PHONE")]
    assert notes[2].spans == []


@pytest.mark.parametrize(
    "text,phrases,message",
    [
        (TEXT.replace("||||END_OF_RECORD\n\n", "\n", 1), PHRASES, "1/1 has no"),
        (TEXT + "START_OF_RECORD=9||||1||||\ncut", PHRASES, "outside any"),
        (TEXT + TEXT.split("\n\n")[0], PHRASES, "duplicate record 1/1"),
        (TEXT, "1 1 12 x HCPName Jones\n", "line 1: expected"),
        (TEXT, "3 1 0 2 Date 7/\n", "no record 3/1"),
        (TEXT, "1 1 12 99 Date x\n", "outside note 1/1"),
        (TEXT, "1 1 12 17 HCPName Smith\n", "does not match"),
    ],
)
def test_malformed_input_names_the_record_or_line(tmp_path, text, phrases, message):
    with pytest.raises(DataError, match=message):
        read_physionet(*_write(tmp_path, text, phrases))


def test_non_utf8_names_the_line(tmp_path):
    path = tmp_path / "n.text"
    path.write_bytes(TEXT.encode() + b"START_OF_RECORD=3||||1||||\n\xff\n||||END_OF_RECORD\n")
    with pytest.raises(DataError, match=r"line 12: not UTF-8 \(byte 0xff\)"):
        read_physionet(path)


def test_jsonl_round_trip_and_errors(tmp_path):
    notes = read_physionet(*_write(tmp_path))
    write_jsonl(tmp_path / "n.jsonl", notes)
    again = read_jsonl(tmp_path / "n.jsonl")
    assert [(n.patient, n.note, n.text, n.spans) for n in again] == [
        (n.patient, n.note, n.text, n.spans) for n in notes
    ]
    (tmp_path / "bad.jsonl").write_text(json.dumps({"text": "ab", "spans": [{"start": 1}]}))
    with pytest.raises(DataError, match="line 1: a span needs"):
        read_jsonl(tmp_path / "bad.jsonl")


def test_split_is_by_patient_and_seeded():
    notes = [Note(str(p), str(k), "x") for p in range(20) for k in range(3)]
    a, b = split_patients(notes, (0.75, 0.25), seed=3)
    assert not {n.patient for n in a} & {n.patient for n in b}
    assert len(a) + len(b) == 60 and len({n.patient for n in b}) == 5
    assert [n.key for n in split_patients(notes, (0.75, 0.25), seed=3)[1]] == [n.key for n in b]


@given(st.text(alphabet=st.sampled_from("ab1/ .\n:Zé"), max_size=40))
def test_tokens_cover_every_non_space_character_once(text):
    toks = tokens(text)
    covered = "".join(text[s:e] for s, e in toks)
    assert covered == "".join(text.split())
    assert all(e > s for s, e in toks)
    assert all(a[1] <= b[0] for a, b in zip(toks, toks[1:], strict=False))


@given(st.text(alphabet="ab1/ ", max_size=30), st.data())
def test_token_mask_is_overlap(text, data):
    toks = tokens(text)
    if not text:
        return
    s = data.draw(st.integers(0, len(text) - 1))
    e = data.draw(st.integers(s + 1, len(text)))
    mask = token_mask(toks, [Span(s, e, LABELS[0])], len(text))
    assert mask.tolist() == [a < e and b > s for a, b in toks]


def test_parse_phrases_trims_whitespace_in_spans():
    notes = parse_records("START_OF_RECORD=1||||1||||\nnov. 2016 ok\n||||END_OF_RECORD")
    parse_phrases("1 1 0 5 Date nov. \n", notes)
    assert notes[0].spans == [Span(0, 4, "DATE")]


def test_unknown_category_is_kept_as_other_with_a_warning(tmp_path):
    with pytest.warns(UnknownCategory, match="line 1: unknown PHI category 'Doctor'"):
        notes = read_physionet(*_write(tmp_path, TEXT, "1 1 12 17 Doctor Jones\n"))
    assert notes[0].spans == [Span(12, 17, "OTHER")]
