import threading
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.core.errors import ModelFileError, VeilError
from veil.deid.corpus import Note, tokens
from veil.deid.encode import build_vocab, chunk_bounds
from veil.deid.evaluate import token_scores
from veil.deid.lexicon import Lexicon, word_hash

from .conftest import DOCTORS, synthetic_notes


def test_tagger_learns_names_it_never_saw_in_the_vocabulary(tiny_tagger):
    test = synthetic_notes(40, seed=7)
    scores = token_scores(test, tiny_tagger.predict(test, use_rules=False))
    assert scores["recall"] > 0.9 and scores["precision"] > 0.9
    assert not {d.lower() for d in DOCTORS} & set(tiny_tagger.encoder.vocab)


def test_vocab_keeps_words_of_two_patients_and_never_phi():
    notes = synthetic_notes(60)
    vocab = build_vocab(notes)
    assert "aware" in vocab and "jones" not in vocab
    assert build_vocab([Note("1", "1", "rare words here")]) == []


def test_bias_against_o_raises_recall(tiny_tagger):
    test = synthetic_notes(40, seed=9)
    low = token_scores(test, tiny_tagger.predict(test, o_bias=-4.0, use_rules=False))
    high = token_scores(test, tiny_tagger.predict(test, o_bias=8.0, use_rules=False))
    assert high["recall"] >= low["recall"] and high["precision"] < low["precision"]


def test_calibrate_reaches_the_target_recall(tiny_tagger):
    dev = synthetic_notes(30, seed=4)
    bias = tiny_tagger.o_bias
    point = tiny_tagger.calibrate(dev, target_recall=0.95)
    assert point["recall"] >= 0.95 and tiny_tagger.o_bias == point["o_bias"]
    tiny_tagger.o_bias = bias


