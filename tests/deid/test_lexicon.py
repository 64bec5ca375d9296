import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from veil.deid.lexicon import Lexicon, word_hash

WORDS = st.lists(st.text(st.sampled_from("abAB-1"), min_size=1, max_size=4), max_size=30)


@given(WORDS, WORDS, WORDS)
def test_lexicon_features_mark_exactly_the_words_in_each_group(first, second, words):
    lex = Lexicon({
        "first": np.array([word_hash(w) for w in first], dtype=np.int64),
        "second": np.array([word_hash(w) for w in second], dtype=np.int64),
    })  # fmt: skip
    got = lex.features(words)
    assert got.shape == (len(words), 2) and got.dtype == np.float32
    for row, w in zip(got, words, strict=True):
        assert row.tolist() == [
            float(w.lower() in {x.lower() for x in first}),
            float(w.lower() in {x.lower() for x in second}),
        ]
