"""Name and place lists as token features, kept as hashes so a model file carries no list text.

The PhysioNet deid package ships lists of first and last names, places, hospitals and
companies (``$VEIL_DATA/deid/lists``, GPL-2 like the package). A token's features say which
groups it belongs to. A tagger stores each group as a sorted array of 64-bit BLAKE2b hashes of
the lower-cased words, so it works where the lists are not installed; a false hit on an
unlisted word has probability about (list size) / 2^64.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from veil.core.errors import DataError
from veil.deid.corpus import distinct

GROUPS: dict[str, tuple[str, ...]] = {
    "first": ("female_names_unambig", "male_names_unambig", "doctor_first_names"),
    "first-ambig": ("female_names_ambig", "male_names_ambig"),
    "first-popular": ("female_names_popular", "male_names_popular"),
    "last": ("last_names_unambig", "doctor_last_names"),
    "last-ambig": ("last_names_ambig",),
    "last-popular": ("last_names_popular",),
    "place": (
        "locations_unambig",
        "local_places_unambig",
        "countries_unambig",
        "us_states",
        "more_us_state_abbreviations",
    ),
    "place-ambig": ("locations_ambig", "local_places_ambig"),
    "hospital": ("stripped_hospitals",),
    "company": ("company_names_unambig", "company_names_ambig"),
    "ethnicity": ("ethnicities_unambig",),
    "prefix": ("prefixes_unambig", "last_name_prefixes"),
    "state": ("us_states_abbre",),
    "area-code": ("us_area_code",),
}


@lru_cache(maxsize=65536)
def word_hash(word: str) -> int:
    """The signed 64-bit hash a lexicon keeps of a lower-cased word."""
    digest = hashlib.blake2b(word.lower().encode(), digest_size=8, person=b"veil-deid").digest()
    return int.from_bytes(digest, "little", signed=True)


# Words of multi-word entries ("The Home Depot", "Bank of America") that are not names.
STOP = frozenset(
    [
        "the",
        "of",
        "and",
        "at",
        "for",
        "in",
        "on",
        "a",
        "an",
        "&",
        "-",
        "new",
        "st",
        "st.",
        "san",
        "de",
        "la",
        "del",
    ]
)


def _words(path: Path) -> set[str]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    out = set()
    for line in text.splitlines():
        words = line.lower().split()
        out.update(words if len(words) == 1 else (w for w in words if w not in STOP))
    return out


class Lexicon:
    """Word groups as sorted hash arrays; ``features(words)`` gives a 0/1 row per word."""

    def __init__(self, hashes: dict[str, np.ndarray]):
        self.names = list(hashes)
        self.hashes = {k: np.unique(np.asarray(v, dtype=np.int64)) for k, v in hashes.items()}

    @classmethod
    def from_folder(cls, folder: str | Path) -> Lexicon:
        """Hash the deid package's lists in ``folder`` into :data:`GROUPS`."""
        folder = Path(folder)
        missing = [
            n for files in GROUPS.values() for n in files if not (folder / f"{n}.txt").is_file()
        ]
        if missing:
            raise DataError(
                f"{folder} lacks the deid lists {', '.join(missing[:3])}...: place the "
                "PhysioNet deid package's lists there (see `veil data`)"
            )
        groups = {}
        for group, files in GROUPS.items():
            words = set().union(*(_words(folder / f"{n}.txt") for n in files))
            groups[group] = np.array(sorted(word_hash(w) for w in words), dtype=np.int64)
        return cls(groups)

    @classmethod
    def empty(cls) -> Lexicon:
        return cls({g: np.zeros(0, dtype=np.int64) for g in GROUPS})

    def features(self, words: list[str]) -> np.ndarray:
        """``(len(words), len(groups))`` float32: 1 where the word is in the group."""
        # each distinct word once, its hash looked up in sorted order (the tables are large;
        # sorted keys walk them front to back)
        once, where = distinct(w.lower() for w in words)
        keys = np.array([word_hash(w) for w in once], dtype=np.int64)
        order = np.argsort(keys)
        keys = keys[order]
        found = np.zeros((len(keys), len(self.names)), dtype=np.float32)
        for j, name in enumerate(self.names):
            table = self.hashes[name]
            if len(table) and len(keys):
                pos = np.minimum(np.searchsorted(table, keys), len(table) - 1)
                found[order, j] = table[pos] == keys
        return found[where]

    def __len__(self) -> int:
        return len(self.names)


def default_folder() -> Path:
    """Where the lists live: ``$VEIL_DATA/deid/lists`` (or the default data folder)."""
    from veil.core.data import data_dir

    return data_dir() / "deid" / "lists"
