"""The ``deidentify`` step: notes de-identified, scored against gold, guarantee in the ledger."""

import json

from veil import pipeline
from veil.deid.corpus import read_jsonl
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
    left = [
        n.text[s.start : s.end]
        for n, o in zip(gold, out, strict=True)
        for s in n.spans
        if n.text[s.start : s.end] in o["text"]
    ]
    assert len(left) == entry.numbers["gold_phi_left_verbatim"] <= 8
    assert "[NAME-DOCTOR]" in out[0]["text"] and "spans" not in out[0]
