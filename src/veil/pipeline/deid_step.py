"""The ``deidentify`` step: each hospital de-identifies its notes before they leave it.

Notes are read from a PhysioNet ``.text`` file or JSONL (default: the synthetic notes bundled
for the clinic scenario); the patient id prefix before ``-`` names the hospital. The output
is JSONL of de-identified text (surrogates from a key made for this run). When the notes
carry gold PHI spans, the step scores the tagger on them and counts the gold spans it
missed entirely (left in the text as they were); both go in the ledger with the guarantee.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from veil.pipeline.scenario import StepConfig
from veil.pipeline.steps import Artifact, RunContext, register_step

BUNDLED = Path(__file__).resolve().parents[1] / "deid" / "samples" / "clinic-notes.jsonl"


def missed(notes, found) -> int:
    """Gold PHI spans that no detected span touches: they stay in the text as they were."""
    from veil.deid.evaluate import entity_counts

    return int(entity_counts(notes, found, strict=False)[:, 2].sum())


class DeidentifyConfig(StepConfig):
    """De-identify clinical notes with the shipped tagger (or ``model``)."""

    kind: Literal["deidentify"]
    notes: str | None = None
    mode: Literal["surrogate", "mask", "redact"] = "surrogate"
    model: str | None = None


@register_step("deidentify", DeidentifyConfig, produces="notes")
def run_deidentify(cfg: DeidentifyConfig, ctx: RunContext) -> Artifact:
    import json
    import secrets

    from veil.core.guarantees import Guarantee
    from veil.core.io import atomic_write
    from veil.deid.corpus import read_notes
    from veil.deid.deidentify import Deidentifier, load_tagger
    from veil.deid.evaluate import evaluate

    notes = read_notes(Path(cfg.notes) if cfg.notes else BUNDLED)
    tagger = load_tagger(cfg.model)
    deid = Deidentifier(tagger, cfg.mode, secrets.token_bytes(32))
    found = deid.spans(notes)
    results = [deid.apply(n.text, f, n.patient) for n, f in zip(notes, found, strict=True)]
    path = ctx.path_for("note", cfg.id, ".jsonl")
    lines = [json.dumps({"patient": n.patient, "note": n.note, "text": r.text})
             for n, r in zip(notes, results, strict=True)]  # fmt: skip
    atomic_write(path, "".join(line + "\n" for line in lines))
    hospitals = sorted({n.patient.split("-")[0] for n in notes})
    numbers = {"notes": len(notes), "hospitals": len(hospitals),
               "phi_replaced": sum(len(r.replacements) for r in results)}  # fmt: skip
    if any(n.spans for n in notes):
        scores = evaluate(notes, found, draws=0)
        numbers.update(
            gold_spans=sum(len(n.spans) for n in notes),
            token_recall=scores["token_recall"],
            token_precision=scores["token_precision"],
            gold_phi_missed=missed(notes, found),
        )
    ctx.ledger.add(
        Guarantee(
            guarantee="training-data",
            mechanism="de-identification (BiLSTM-CRF tagger + rules, keyed surrogates)",
            claim=f"PHI in {len(notes)} notes of {len(hospitals)} hospitals replaced "
            f"({cfg.mode}) before the notes leave each hospital",
            threat_model="Readers of the de-identified notes, without the surrogate key. "
            "Detection is statistical: PHI the tagger misses stays in the text (see token "
            "recall); surrogates are consistent per patient, so notes stay linkable.",
            parameters={
                "mode": cfg.mode,
                "o_bias": tagger.o_bias,
                "model": cfg.model or "shipped tagger",
            },  # fmt: skip
            numbers=numbers,
            step=cfg.id,
        )
    )
    return Artifact("notes", path, {"notes": len(notes)})
