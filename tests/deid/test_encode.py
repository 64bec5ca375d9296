import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from veil.deid.corpus import distinct, tokens
from veil.deid.encode import SHAPES, _word_shape, place_features, word_shapes

# text with what the shape features look at: line breaks, colons, digits, case, and
# characters outside the basic plane and lone surrogates (a str from Python may hold them)
TEXT = st.text(
    st.sampled_from(["\n", ":", " ", "a", "B", "7", "-", "é", "\U0001f600", "\ud800"]),
    max_size=60,
)


@given(TEXT)
def test_shape_features_are_each_tokens_own_shape_and_place(text):
    toks = tokens(text)
    words = [text[s:e] for s, e in toks]
    once, where = distinct(words)  # as the encoder looks shapes up: once per spelling
    got = np.concatenate([word_shapes(once)[where], place_features(text, toks)], axis=1)
    assert got.shape == (len(toks), len(SHAPES))
    for row, (s, _), w in zip(got, toks, words, strict=True):
        assert row[:-2].tolist() == [float(x) for x in _word_shape(w)]
        assert row[-1] == (":" in text[max(0, s - 3) : s])
        if s != toks[0][0]:
            assert row[-2] == ("\n" in text[max(0, s - 2) : s])
    if toks:
        assert got[0, -2] == 1  # the first token starts a line
