"""``veil deid``: de-identify files, folders and PhysioNet records; evaluate; train."""

from __future__ import annotations

import json

from veil.cli.main import main
from veil.deid.corpus import parse_records

RECORDS = (
    "START_OF_RECORD=7||||1||||\nSeen by Dr. Foley on 8/23. Call 410-555-9876.\n"
    "||||END_OF_RECORD\n\nSTART_OF_RECORD=7||||2||||\nDr. Foley aware, cath 8/24.\n"
    "||||END_OF_RECORD\n"
)
NOTES = [n.text for n in parse_records(RECORDS)]
PHI = [(1, "Foley", "HCPName"), (1, "8/23", "Date"), (1, "410-555-9876", "Phone"),
       (2, "Foley", "HCPName"), (2, "8/24", "Date")]  # fmt: skip
PHRASES = "".join(
    f"7 {k} {NOTES[k - 1].index(w)} {NOTES[k - 1].index(w) + len(w)} {cat} {w}\n"
    for k, w, cat in PHI
)


def _records(tmp_path):
    (tmp_path / "n.text").write_text(RECORDS)
    (tmp_path / "n.phrase").write_text(PHRASES)
    return tmp_path / "n.text"


def test_text_keeps_the_physionet_format_and_surrogates_consistent(tmp_path, capsys):
    key = tmp_path / "key"
    key.write_text("ab" * 32)
    out, spans = tmp_path / "out.text", tmp_path / "spans.jsonl"
    args = ["deid", "text", str(_records(tmp_path)), "-o", str(out), "--key-file", str(key)]
    assert main([*args, "--spans", str(spans)]) == 0
    text = out.read_text()
    assert text.count("START_OF_RECORD=7||||") == 2 and text.count("||||END_OF_RECORD") == 2
    for phi in ("Foley", "8/23", "8/24", "410-555-9876"):
        assert phi not in text
    log = [json.loads(line) for line in spans.read_text().splitlines()]
    assert [r["note"] for r in log] == ["1", "2"]
    assert "Foley" not in spans.read_text()
    # same key, same patient: the doctor gets one surrogate in both notes and both runs
    first = log[0]["replaced"][0]
    name = text.split("||||\n")[1][first[2] : first[3]]
    assert text.count(name) >= 2
    assert main([*args, "--force"]) == 0 and out.read_text() == text
    assert main(args) == 2
    assert "exists" in capsys.readouterr().err


def test_text_on_a_folder_and_bad_input(tmp_path, capsys):
    src = tmp_path / "notes"
    (src / "a").mkdir(parents=True)
    (src / "a" / "one.txt").write_text("Dr. Foley saw pt on 8/23.\n")
    (src / "two.txt").write_text("")
    assert main(["deid", "text", str(src), "-o", str(tmp_path / "out"), "--mode", "mask"]) == 0
    assert (
        tmp_path / "out" / "a" / "one.txt"
    ).read_text() == "Dr. [NAME-DOCTOR] saw pt on [DATE].\n"
    assert (tmp_path / "out" / "two.txt").read_text() == ""
    assert "two.txt is empty" in capsys.readouterr().err
    (src / "bad.txt").write_bytes(b"ok\n\xfe\n")
    assert main(["deid", "text", str(src / "bad.txt")]) == 2
    assert "line 2: not UTF-8" in capsys.readouterr().err
    assert main(["deid", "text", str(src / "bad.txt"), "-o", str(tmp_path / "bad.out")]) == 2
    assert "line 2: not UTF-8" in capsys.readouterr().err
    assert not (tmp_path / "bad.out").exists() and not list(tmp_path.glob(".bad.out*"))
    assert main(["deid", "text", str(src)]) == 2
    assert "needs --out" in capsys.readouterr().err


def test_text_writes_to_stdout_for_a_dash(tmp_path, capsys, monkeypatch):
    src = tmp_path / "one.txt"
    src.write_text("Dr. Foley saw pt on 8/23.\n")
    monkeypatch.chdir(tmp_path)
    assert main(["deid", "text", str(src), "-o", "-", "--mode", "mask"]) == 0
    assert capsys.readouterr().out == "Dr. [NAME-DOCTOR] saw pt on [DATE].\n"
    assert not (tmp_path / "-").exists()


