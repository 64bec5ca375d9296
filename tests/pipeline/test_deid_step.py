"""The ``deidentify`` step: notes de-identified, scored against gold, guarantee in the ledger."""

import json

from veil import pipeline
from veil.deid.corpus import read_jsonl
from veil.deid.deidentify import load_tagger
from veil.pipeline.deid_step import BUNDLED

SCENARIO = """\
[scenario]
name = "notes"

[[steps]]
id = "deid"
kind = "deidentify"
mode = "mask"
"""


def test_deid_step_masks_the_bundled_notes(tmp_path):
    ledger = pipeline.run(pipeline.parse(SCENARIO), tmp_path / "out")
    (entry,) = ledger.entries
    assert entry.guarantee == "training-data" and entry.step == "deid"
    assert entry.numbers["notes"] == 12 and entry.numbers["hospitals"] == 3
    assert entry.numbers["gold_spans"] == 46 and entry.numbers["token_recall"] >= 0.8
    out = [
        json.loads(line)
        for line in (tmp_path / "out/notes/deid.jsonl").read_text().split("\n")
        if line
    ]
    gold = read_jsonl(BUNDLED)
    found = load_tagger().predict(gold)
    left = [
        (n.text[g.start : g.end], o["text"])
        for n, f, o in zip(gold, found, out, strict=True)
        for g in n.spans
        if not any(p.start < g.end and g.start < p.end for p in f)
    ]
    assert len(left) == entry.numbers["gold_phi_missed"] <= 8
    assert all(phi in text for phi, text in left)  # missed PHI stays as it was
    assert "[NAME-DOCTOR]" in out[0]["text"] and "spans" not in out[0]