def test_calibrate_to_a_precision_floor_takes_the_most_recall_above_it(tiny_tagger):
    from veil.deid.tagger import BIASES

    dev, bias = synthetic_notes(30, seed=4), tiny_tagger.o_bias
    points = list(tiny_tagger.sweep(dev, BIASES))
    floor = sorted(q["precision"] for q in points)[len(points) // 2]
    point = tiny_tagger.calibrate(dev, min_precision=floor)
    above = [q for q in points if q["precision"] >= floor]
    assert point["precision"] >= floor and point["recall"] == max(q["recall"] for q in above)
    assert tiny_tagger.info["calibration"]["min_precision"] == floor
    # a floor no bias reaches: the most precise bias
    point = tiny_tagger.calibrate(dev, min_precision=1.01)
    assert point["precision"] == max(q["precision"] for q in points)
    # a target every bias reaches: the smallest bias of the grid, below 0
    assert tiny_tagger.calibrate(dev, target_recall=0.0)["o_bias"] == BIASES[0] < 0
    tiny_tagger.o_bias = bias


def test_calibrate_with_confidence_holds_the_floor_on_resampled_notes(tiny_tagger):
    from veil.deid.evaluate import precision_bound
    from veil.deid.tagger import BIASES

    dev, bias = synthetic_notes(30, seed=4), tiny_tagger.o_bias
    counts = dict(tiny_tagger.sweep_counts(dev, BIASES))
    points = list(tiny_tagger.sweep(dev, BIASES))
    floor = sorted(q["precision"] for q in points)[len(points) // 2]
    plain = tiny_tagger.calibrate(dev, min_precision=floor)
    sure = tiny_tagger.calibrate(dev, min_precision=floor, confidence=0.9)
    # the bound is below the point estimate, so the bias chosen with it is never larger
    assert sure["precision_bound"] <= sure["precision"] and sure["o_bias"] <= plain["o_bias"]
    assert sure["precision_bound"] == precision_bound(counts[sure["o_bias"]], 0.9)
    held = [b for b, c in counts.items() if precision_bound(c, 0.9) >= floor]
    if held:  # the most recall among the biases whose bound holds the floor
        assert sure["precision_bound"] >= floor
        assert sure["recall"] == max(q["recall"] for q in points if q["o_bias"] in held)
    assert tiny_tagger.info["calibration"]["confidence"] == 0.9
    with pytest.raises(ValueError, match="min_precision"):
        tiny_tagger.calibrate(dev, confidence=0.9)
    tiny_tagger.o_bias = bias


def test_calibrate_pools_held_out_counts_with_the_dev_notes(tiny_tagger):
    import numpy as np

    from veil.deid.evaluate import scores
    from veil.deid.tagger import BIASES, pick_bias

    dev, more, bias = synthetic_notes(30, seed=4), synthetic_notes(20, seed=6), tiny_tagger.o_bias
    pooled = np.stack([c for _, c in tiny_tagger.sweep_counts(more, BIASES)])
    point = tiny_tagger.calibrate(dev, min_precision=0.5, pooled=pooled)
    assert tiny_tagger.info["calibration"]["pooled_notes"] == 20
    # the same as calibrating on both sets of notes at once
    assert point == tiny_tagger.calibrate([*dev, *more], min_precision=0.5)
    counts = dict(tiny_tagger.sweep_counts(dev, BIASES))[point["o_bias"]]
    i = BIASES.index(point["o_bias"])
    assert point["recall"] == scores(np.concatenate([counts, pooled[i]]))["recall"]
    with pytest.raises(ValueError, match="grid has"):
        tiny_tagger.calibrate(dev, min_precision=0.5, pooled=pooled[:3])
    # kept counts alone give the same choice, for each rule (no tagger needed)
    for rule in ({"target_recall": 0.9}, {"min_precision": 0.8, "confidence": 0.75}):
        kept = zip(BIASES, pooled, strict=True)
        assert pick_bias(kept, **rule) == tiny_tagger.calibrate(more, **rule)
    tiny_tagger.o_bias = bias


def test_save_and_load_give_the_same_spans(tiny_tagger, tmp_path):
    from veil.deid.tagger import Tagger

    path = tiny_tagger.save(tmp_path / "t.veil")
    again = Tagger.load(path)
    notes = synthetic_notes(10, seed=5)
    assert again.predict(notes) == tiny_tagger.predict(notes)
    assert again.o_bias == tiny_tagger.o_bias
    with pytest.raises(VeilError, match="exists"):
        tiny_tagger.save(path)


def test_miss_cost_raises_the_loss_of_missing_phi_and_travels_in_the_file(tiny_tagger, tmp_path):
    from dataclasses import replace

    from veil.deid.deidentify import DEFAULT_MODEL
    from veil.deid.tagger import MISS_COST, Tagger

    assert tiny_tagger.opts.miss_cost == MISS_COST > 0
    chunks = tiny_tagger.encoder.encode(synthetic_notes(8, seed=7))
    with torch.no_grad():
        margin = float(tiny_tagger.loss(chunks))
        opts = replace(tiny_tagger.opts, miss_cost=0.0)
        plain = float(Tagger(tiny_tagger.net, tiny_tagger.encoder, opts).loss(chunks))
    assert margin > plain > 0
    again = Tagger.load(tiny_tagger.save(tmp_path / "m.veil"))
    assert again.opts.miss_cost == MISS_COST
    # the shipped tagger is the benchmark's recipe, softmax-margin included
    assert Tagger.load(DEFAULT_MODEL).opts.miss_cost == MISS_COST


def test_a_negative_miss_cost_is_refused():
    from veil.core.errors import ConfigError
    from veil.deid.tagger import Options, Tagger

    with pytest.raises(ConfigError, match="miss_cost must be >= 0"):
        Tagger.train(synthetic_notes(4), Lexicon.empty(), Options(epochs=1, miss_cost=-1.0))


def test_other_files_are_refused(tmp_path, tiny_tagger):
    from veil.core.io import save_model
    from veil.core.models import build, spec_of
    from veil.deid.tagger import Tagger

    spec = spec_of("mlp", (4,), 2)
    save_model(tmp_path / "m.veil", build("mlp", (4,), 2), spec)
    with pytest.raises(ModelFileError, match="not a PHI tagger"):
        Tagger.load(tmp_path / "m.veil")
    (tmp_path / "junk.veil").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFileError):
        Tagger.load(tmp_path / "junk.veil")


def test_lexicon_features_use_hashes():
    lex = Lexicon({"first": [word_hash("Ann")], "last": []})
    assert lex.features(["ann", "ANN", "bob"]).tolist() == [[1, 0], [1, 0], [0, 0]]


def test_chunks_cut_at_line_breaks_and_cover_all_tokens():
    text = "a b c\nd e\nf g h i j\n" * 5
    toks = tokens(text)
    bounds = chunk_bounds(text, toks, 7)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(toks)
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    assert all(0 < e - s <= 7 for s, e in bounds)
    assert "\n" in text[toks[bounds[0][1] - 1][1] : toks[bounds[0][1]][0]]


@settings(max_examples=200, deadline=None)
@given(st.text(st.sampled_from(["a", "7", " ", "\n", ".", "é"]), max_size=80), st.integers(1, 9))
def test_chunks_are_the_longest_runs_that_end_at_the_last_line_break(text, max_len):
    """Each chunk is the longest run from its start that fits in ``max_len`` and ends where
    a line break follows (the end of the note, or ``max_len`` tokens when none does)."""
    toks = tokens(text)
    bounds = chunk_bounds(text, toks, max_len)
    assert [a for a, _ in bounds[1:]] == [b for _, b in bounds[:-1]]
    assert (bounds[0][0], bounds[-1][1]) == (0, len(toks)) if toks else bounds == []

    def broken(i):  # a line break between token i - 1 and token i
        return "\n" in text[toks[i - 1][1] : toks[i][0]]

    for start, end in bounds:
        assert 0 < end - start <= max_len
        if end < len(toks):
            fits = [i for i in range(start + 1, start + max_len + 1) if broken(i)]
            assert end == (fits[-1] if fits else start + max_len)


def test_notes_encoded_together_are_encoded_as_each_alone():
    """Encoding looks the lexicon up once per batch; each note must come out as if alone."""
    from veil.deid.encode import MAX_CHARS, SHAPES, Encoder, char_ids

    notes = [*synthetic_notes(6, seed=3), Note("p9", "9", ""), Note("p9", "10", "Ann:\nX 7/22")]
    lex = Lexicon({"first": [word_hash("Ann")], "last": []})
    enc = Encoder(build_vocab(notes), lex, max_len=20)
    together = enc.encode(notes)
    alone = [c for k, n in enumerate(notes) for c in _renumbered(enc.encode([n]), k)]
    assert len(together) == len(alone) > len(notes)
    for a, b in zip(together, alone, strict=True):
        assert a.note == b.note and a.toks == b.toks
        for field in ("words", "chars", "feats", "tags"):
            assert (getattr(a, field) == getattr(b, field)).all()
    last = together[-1]  # "Ann", ":", "X", "7", "/", "22"
    assert last.chars.shape == (6, MAX_CHARS) and list(last.chars[0, :3]) == char_ids("Ann")
    assert last.feats[:, SHAPES.index("line-start")].tolist() == [1, 0, 1, 0, 0, 0]
    assert last.feats[:, SHAPES.index("after-colon")].tolist() == [0, 0, 1, 0, 0, 0]
    assert last.feats[:, -2].tolist() == [1, 0, 0, 0, 0, 0]  # "first" lexicon group


def _renumbered(chunks, k):
    for c in chunks:
        c.note = k
    return chunks


def test_training_without_dev_keeps_the_last_epoch():
    from veil.deid.tagger import Options, Tagger

    notes = synthetic_notes(12)

    def trained(epochs):
        return Tagger.train(notes, Lexicon.empty(), Options(epochs=epochs, hidden=16, seed=3))

    one, three = trained(1), trained(3)
    assert three.info["epochs"] == 3
    assert not torch.equal(one.net.out.weight, three.net.out.weight)


def test_average_last_keeps_the_mean_weights_of_the_last_epochs():
    from veil.core.errors import ConfigError
    from veil.deid.tagger import Options, Tagger

    notes, lexicon = synthetic_notes(12), Lexicon.empty()

    def trained(epochs, average_last=0):
        opts = Options(epochs=epochs, hidden=16, seed=3, average_last=average_last)
        return Tagger.train(notes, lexicon, opts, dev=notes[:4]).net.state_dict()

    two, three = trained(2, average_last=1), trained(3, average_last=1)
    mean = trained(3, average_last=2)
    for k, v in mean.items():
        if v.is_floating_point():
            assert torch.allclose(v, (two[k] + three[k]) / 2, atol=1e-6), k
        else:
            assert torch.equal(v, three[k]), k
    with pytest.raises(ConfigError, match="average_last"):
        Options(epochs=3, average_last=4)


def test_an_ensemble_tags_with_the_mean_of_its_networks_scores_and_survives_a_file(tmp_path):
    from veil.core.errors import ConfigError
    from veil.deid.collab import train_dssgd
    from veil.deid.lexicon import GROUPS
    from veil.deid.tagger import Ensemble, Options, Tagger, _batch

    notes = synthetic_notes(24)
    lexicon = Lexicon({g: np.array([word_hash("foley")]) for g in GROUPS})
    small = {"epochs": 2, "hidden": 16, "word_dim": 16, "char_dim": 8, "char_filters": 8}
    pair = Tagger.train(notes, lexicon, Options(**small, seed=5, networks=2))
    alone = [Tagger.train(notes, lexicon, Options(**small, seed=s)) for s in (5, 6)]
    assert isinstance(pair.net, Ensemble) and len(pair.net.members) == 2
    # the members are the networks seeds 5 and 6 train alone
    for member, single in zip(pair.net.members, alone, strict=True):
        for k, v in member.state_dict().items():
            assert torch.allclose(v.float(), single.net.state_dict()[k].float(), atol=1e-5), k
    words, chars, feats, _, lengths, _ = _batch(pair.encoder.encode(notes[:6]))
    threads = torch.get_num_threads()
    with torch.no_grad():
        mean = (alone[0].net.emissions(words, chars, feats, lengths)
                + alone[1].net.emissions(words, chars, feats, lengths)) / 2  # fmt: skip
        assert torch.allclose(pair.net.emissions(words, chars, feats, lengths), mean, atol=1e-5)
        # each network over many batches in its own thread: the same means, batch by batch
        halves = [(words[:3], (chars[0], chars[1][:3]), feats[:3], lengths[:3]),
                  (words[3:], (chars[0], chars[1][3:]), feats[3:], lengths[3:])]  # fmt: skip
        torch.set_num_threads(2)  # each network gets one; the caller keeps its two
        try:
            assert torch.allclose(torch.cat(pair.net.batched(halves)), mean, atol=1e-5)
            assert torch.get_num_threads() == 2
        finally:
            torch.set_num_threads(threads)
    trans = (alone[0].net.crf.trans + alone[1].net.crf.trans) / 2
    assert torch.allclose(pair.net.crf.trans, trans, atol=1e-6)
    # one file holds both networks; loaded, it finds the same spans
    again = Tagger.load(pair.save(tmp_path / "pair.veil"))
    assert again.opts.networks == 2 and again.parameters() == pair.parameters()
    assert again.predict(notes[:6]) == pair.predict(notes[:6])
    with pytest.raises(ConfigError, match="networks"):
        Options(networks=0)
    with pytest.raises(ConfigError, match="ensemble"):
        train_dssgd(notes, lexicon, sites=2, rounds=1, opts=Options(**small, networks=2))


def test_side_by_side_keeps_order_and_a_failure_stops_the_rest():
    from veil.deid.tagger import side_by_side

    threads = torch.get_num_threads()
    assert side_by_side(lambda x: (x, torch.get_num_threads()), [3, 1, 2]) == [
        (x, max(1, threads // 3)) for x in (3, 1, 2)
    ]
    assert torch.get_num_threads() == threads
    stop, started = threading.Event(), time.perf_counter()

    def work(x):
        if x == "fail":
            raise ValueError("broken input")
        while not stop.is_set():  # a long training that checks stop
            if time.perf_counter() - started > 30:
                return "ran on"
            time.sleep(0.01)
        return "stopped"

    with pytest.raises(ValueError, match="broken input"):
        side_by_side(work, ["long", "fail"], stop)
    assert stop.is_set() and time.perf_counter() - started < 10
    # fewer workers than items: shares by workers; after a failure the rest never start
    assert (
        side_by_side(lambda x: torch.get_num_threads(), [1, 2, 3, 4], workers=2)
        == [max(1, threads // 2)] * 4
    )
    ran = []

    def record(x):
        ran.append(x)
        if x == 0:
            raise ValueError("first fails")

    with pytest.raises(ValueError, match="first fails"):
        side_by_side(record, [0, 1, 2], workers=1)
    assert ran == [0]


def test_an_ensemble_reports_each_epoch_once_with_its_networks_means():
    from veil.deid.tagger import EpochMeans, Options, Stopped, Tagger

    heard = []
    report = EpochMeans(2, lambda *a: heard.append(a))
    report(1, 2.0, 0.5)
    assert heard == []
    report(2, 1.0, None)
    report(1, 4.0, 0.7)
    assert heard == [(1, 3.0, pytest.approx(0.6))]
    report(2, 3.0, None)
    assert heard[1:] == [(2, 2.0, None)]

    notes, heard = synthetic_notes(12), []
    small = Options(epochs=3, hidden=8, word_dim=8, char_dim=8, char_filters=8, networks=2)
    Tagger.train(notes, Lexicon.empty(), small, dev=notes[:3], progress=lambda *a: heard.append(a))
    assert [e for e, _, _ in heard] == [1, 2, 3]
    assert all(loss > 0 and 0 <= f1 <= 1 for _, loss, f1 in heard)
    tagger = Tagger.train(notes, Lexicon.empty(), replace(small, networks=1, epochs=1))
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped):
        tagger.fit(tagger.encoder.encode(notes), stop=stop)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=6))
def test_the_unpacked_bilstm_equals_the_packed_one(lengths):
    from veil.deid.tagger import TaggerNet

    torch.manual_seed(len(lengths))
    lstm = torch.nn.LSTM(5, 4, batch_first=True, bidirectional=True)
    net = TaggerNet.__new__(TaggerNet)  # only its LSTM is used here
    torch.nn.Module.__init__(net)
    net.lstm = lstm
    x, n = torch.randn(len(lengths), 9, 5), torch.tensor(lengths)
    with torch.no_grad():
        want, got = net.lstm_packed(x, n), net.lstm_padded(x, n)
    assert torch.allclose(got, want, atol=1e-6)
    assert all(bool((got[i, k:] == 0).all()) for i, k in enumerate(lengths))


def test_inference_precision_follows_the_setting_and_the_cpu(monkeypatch):
    from veil.core.errors import ConfigError
    from veil.deid import tagger as tagger_module
    from veil.deid.tagger import inference_dtype

    monkeypatch.setenv("VEIL_DEID_PRECISION", "fp32")
    assert inference_dtype() == torch.float32
    assert inference_dtype("bf16") == torch.bfloat16  # an explicit choice wins over the setting
    monkeypatch.setenv("VEIL_DEID_PRECISION", " BF16 ")
    assert inference_dtype() == torch.bfloat16
    for amx, want in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(tagger_module, "amx_bf16", lambda amx=amx: amx)
        monkeypatch.delenv("VEIL_DEID_PRECISION", raising=False)
        assert inference_dtype() == want
        assert inference_dtype("auto") == want
    monkeypatch.setenv("VEIL_DEID_PRECISION", "fp16")
    with pytest.raises(ConfigError, match="VEIL_DEID_PRECISION.*'fp16'"):
        inference_dtype()


def test_a_tagger_in_bf16_scores_near_its_fp32_self_and_trains_in_fp32(tiny_tagger):
    from veil.deid.tagger import _batch

    notes, before = synthetic_notes(6, seed=5), tiny_tagger.precision
    tiny_tagger.precision = "fp32"
    assert tiny_tagger.precision == "fp32"
    exact = tiny_tagger.emissions(notes)
    with torch.enable_grad():  # training's path (packed, float32) whatever the precision
        words, chars, feats, _, lengths, _ = _batch([c for c, _ in exact])
        packed = tiny_tagger.net.emissions(words, chars, feats, lengths)
    tiny_tagger.precision = "bf16"
    assert tiny_tagger.precision == "bf16"
    rounded = tiny_tagger.emissions(notes)
    gaps = [np.abs(a - b).max() for (_, a), (_, b) in zip(exact, rounded, strict=True)]
    assert 0 < max(gaps) < 0.1  # bfloat16 was used, and it moved the scores little
    for i, (c, e) in enumerate(exact):
        assert np.allclose(packed[i, : len(c.toks)].detach().numpy(), e, atol=1e-5)
    assert rounded[0][1].dtype == np.float32
    tiny_tagger.precision = before
