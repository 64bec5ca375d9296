import random

import pytest

from veil.deid.corpus import Note, Span

DOCTORS = ["Jones", "Welsh", "Kargas", "Miller", "Boyle", "Foley", "Clifford", "Peppler"]
FILLER = [
    "pt stable overnight.",
    "BP 120/80 HR 88.",
    "on PSV 10/5 peep.",
    "lungs clear.",
    "1/2 NS at 75cc/hr.",
    "plan: continue lasix.",
]


def synthetic_notes(n: int, seed: int = 0) -> list[Note]:
    """Short notes in which doctors' names follow 'Dr.' or 'per' and dates are m/d."""
    rng = random.Random(seed)
    notes = []
    for i in range(n):
        parts, spans, text = [], [], ""
        for _ in range(4):
            kind = rng.random()
            if kind < 0.4:
                name = rng.choice(DOCTORS)
                lead = rng.choice(["Seen by Dr. ", "as per ", "Dr. "])
                start = len(text) + len(lead)
                spans.append(Span(start, start + len(name), "NAME-DOCTOR"))
                piece = f"{lead}{name} aware."
            elif kind < 0.6:
                date = f"{rng.randint(1, 12)}/{rng.randint(1, 28)}"
                start = len(text) + len("Cath on ")
                spans.append(Span(start, start + len(date), "DATE"))
                piece = f"Cath on {date} done."
            else:
                piece = rng.choice(FILLER)
            parts.append(piece)
            text += piece + "\n"
        notes.append(Note(str(i % 10), str(i), text, spans))
    return notes


@pytest.fixture(scope="session")
def tiny_tagger():
    from veil.deid.lexicon import Lexicon
    from veil.deid.tagger import Options, Tagger

    opts = Options(word_dim=16, char_dim=8, char_filters=16, hidden=24, epochs=8, lr=2e-2, batch=8)
    notes = synthetic_notes(120)
    return Tagger.train(notes, Lexicon.empty(), opts, dev=synthetic_notes(30, seed=1))
