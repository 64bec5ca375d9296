"""Subword vectors: WordPiece splits, the shipped table, rebuilding it, taggers that use it."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from veil.core.errors import DataError, ModelFileError
from veil.deid import subwords
from veil.deid.subwords import DIM, Subwords, build, table_digest

from .conftest import synthetic_notes

PIECES = ["[PAD]", "[UNK]", "nich", "##ol", "##son", "n", "##i", "##c", "##h", "##o", "##l"]
PIECES += ["##n", "##s", "s", "o", "l", "c", "h", "i", "nicholson"]


def small() -> Subwords:
    vectors = np.arange(len(PIECES) * 3, dtype=np.float16).reshape(len(PIECES), 3)
    return Subwords(PIECES, vectors)


def test_split_takes_the_longest_piece_first_and_whole_words_are_one_piece():
    table = small()
    ids = table.pieces("Nicholson")
    assert [PIECES[i] for i in ids] == ["nicholson"]
    assert [PIECES[i] for i in table.pieces("nichols")] == ["nich", "##ol", "##s"]
    assert table.pieces("nichx") == [PIECES.index("[UNK]")]  # "x" is no piece
    rows = table.features(["nicholson", "nichols", "nichx"])
    assert rows.shape == (3, 4) and rows[:, -1].tolist() == [1.0, 0.0, 0.0]
    want = table.vectors[[2, 3, PIECES.index("##s")]].mean(axis=0)
    assert np.allclose(rows[1, :-1], want)
    assert table.features([]).shape == (0, 4)


@given(st.text(alphabet="nicholsNICHOLS", min_size=1, max_size=40))
def test_pieces_spell_the_word_back(word):
    table = small()
    ids = table.pieces(word)
    spelt = "".join(PIECES[i].removeprefix("##") for i in ids)
    assert spelt == word.lower()[: subwords.MAX_PIECES_CHARS]


def test_shipped_table_knows_names_and_places_as_whole_words():
    table = subwords.load()
    assert table.dim == DIM and len(table.index) == 30522
    rows = table.features(["nicholson", "connolly", "california", "arizona", "lasix"])
    assert rows[:4, -1].tolist() == [1.0, 1.0, 1.0, 1.0] and rows[4, -1] == 0.0

    def cos(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    v = rows[:, :-1]
    assert cos(v[0], v[1]) > cos(v[0], v[2]) and cos(v[2], v[3]) > cos(v[2], v[0])


def test_build_reduces_a_model_folder_to_unit_variance_components(tmp_path):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    emb = rng.normal(size=(50, 12)).astype(np.float32) * np.linspace(5, 0.1, 12)
    save_file({subwords.EMBEDDINGS: emb}, str(tmp_path / "model.safetensors"))
    (tmp_path / "vocab.txt").write_text("\n".join(f"w{i}" for i in range(50)) + "\n")
    pieces, vectors = build(tmp_path, dim=4)
    assert len(pieces) == 50 and vectors.shape == (50, 4) and vectors.dtype == np.float16
    assert np.allclose(vectors.astype(np.float64).std(axis=0), 1.0, atol=1e-2)
    # the first component is the direction of the largest spread (the first axis here)
    assert abs(np.corrcoef(vectors[:, 0].astype(np.float64), emb[:, 0])[0, 1]) > 0.9
    (tmp_path / "vocab.txt").write_text("w0\n")
    with pytest.raises(DataError, match="1 pieces in vocab.txt, 50 embeddings"):
        build(tmp_path, dim=4)
    with pytest.raises(DataError, match="not a BERT-style model folder"):
        build(tmp_path / "missing")


def test_a_table_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "t.npz"
    np.savez(path, pieces=np.array([object()], dtype=object), vectors=np.zeros((1, 2)))
    with pytest.raises(DataError, match="cannot read the subword table"):
        subwords.load.__wrapped__(path)


def test_digest_follows_the_vectors():
    a = small()
    changed = a.vectors.copy()
    changed[0, 0] += 1
    assert a.digest == table_digest(PIECES, a.vectors)
    assert a.digest != table_digest(PIECES, changed)


@pytest.fixture(scope="module")
def subword_tagger():
    from veil.deid.lexicon import Lexicon
    from veil.deid.tagger import Options, Tagger

    opts = Options(word_dim=8, char_dim=8, char_filters=8, hidden=8, epochs=1, batch=8,
                   subwords=True, subword_dropout=0.5)  # fmt: skip
    return Tagger.train(synthetic_notes(20), Lexicon.empty(), opts)


def test_a_tagger_with_subwords_reads_them_and_records_the_table(subword_tagger, tmp_path):
    from veil.deid.tagger import Tagger

    enc = subword_tagger.encoder
    (chunk, *_) = enc.encode(synthetic_notes(1, seed=3))
    words = [synthetic_notes(1, seed=3)[0].text[s:e] for s, e in chunk.toks]
    assert np.array_equal(chunk.feats[:, -enc.subword_width :], subwords.load().features(words))
    again = Tagger.load(subword_tagger.save(tmp_path / "s.veil"))
    notes = synthetic_notes(5, seed=4)
    assert again.opts.subwords and again.predict(notes) == subword_tagger.predict(notes)


def test_a_tagger_from_another_table_is_refused(subword_tagger, tmp_path, monkeypatch):
    from veil.deid.tagger import Tagger

    path = subword_tagger.save(tmp_path / "s.veil")
    other = Subwords(PIECES, np.zeros((len(PIECES), DIM), dtype=np.float16))
    monkeypatch.setattr(subwords, "load", lambda: other)
    with pytest.raises(ModelFileError, match="another subword table"):
        Tagger.load(path)


def test_subword_dropout_hides_whole_vectors_in_training_only(subword_tagger):
    net, enc = subword_tagger.net, subword_tagger.encoder
    feats = torch.ones(2, 7, enc.n_features)
    words, lengths = torch.full((2, 7), 1), torch.tensor([7, 7])
    chars = (torch.ones(1, 16, dtype=torch.long), torch.zeros(2, 7, dtype=torch.long))
    seen = []
    handle = net.subword_proj.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    torch.manual_seed(0)
    try:
        net.train()
        net.emissions(words, chars, feats, lengths)
        net.eval()
        net.emissions(words, chars, feats, lengths)
    finally:
        handle.remove()
        net.eval()
    trained, evaluated = seen
    assert trained.shape == (2, 7, enc.subword_width)
    hidden = (trained == 0).all(dim=-1)
    assert ((trained == 1).all(dim=-1) | hidden).all() and 0 < hidden.sum() < 14
    assert (evaluated == 1).all()


def test_a_tagger_file_from_before_the_option_loads_without_subwords(tmp_path, monkeypatch):
    import dataclasses

    from veil.deid import tagger as tagger_module
    from veil.deid.lexicon import Lexicon
    from veil.deid.tagger import Options, Tagger

    assert Options().subwords
    opts = Options(word_dim=8, char_dim=8, char_filters=8, hidden=8, epochs=1, subwords=False)
    plain = Tagger.train(synthetic_notes(10), Lexicon.empty(), opts)
    new = ("subwords", "subword_dropout", "subword_dim")
    monkeypatch.setattr(
        tagger_module,
        "asdict",
        lambda o: {k: v for k, v in dataclasses.asdict(o).items() if k not in new},
    )
    path = plain.save(tmp_path / "old.veil")
    monkeypatch.undo()
    old = Tagger.load(path)
    assert not old.opts.subwords and old.encoder.subwords is None
    notes = synthetic_notes(5, seed=2)
    assert old.predict(notes) == plain.predict(notes)
