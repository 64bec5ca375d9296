"""Notes to tensors: chunks of tokens with word ids, characters, features and BIO tags.

A token's features are its shape (case, digits, length), the rule label covering it, the
lexicon groups it belongs to and, in taggers trained with them, its pretrained subword vector
(:mod:`veil.deid.subwords`). The word vocabulary is built so that a model file does not
memorise PHI: it keeps only words seen in at least two patients' notes and never inside a
PHI span (names the network must learn from characters, context and lists instead).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from veil.deid import rules
from veil.deid.corpus import (
    LABELS,
    Note,
    Span,
    any_between,
    distinct,
    offsets,
    token_mask,
    tokens,
)
from veil.deid.lexicon import Lexicon
from veil.deid.subwords import Subwords

TAGS = ("O", *(f"{p}-{label}" for label in LABELS for p in "BI"))
# The rules' labels the network reads as features, one column each. Fixed, so that tagger
# files keep loading when a rule with a new label is added (its spans join the output only).
RULE_LABELS = (
    "DATE", "PHONE", "ID", "AGE>89", "EMAIL", "URL", "LOCATION", "NAME-DOCTOR", "NAME-PATIENT",
)  # fmt: skip
PAD, UNK = 0, 1
MAX_CHARS = 16
SHAPES = (
    "title",
    "upper",
    "lower",
    "digit",
    "punct",
    "len1",
    "len2",
    "len3-4",
    "len5+",
    "digits2",
    "digits4",
    "line-start",
    "after-colon",
)
N_FEATURES_BASE = len(SHAPES) + len(RULE_LABELS)
_NUM = re.compile(r"\d")


@lru_cache(maxsize=65536)
def norm(word: str) -> str:
    """The vocabulary form of a word: lower case, digits as 0."""
    return _NUM.sub("0", word.lower())


def char_ids(word: str) -> list[int]:
    """Printable ASCII as 2..96, anything else 1; at most :data:`MAX_CHARS` characters."""
    return [c - 30 if 32 <= c < 127 else 1 for c in map(ord, word[:MAX_CHARS])]


@lru_cache(maxsize=65536)
def _char_row(word: str) -> tuple[int, ...]:
    """:func:`char_ids` padded with 0 to :data:`MAX_CHARS` (one row of a chunk's chars)."""
    ids = char_ids(word)
    return (*ids, *(0,) * (MAX_CHARS - len(ids)))


def build_vocab(notes: list[Note], min_patients: int = 2) -> list[str]:
    """Words of at least ``min_patients`` patients, never seen inside a PHI span, sorted."""
    seen: dict[str, set[str]] = {}
    in_phi: set[str] = set()
    for n in notes:
        for (s, e), phi in zip(tokens(n.text), _mask(n), strict=True):
            w = norm(n.text[s:e])
            seen.setdefault(w, set()).add(n.patient)
            if phi:
                in_phi.add(w)
    return sorted(w for w, ps in seen.items() if len(ps) >= min_patients and w not in in_phi)


def _mask(note: Note) -> np.ndarray:
    return token_mask(tokens(note.text), note.spans, len(note.text))


def bio(toks: list[tuple[int, int]], spans: list[Span]) -> np.ndarray:
    """The BIO tag index of each token (a token overlapping a span takes its label)."""
    tags = np.zeros(len(toks), dtype=np.int64)
    starts = np.array([s for s, _ in toks], dtype=np.int64)
    ends = np.array([e for _, e in toks], dtype=np.int64)
    for span in spans:
        inside = np.flatnonzero((starts < span.end) & (ends > span.start))
        if len(inside):
            k = LABELS.index(span.label)
            tags[inside] = 2 + 2 * k
            tags[inside[0]] = 1 + 2 * k
    return tags


def spans_from_tags(toks: list[tuple[int, int]], tags: list[int]) -> list[Span]:
    """Runs of B/I tags as character spans; an I without its B starts a span."""
    out: list[Span] = []
    current = None
    for (s, e), t in zip(toks, tags, strict=True):
        label = LABELS[(t - 1) // 2] if t else None
        if label is not None and t % 2 == 0 and current and current[2] == label:
            current[1] = e
            continue
        if current:
            out.append(Span(*current))
        current = [s, e, label] if label else None
    if current:
        out.append(Span(*current))
    return out


@dataclass
class Encoded:
    """One chunk of a note: token offsets and the network's inputs (and gold tags)."""

    note: int
    toks: list[tuple[int, int]]
    words: np.ndarray
    chars: np.ndarray
    feats: np.ndarray
    tags: np.ndarray


def word_shapes(words: list[str]) -> np.ndarray:
    """The first eleven :data:`SHAPES` of each word (those that do not depend on where it
    stands), float32."""
    rows = np.array([_word_shape(w) for w in words], dtype=np.float32)
    return rows.reshape(len(words), len(SHAPES) - 2)


def place_features(text: str, toks: list[tuple[int, int]]) -> np.ndarray:
    """The last two :data:`SHAPES` of each token: a line break in the 2 characters before it
    (or the first token), a colon in the 3 before it."""
    out = np.zeros((len(toks), 2), dtype=np.float32)
    if not toks:
        return out
    starts = offsets(toks)[:, 0]
    chars = code_points(text)
    for j, (mark, width) in enumerate((("\n", 2), (":", 3))):
        out[:, j] = any_between(chars == ord(mark), np.maximum(starts - width, 0), starts)
    out[0, 0] = 1  # the first token starts a line
    return out


def code_points(text: str) -> np.ndarray:
    """One uint32 per character of ``text`` (lone surrogates kept)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _word_shape(w: str) -> tuple[bool, ...]:
    """The first eleven :data:`SHAPES` of a word (the last two depend on where it stands)."""
    return (
        w[:1].isupper() and w[1:].islower(),
        w.isupper() and len(w) > 1,
        w.islower(),
        w.isdigit(),
        not w.isalnum(),
        len(w) == 1,
        len(w) == 2,
        3 <= len(w) <= 4,
        len(w) >= 5,
        w.isdigit() and len(w) == 2,
        w.isdigit() and len(w) == 4,
    )


def rule_features(toks: list[tuple[int, int]], found: list[Span], length: int) -> np.ndarray:
    """For each token and rule label, whether a rule span of that label overlaps it."""
    out = np.zeros((len(toks), len(RULE_LABELS)), dtype=np.float32)
    for j, label in enumerate(RULE_LABELS):
        mine = [s for s in found if s.label == label]
        if mine:
            out[:, j] = token_mask(toks, mine, length)
    return out


class Encoder:
    """Turns notes into :class:`Encoded` chunks for a given vocabulary and lexicon."""

    def __init__(
        self,
        vocab: list[str],
        lexicon: Lexicon,
        max_len: int = 120,
        subwords: Subwords | None = None,
    ):
        self.vocab = vocab
        self.index = {w: i + 2 for i, w in enumerate(vocab)}
        self.lexicon = lexicon
        self.max_len = max_len
        self.subwords = subwords

    @property
    def n_features(self) -> int:
        """Shapes, rule labels, lexicon groups, then the subword vectors (if any)."""
        return N_FEATURES_BASE + len(self.lexicon) + self.subword_width

    @property
    def subword_width(self) -> int:
        return self.subwords.width if self.subwords else 0

    def encode(
        self, notes: list[Note], gold: bool = True, rule_spans: list[list[Span]] | None = None
    ) -> list[Encoded]:
        """Chunks of ``notes`` (``rule_spans``: each note's rule spans, if already found)."""
        out = []
        toks_of = [tokens(note.text) for note in notes]
        words_of = [[n.text[s:e] for s, e in toks] for n, toks in zip(notes, toks_of, strict=True)]
        # what depends on the word alone is found once per spelling of all the notes
        once, where = distinct(w for words in words_of for w in words)
        per_word = self.word_features(once)
        ids = np.array([self.index.get(norm(w), UNK) for w in once], dtype=np.int64)
        chars = np.array([_char_row(w) for w in once], dtype=np.int64).reshape(-1, MAX_CHARS)
        cuts = np.cumsum([0, *(len(t) for t in toks_of)])
        shapes = len(SHAPES) - 2
        for k, (note, toks) in enumerate(zip(notes, toks_of, strict=True)):
            if not toks:
                continue
            mine = where[cuts[k] : cuts[k + 1]]
            found = rule_spans[k] if rule_spans else rules.spans(note.text)
            feats = np.empty((len(toks), self.n_features), dtype=np.float32)
            feats[:, :shapes] = per_word[mine, :shapes]
            feats[:, shapes : len(SHAPES)] = place_features(note.text, toks)
            feats[:, len(SHAPES) : N_FEATURES_BASE] = rule_features(toks, found, len(note.text))
            feats[:, N_FEATURES_BASE:] = per_word[mine, shapes:]
            tags = bio(toks, note.spans) if gold else np.zeros(len(toks), dtype=np.int64)
            words, letters = ids[mine], chars[mine]
            for a, b in chunk_bounds(note.text, toks, self.max_len):
                out.append(Encoded(k, toks[a:b], words[a:b], letters[a:b], feats[a:b], tags[a:b]))
        return out

    def word_features(self, words: list[str]) -> np.ndarray:
        """The features of each word that do not depend on where it stands: its first eleven
        :data:`SHAPES`, lexicon groups and subword vector (if any)."""
        parts = [word_shapes(words), self.lexicon.features(words)]
        if self.subwords:
            parts.append(self.subwords.features(words))
        return np.concatenate(parts, axis=1)


def chunk_bounds(text: str, toks: list[tuple[int, int]], max_len: int) -> list[tuple[int, int]]:
    """Token ranges of at most ``max_len`` tokens, cut at line breaks where possible: a range
    that would run longer ends before the last token in it that follows a line break (or,
    with none after its first token, after ``max_len`` tokens)."""
    n = len(toks)
    if not n:
        return []
    at = offsets(toks)
    # the tokens with a line break between them and the token before
    breaks = 1 + np.flatnonzero(any_between(code_points(text) == ord("\n"), at[:-1, 1], at[1:, 0]))
    bounds, start = [], 0
    while n - start > max_len:
        end = start + max_len
        last = breaks[np.searchsorted(breaks, end, side="right") - 1] if len(breaks) else 0
        cut = int(last) if start < last <= end else end
        bounds.append((start, cut))
        start = cut
    bounds.append((start, n))
    return bounds