def test_eval_prints_the_headline_keys(tmp_path, capsys):
    assert main(["deid", "eval", str(_records(tmp_path)), "--json", "--bootstrap", "50"]) == 0
    result = json.loads(capsys.readouterr().out)
    for k in ("token_recall", "token_precision", "token_f1", "entity_strict_f1"):
        assert 0.0 <= result[k] <= 1.0
    assert result["gold_spans"] == 5 and result["token_recall"] >= 0.8
    assert main(["deid", "eval", str(_records(tmp_path)), "--rules-only"]) == 0
    assert "token recall" in capsys.readouterr().out
    assert main(["deid", "eval", str(_records(tmp_path)), "--compare", "--json"]) == 0
    compare = json.loads(capsys.readouterr().out)["compare"]
    assert set(compare) == {"rules", "presidio_patterns"}
    # the rules find both dates and the phone number (11 of 13 PHI tokens), and nothing else
    assert compare["rules"]["token_precision"] == 1.0 and compare["rules"]["token_recall"] > 0.5


def test_eval_needs_gold_spans(tmp_path, capsys):
    (tmp_path / "n.text").write_text(RECORDS)
    assert main(["deid", "eval", str(tmp_path / "n.text")]) == 2
    assert "no gold PHI spans" in capsys.readouterr().err


def test_train_refuses_an_unknown_algorithm(tmp_path, capsys):
    assert (
        main(["deid", "train", "--sites", "3", "--algo", "fedprox", "-o", str(tmp_path / "t")]) == 2
    )
    assert "unknown algorithm 'fedprox'" in capsys.readouterr().err


def test_train_refuses_a_negative_miss_cost(tmp_path, capsys):
    assert main(["deid", "train", "--miss-cost", "-1", "-o", str(tmp_path / "t")]) == 2
    assert "miss-cost" in capsys.readouterr().err


def test_train_calibrates_to_a_precision_floor(tmp_path, capsys):
    from veil.deid.corpus import Note, Span, write_jsonl
    from veil.deid.tagger import Tagger

    names = ["Foley", "Nicholson", "Carey", "Rossetti", "Munroe"]
    notes = []
    for i in range(40):
        name, text = names[i % 5], f"Pt stable overnight. Dr. {names[i % 5]} aware of plan.\n"
        start = text.index(name)
        notes.append(
            Note(str(i % 8), str(i), text, [Span(start, start + len(name), "NAME-DOCTOR")])
        )
    write_jsonl(tmp_path / "notes.jsonl", notes)
    out = tmp_path / "t.veil"
    args = ["deid", "train", "--notes", str(tmp_path / "notes.jsonl"), "--epochs", "1"]
    assert main([*args, "--min-precision", "0.5", "-o", str(out)]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[-2])
    tagger = Tagger.load(out)
    assert tagger.info["calibration"]["min_precision"] == 0.5
    assert report["o_bias"] == tagger.o_bias and report["dev_token_precision"] >= 0.5
    assert main([*args, "--min-precision", "1.5", "-o", str(out), "--force"]) == 2
    capsys.readouterr()
    sure = ["--min-precision", "0.5", "--confidence", "0.9", "-o", str(out), "--force"]
    assert main([*args, *sure]) == 0
    calibration = Tagger.load(out).info["calibration"]
    assert calibration["confidence"] == 0.9
    assert calibration["precision_bound"] <= calibration["precision"]
    assert main([*args, "--confidence", "0.9", "-o", str(out), "--force"]) == 2
    assert "give both" in capsys.readouterr().err
    # the mean of the last epochs' weights instead of the best dev epoch
    two = ["--epochs", "2", "-o", str(out), "--force"]
    assert main([*args[:-2], *two, "--average-last", "2"]) == 0
    assert Tagger.load(out).opts.average_last == 2
    assert main([*args[:-2], *two, "--average-last", "3"]) == 2
    assert "average_last" in capsys.readouterr().err
    # the bias set on the training patients too, scored by taggers trained without them
    assert main([*args, "--min-precision", "0.5", "--folds", "2", "-o", str(out), "--force"]) == 0
    assert "fold 2/2" in capsys.readouterr().out
    assert Tagger.load(out).info["calibration"]["pooled_notes"] > 0
    assert main([*args, "--folds", "1", "-o", str(out), "--force"]) == 2
    assert "at least 2" in capsys.readouterr().err
    # every patient in training, the folds alone set the bias
    every = ["--dev-fraction", "0", "--min-precision", "0.5", "-o", str(out), "--force"]
    assert main([*args, *every, "--folds", "2"]) == 0
    assert Tagger.load(out).info["dev_notes"] == 0
    assert main([*args, *every]) == 2
    assert "nothing to set the recall bias on" in capsys.readouterr().err
    # two networks tag as one, from one file
    assert main([*args, "--networks", "2", "-o", str(out), "--force"]) == 0
    capsys.readouterr()
    assert Tagger.load(out).opts.networks == 2
    assert main([*args, "--networks", "2", "--sites", "2", "-o", str(out), "--force"]) == 2
    assert "ensemble" in capsys.readouterr().err
