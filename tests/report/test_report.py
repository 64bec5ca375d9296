"""The HTML report: every section, entries shown and escaped, plots embedded; terminal summary."""

import re

from rich.console import Console

from veil.core.guarantees import Guarantee, Ledger, Record
from veil.report import render_html, summary_rows, summary_table, write_html
from veil.report.summary import verdict

SECTION_IDS = ["summary", "steps", "artifacts", "reproduce"]


def _ledger():
    ledger = Ledger.start("r")
    ledger.add(
        Guarantee(
            "input",
            "CKKS",
            "server never sees the input <b>x</b>",
            "semi-honest server",
            parameters={"N": 8192},
            numbers={"bits": 128},
        )
    )
    ledger.add(
        Guarantee(
            "audit",
            "LiRA",
            "AUC near 0.5",
            "black-box attacker",
            tests="training-data",
            status="supported",
            evidence={"auc": 0.52},
        )
    )
    ledger.record(
        Record(
            "train",
            "fit",
            metrics={"test_accuracy": 0.93},
            curves={"train_loss": [1.0, 0.4], "test_accuracy": [0.8, 0.93]},
        )
    )
    return ledger


def test_every_section_present_even_when_empty():
    html = render_html(Ledger.start("empty"))
    for sid in SECTION_IDS:
        assert f'id="{sid}"' in html
    assert html.count('class="card v-not-claimed"') == 4 and "No step was recorded." in html


def test_a_section_per_step_in_run_order_with_its_entries_and_plots():
    ledger = Ledger.start("r", steps=["fit", "serve"], step_kinds={"fit": "train"})
    ledger.add(Guarantee("input", "CKKS", "encrypted", "t", step="serve"))
    ledger.record(Record("train", "fit", metrics={"acc": 0.9}, curves={"train_loss": [1.0, 0.5]}))
    html = render_html(ledger)
    fit, serve = html.index('id="step-fit"'), html.index('id="step-serve"')
    assert fit < html.index("Training curves: fit") < serve < html.index("encrypted", serve)
    assert "(train)" in html[fit:serve] and 'href="#step-serve"' in html  # the card links it


def test_entries_plots_and_escaping(tmp_path):
    html = render_html(_ledger())
    assert "CKKS" in html and "LiRA" in html and "semi-honest server" in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
    pngs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(pngs) == 1 and len(pngs[0]) > 1000
    assert "http://" not in html and "https://" not in html  # self-contained
    path = write_html(_ledger(), tmp_path / "r.html")
    assert path.read_text().startswith("<!DOCTYPE html>")


def test_reconstructed_images_are_drawn_not_printed():
    ledger = Ledger.start("r")
    pixels = [[0, 128, 255, 0]] * 4
    images = [{"title": "#0: 38.5 dB", "pixels": pixels}, {"title": "#1", "pixels": pixels}]
    ledger.add(
        Guarantee(
            "audit",
            "gradient inversion",
            "2/2 recovered",
            "curious server",
            tests="training-data",
            status="violated",
            evidence={"images": images},
        )
    )
    html = render_html(ledger)
    assert html.count('src="data:image/png;base64,') == 1
    assert "4x4 image, drawn below" in html and "0, 128, 255" not in html


def test_summary_verdicts():
    rows = {r["guarantee"]: r for r in summary_rows(_ledger())}
    assert rows["input"]["status"] == "claimed" and rows["input"]["mechanisms"] == ["CKKS"]
    assert (rows["input"]["verdict"], rows["input"]["reason"]) == (
        "holds",
        "given by CKKS; no audit ran",
    )
    assert rows["training-data"]["status"] == "supported"
    assert rows["training-data"]["audits"] == ["LiRA"]
    assert rows["training-data"]["verdict"] == "not claimed"  # an audit alone claims nothing
    assert "1 audit(s) found no breach" in rows["training-data"]["reason"]
    assert rows["model"]["status"] == "not claimed"
    console = Console(record=True, width=200)
    console.print(summary_table(_ledger()))
    text = console.export_text()
    assert "Input privacy" in text and "holds" in text


def _dp(step: str, status: str = "claimed") -> Guarantee:
    return Guarantee("training-data", "DP-SGD", "(1, 1e-5)-DP", "t", step=step, status=status)


def test_verdict_is_partial_when_a_trained_model_has_no_guarantee():
    ledger = _ledger()  # its "fit" step trained a model and claims nothing for it
    ledger.add(_dp("private"))
    ledger.record(Record("train", "private", metrics={"test_accuracy": 0.9}))
    word, reason = verdict(ledger, "training-data")
    assert word == "partial" and "holds for private; not for fit" in reason
    ledger.entries.append(
        Guarantee("audit", "LiRA", "leaks", "t", tests="training-data", status="violated")
    )
    word, reason = verdict(ledger, "training-data")
    assert word == "does not hold" and "LiRA" in reason
    html = render_html(ledger)
    assert 'class="card v-does-not-hold"' in html and 'class="card v-holds"' in html
