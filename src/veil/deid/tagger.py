"""The PHI tagger: char-CNN + word BiLSTM-CRF over token features, unioned with the rules.

``Tagger.train(notes)`` fits the network on gold spans with a softmax-margin loss that
charges a missed PHI token ``Options.miss_cost`` (recall first, already in training);
``Tagger.spans(text)`` detects PHI. The recall knob ``o_bias`` is subtracted from the "O"
(not PHI) score of every token before Viterbi decoding: larger values trade precision for
recall. :meth:`Tagger.calibrate` picks, on held-out notes, the smallest bias that reaches a
target token recall, or the one with the most recall at a precision floor. With
``Options.networks`` > 1 a tagger is an :class:`Ensemble` of networks whose scores are averaged.

A tagger is saved as a veil model file (safetensors weights, JSON header; nothing pickled):
the header holds the vocabulary, the options and the bias; the lexicon travels as hashes.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from veil.core.errors import ConfigError, ModelFileError
from veil.deid import rules, subwords
from veil.deid.corpus import Note, Span
from veil.deid.crf import CRF
from veil.deid.encode import MAX_CHARS, TAGS, Encoded, Encoder, build_vocab, spans_from_tags
from veil.deid.lexicon import GROUPS, Lexicon

ARCH = "deid-tagger"


# Chosen on the bench split's dev patients (seed 0, 20 epochs): dev recall at precision
# >= 0.90 was 0.963 with the plain likelihood, 0.966 with cost 2 and 0.969 with cost 4, and
# precision at recall 0.963 0.892, 0.934 and 0.947: the trade curve moves, not only the point.
# With seed 1: recall at precision >= 0.90 0.951 plain, 0.963 with cost 4 (at >= 0.92: 0.940,
# 0.963). Cost 8 (seed 0) went back to 0.963 at precision >= 0.90; so did hidden 256 at cost 4.
MISS_COST = 4.0


@lru_cache(maxsize=8)
def miss_costs(miss: float) -> torch.Tensor | None:
    """The (K, K) softmax-margin costs: ``miss`` where the gold tag is PHI and the candidate
    "O", nothing elsewhere (None when ``miss`` is 0: the plain likelihood). Built once per
    value, not per batch; callers only read it."""
    if not miss:
        return None
    cost = torch.zeros(len(TAGS), len(TAGS))
    cost[1:, 0] = miss  # TAGS[0] is "O"
    return cost


# the values of ``o_bias`` (subtracted from every token's "O" score) that calibration tries
BIASES = tuple(float(b) for b in np.arange(-4, 8.01, 0.25))


@dataclass
class Options:
    """Sizes and training settings of a tagger."""

    word_dim: int = 64
    char_dim: int = 24
    char_filters: int = 48
    hidden: int = 128
    dropout: float = 0.3
    word_dropout: float = 0.05
    epochs: int = 10
    batch: int = 32
    lr: float = 2e-3
    seed: int = 0
    max_len: int = 120
    # softmax-margin cost, in the partition function, of tagging a PHI token "O" (a miss)
    miss_cost: float = MISS_COST
    # pretrained subword vectors as token features (veil.deid.subwords), and the chance that
    # training hides a token's vector (so the network keeps learning from the rest too)
    subwords: bool = True
    subword_dropout: float = 0.0
    # the subword vector enters the LSTM through a learnt projection to this many values
    # (the LSTM's cost grows with its input's width)
    subword_dim: int = 16
    # keep the mean of the weights of the last this many epochs (0: the epoch with the best
    # dev F1, or the last one without dev notes)
    average_last: int = 0
    # networks trained alike with seeds seed, seed + 1, ...; their CRF scores are averaged
    # (:class:`Ensemble`)
    networks: int = 1

    def __post_init__(self) -> None:
        if self.networks < 1:
            raise ConfigError(f"networks must be at least 1, got {self.networks}")
        if not self.miss_cost >= 0:  # a negative cost would reward misses; NaN is refused too
            raise ConfigError(
                f"miss_cost must be >= 0 (0: the plain likelihood), got {self.miss_cost}"
            )
        if not 0 <= self.subword_dropout < 1:
            raise ConfigError(f"subword_dropout must be in [0, 1), got {self.subword_dropout}")
        if not 0 <= self.average_last <= self.epochs:
            raise ConfigError(
                f"average_last must be between 0 and epochs ({self.epochs}), "
                f"got {self.average_last}"
            )


LSTM_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")

# What the BiLSTM runs in at inference (``VEIL_DEID_PRECISION``, :func:`inference_dtype`).
PRECISIONS = {"auto": None, "fp32": torch.float32, "bf16": torch.bfloat16}


def inference_dtype(precision: str | None = None) -> torch.dtype:
    """The dtype the BiLSTM runs in at inference: ``precision`` ("auto", "fp32" or "bf16"),
    else ``VEIL_DEID_PRECISION``, else "auto": bfloat16 where the CPU multiplies it in
    hardware (Intel AMX), float32 elsewhere (emulated bfloat16 is slower than float32).
    On AMX the LSTM takes about 2.6x less time in bfloat16; the emissions move by up to
    0.14, and the shipped tagger's spans on the 1,557 PhysioNet notes are the same at its
    bias and differ in at most one note at 27 of 33 biases from -2 to 6 (at most six notes
    at the others). Training always runs in float32 (:meth:`TaggerNet.lstm_packed`)."""
    value = (precision or os.environ.get("VEIL_DEID_PRECISION") or "auto").strip().lower()
    if value not in PRECISIONS:
        raise ConfigError(
            f"precision must be one of {', '.join(PRECISIONS)} (VEIL_DEID_PRECISION), got {value!r}"
        )
    if value == "auto":
        return torch.bfloat16 if amx_bf16() else torch.float32
    return PRECISIONS[value]


@lru_cache(maxsize=1)
def amx_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AMX), as torch reads it."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)  # torch 2.6 lacks it
    return bool(capabilities and capabilities().get("amx_bf16"))


class TaggerNet(nn.Module):
    """Emission scores per token from words, characters and features; a CRF on top."""

    # the dtype of the BiLSTM at inference (:meth:`lstm_padded`); set by :meth:`__init__`
    lstm_dtype: torch.dtype = torch.float32

    def __init__(
        self,
        n_words: int,
        n_features: int,
        opts: Options,
        lexicon: Lexicon,
        subword_width: int = 0,
    ):
        super().__init__()
        # the last ``subword_width`` features are a token's subword vector
        self.subword_width, self.subword_dropout = subword_width, opts.subword_dropout
        # the generator training draws dropout from (None: torch's global one); networks of an
        # ensemble train side by side in threads, and one global stream would mix their draws
        self.rng: torch.Generator | None = None
        self.lstm_dtype = inference_dtype()
        self.words = nn.Embedding(n_words + 2, opts.word_dim, padding_idx=0)
        self.chars = nn.Embedding(97, opts.char_dim, padding_idx=0)
        self.conv = nn.Conv1d(opts.char_dim, opts.char_filters, 3, padding=1)
        width = opts.word_dim + opts.char_filters + n_features
        if subword_width:
            self.subword_proj = nn.Linear(subword_width, opts.subword_dim)
            width += opts.subword_dim - subword_width
        self.lstm = nn.LSTM(width, opts.hidden, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(opts.dropout)
        self.out = nn.Linear(2 * opts.hidden, len(TAGS))
        self.crf = CRF(len(TAGS))
        for name in GROUPS:  # the lexicon travels in the state dict, as hashes
            self.register_buffer(f"lexicon_{name}", torch.from_numpy(lexicon.hashes[name]))

    def lexicon(self) -> Lexicon:
        return Lexicon({g: getattr(self, f"lexicon_{g}").numpy() for g in GROUPS})

    def emissions(self, words, chars, feats, lengths) -> torch.Tensor:
        """``chars`` is (spellings, index): each distinct spelling of the batch once (the
        char-CNN runs on those), and which spelling each token has."""
        spellings, index = chars
        if self.subword_width:
            feats, sub = feats[..., : -self.subword_width], feats[..., -self.subword_width :]
            if self.training and self.subword_dropout:
                keep = torch.rand(sub.shape[:2], generator=self.rng) >= self.subword_dropout
                sub = sub * keep.unsqueeze(-1)
            feats = torch.cat([feats, self.subword_proj(sub)], dim=2)
        ch = self.chars(spellings).transpose(1, 2)
        ch = torch.relu(self.conv(ch)).max(dim=2).values[index]
        x = self.dropout(torch.cat([self.words(words), ch, feats], dim=2))
        bilstm = self.lstm_packed if torch.is_grad_enabled() else self.lstm_padded
        return self.out(self.dropout(bilstm(x, lengths)))

    def lstm_packed(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The BiLSTM over right-padded ``x``, packed to ``lengths`` (training's run)."""
        packed = nn.utils.rnn.pack_padded_sequence(
            x, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        h, _ = self.lstm(packed)
        return nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=x.shape[1])[0]

    def lstm_padded(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The BiLSTM over right-padded ``x`` without packing it: the forward direction as it
        is, the reverse one over each row turned round within its length, zeros past the
        end, as the packed run gives them. Over a packed batch torch steps through time one
        matrix product at a time; padded, it takes its fused kernel: on 100 test notes,
        0.136 s instead of 0.150 s on one thread, 0.082 s instead of 0.114 s on two. The
        outputs agree to about 1e-5 (float sums in another order); the shipped tagger's spans
        are the same on all 1,557 PhysioNet notes at every bias from -2 to 6 in steps of
        0.25. For inference: training (grad enabled) keeps :meth:`lstm_packed`. Runs in
        ``self.lstm_dtype`` (:func:`inference_dtype`)."""
        b, t = x.shape[:2]
        steps = torch.arange(t)
        inside = steps[None, :] < lengths[:, None]
        turned = torch.where(inside, lengths[:, None] - 1 - steps, steps)
        rows = (turned + t * torch.arange(b)[:, None]).reshape(-1)

        def turn(v: torch.Tensor) -> torch.Tensor:  # row i's step j <- its step turned[i, j]
            return v.reshape(b * t, -1).index_select(0, rows).reshape(b, t, -1)

        h = torch.cat([self._direction(x, ""), turn(self._direction(turn(x), "_reverse"))], 2)
        return h * inside[..., None]

    def _direction(self, x: torch.Tensor, suffix: str) -> torch.Tensor:
        """One direction of ``self.lstm`` (``suffix`` "" or "_reverse") over padded ``x``,
        in ``self.lstm_dtype``; the output in float32."""
        dtype = self.lstm_dtype
        weights = [getattr(self.lstm, f"{w}_l0{suffix}").to(dtype) for w in LSTM_WEIGHTS]
        x = x.to(dtype)
        zero = x.new_zeros(1, x.shape[0], self.lstm.hidden_size)
        out = torch._VF.lstm(x, (zero, zero), weights, True, 1, 0.0, False, False, True)[0]
        return out.float()

    def dropout(self, x: torch.Tensor) -> torch.Tensor:
        """``self.drop``, drawing from ``self.rng`` when it is set (the same draws as
        ``nn.Dropout`` makes from a global generator in that state)."""
        p = self.drop.p
        if self.rng is None or not self.training or p == 0:
            return self.drop(x)
        return x * torch.empty_like(x).bernoulli_(1 - p, generator=self.rng).div_(1 - p)

    def batched(self, batches: list[tuple]) -> list[torch.Tensor]:
        """:meth:`emissions` of each ``(words, chars, feats, lengths)`` batch."""
        return [self.emissions(*b) for b in batches]


class Ensemble(nn.Module):
    """Networks whose CRF scores are averaged: a tag path scores the mean of its scores under
    each network (mean emissions, mean start, end and transition scores). Seeds of one recipe
    differ most in the last PHI tokens they find; the mean of two keeps what either is sure
    of. The networks run side by side in threads (torch releases the GIL): :meth:`batched`."""

    def __init__(self, members: list[TaggerNet]):
        super().__init__()
        self.members = nn.ModuleList(members)
        for m in members[1:]:  # one copy of the lists in a file: the first network's
            for g in GROUPS:
                m.register_buffer(f"lexicon_{g}", getattr(members[0], f"lexicon_{g}"), False)

    def lexicon(self) -> Lexicon:
        return self.members[0].lexicon()

    @property
    def crf(self) -> CRF:
        """A CRF with the members' mean start, end and transition scores (to decode with)."""
        crf = CRF(len(TAGS))
        with torch.no_grad():
            for name in ("start", "end", "trans"):
                mean = torch.stack([getattr(m.crf, name) for m in self.members]).mean(0)
                getattr(crf, name).copy_(mean)
        return crf

    def emissions(self, words, chars, feats, lengths) -> torch.Tensor:
        return self.batched([(words, chars, feats, lengths)])[0]

    def batched(self, batches: list[tuple]) -> list[torch.Tensor]:
        """The mean emissions of each batch; each network runs over all batches in its own
        thread, with its share of torch's threads (with all of them each, the networks fought
        for the cores: a pair took 0.155 s on 100 notes on two cores; with one thread each and
        a thread per batch 0.120-0.130 s; per network over all batches 0.110 s; one network
        0.085 s)."""
        grad = torch.is_grad_enabled()  # grad mode is per thread: the workers take the caller's

        def one(member: TaggerNet) -> list[torch.Tensor]:
            with torch.set_grad_enabled(grad):
                return member.batched(batches)

        each = side_by_side(one, list(self.members))
        return [torch.stack(ems).mean(0) for ems in zip(*each, strict=True)]


def side_by_side(
    work: Callable, items: list, stop: threading.Event | None = None, workers: int | None = None
) -> list:
    """``work(item)`` for each item in ``workers`` threads (default: one per item), each with
    its share of torch's threads (torch's kernels release the GIL); the results in order. The
    caller's thread count is restored. ``stop`` is set when the caller is interrupted or a
    worker fails, for work that checks it; items not yet started are dropped, and the pool
    waits for its threads before it returns."""
    threads = torch.get_num_threads()
    workers = min(len(items), workers or len(items))
    share = max(1, threads // workers)

    def one(item):
        torch.set_num_threads(share)
        return work(item)

    pool = ThreadPoolExecutor(workers)
    try:
        futures = [pool.submit(one, item) for item in items]
        wait(futures, return_when=FIRST_EXCEPTION)  # a failure stops the rest at once
        for f in futures:
            if f.done() and f.exception() is not None:
                raise f.exception()
        return [f.result() for f in futures]
    except BaseException:
        if stop is not None:
            stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        # OpenMP's count is per thread, but a BLAS may hold one for the whole process
        torch.set_num_threads(threads)


class Stopped(Exception):
    """Training stopped because the work beside it failed or was interrupted."""


class EpochMeans:
    """``progress(epoch, loss, dev_f1)`` once per epoch for networks training side by side,
    when all have finished it: their mean loss and mean dev F1 (the members', not the
    ensemble's)."""

    def __init__(self, n: int, progress: Callable):
        self.n, self.progress, self.seen, self.lock = n, progress, {}, threading.Lock()

    def __call__(self, epoch: int, loss: float, f1: float | None) -> None:
        with self.lock:
            rows = self.seen.setdefault(epoch, [])
            rows.append((loss, f1))
            if len(rows) == self.n:
                del self.seen[epoch]
                f1s = [f for _, f in rows if f is not None]
                mean_f1 = float(np.mean(f1s)) if f1s else None
                self.progress(epoch, float(np.mean([x for x, _ in rows])), mean_f1)


def encoder_net(encoder: Encoder, opts: Options) -> TaggerNet | Ensemble:
    """A new network (or ``opts.networks`` of them) for the inputs ``encoder`` gives."""
    nets = [
        TaggerNet(
            len(encoder.vocab), encoder.n_features, opts, encoder.lexicon, encoder.subword_width
        )
        for _ in range(opts.networks)
    ]
    return nets[0] if opts.networks == 1 else Ensemble(nets)


def seeded_net(encoder: Encoder, opts: Options) -> TaggerNet:
    """A new network initialised from ``opts.seed``, which draws its dropout from a generator
    of its own that continues the same stream."""
    torch.manual_seed(opts.seed)
    net = encoder_net(encoder, opts)
    net.rng = torch.Generator()
    net.rng.set_state(torch.get_rng_state())
    return net


def make_encoder(vocab: list[str], lexicon: Lexicon, opts: Options) -> Encoder:
    """The encoder a tagger with ``opts`` reads notes through (with the subword table if the
    options ask for it)."""
    return Encoder(vocab, lexicon, opts.max_len, subwords.load() if opts.subwords else None)


def _batch(chunks: list[Encoded], word_dropout: float = 0.0, rng=None):
    n, t = len(chunks), max(len(c.toks) for c in chunks)
    words = np.zeros((n, t), dtype=np.int64)
    chars = np.zeros((n, t, MAX_CHARS), dtype=np.int64)
    feats = np.zeros((n, t, chunks[0].feats.shape[1]), dtype=np.float32)
    tags = np.zeros((n, t), dtype=np.int64)
    for i, c in enumerate(chunks):
        k = len(c.toks)
        words[i, :k], chars[i, :k], feats[i, :k], tags[i, :k] = c.words, c.chars, c.feats, c.tags
    if word_dropout and rng is not None:
        words[(rng.random(words.shape) < word_dropout) & (words > 1)] = 1
    lengths = torch.tensor([len(c.toks) for c in chunks])
    mask = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)
    as_t = torch.from_numpy
    rows = np.ascontiguousarray(chars.reshape(n * t, MAX_CHARS))
    _, first, index = np.unique(
        rows.view(np.dtype((np.void, rows.itemsize * MAX_CHARS))).ravel(),
        return_index=True,
        return_inverse=True,
    )
    chars = (as_t(rows[first]), as_t(index.reshape(n, t)))
    return as_t(words), chars, as_t(feats), as_t(tags), lengths, mask


def _running_mean(mean: dict | None, state: dict, n: int) -> dict:
    """The mean of ``n`` earlier state dicts (``mean``) and ``state``; tensors that are not
    weights (the lexicon's hashes) are kept as they are."""
    if mean is None:
        return {k: v.detach().clone() for k, v in state.items()}
    return {
        k: mean[k] + (v - mean[k]) / (n + 1) if v.is_floating_point() else v
        for k, v in state.items()
    }


class Tagger:
    """A trained PHI tagger (network, vocabulary, options and recall bias)."""

    def __init__(
        self,
        net: TaggerNet,
        encoder: Encoder,
        opts: Options,
        o_bias: float = 0.0,
        info: dict | None = None,
    ):
        self.net, self.encoder, self.opts = net.eval(), encoder, opts
        self.o_bias = float(o_bias)
        self.info = dict(info or {})

    # -- training ------------------------------------------------------------------------
    @classmethod
    def train(
        cls,
        notes: list[Note],
        lexicon: Lexicon,
        opts: Options | None = None,
        dev: list[Note] | None = None,
        progress=None,
        stop: threading.Event | None = None,
    ) -> Tagger:
        """Fit a tagger on ``notes``; with ``dev``, keep the epoch with the best dev token F1.
        With ``opts.networks`` > 1, that many networks (seeds ``opts.seed``, ``opts.seed + 1``,
        ...) train side by side in threads, each with its own dropout generator, and tag as an
        :class:`Ensemble`; each is the network its seed trains alone. ``progress`` then hears
        the networks' mean loss and dev F1 once per epoch. Setting ``stop`` (from another
        thread) stops the training with :class:`Stopped`."""
        opts = opts or Options()
        encoder = make_encoder(build_vocab(notes), lexicon, opts)
        chunks = encoder.encode(notes)
        one = [replace(opts, networks=1, seed=opts.seed + i) for i in range(opts.networks)]
        taggers = [cls(seeded_net(encoder, o), encoder, o) for o in one]
        if opts.networks == 1:
            taggers[0].fit(chunks, dev, progress, stop)
            return taggers[0]
        stop, report = stop or threading.Event(), progress and EpochMeans(len(taggers), progress)
        side_by_side(lambda t: t.fit(chunks, dev, report, stop), taggers, stop)
        info = {"epochs": opts.epochs, "train_s": max(t.info["train_s"] for t in taggers)}
        return cls(Ensemble([t.net for t in taggers]), encoder, opts, info=info)

    def fit(
        self,
        chunks: list[Encoded],
        dev: list[Note] | None = None,
        progress=None,
        stop: threading.Event | None = None,
    ) -> None:
        """Train the network for ``opts.epochs`` epochs on encoded chunks, keeping the epoch
        with the best token F1 on ``dev`` (without ``dev``, the last epoch) or, with
        ``opts.average_last``, the mean weights of that many last epochs (then the dev notes
        choose nothing and stay unbiased for calibration). Raises :class:`Stopped` at the
        next batch once ``stop`` is set."""
        opts, net = self.opts, self.net
        rng = np.random.default_rng(opts.seed)
        optim = torch.optim.Adam(net.parameters(), lr=opts.lr)
        best, best_state, started = -1.0, None, time.perf_counter()
        mean, averaged = None, 0
        # dev F1 picks the epoch, or only shows progress when the weights are averaged
        scored = bool(dev) and (progress is not None or not opts.average_last)
        for epoch in range(opts.epochs):
            loss = self.epoch(chunks, optim, rng, stop)
            if opts.epochs - epoch <= opts.average_last:
                mean, averaged = _running_mean(mean, net.state_dict(), averaged), averaged + 1
            score = self.token_f1(dev) if scored else epoch  # no dev: keep the last epoch
            if score > best and not opts.average_last:  # averaging keeps no best epoch
                best, best_state = score, {k: v.clone() for k, v in net.state_dict().items()}
            if progress:
                progress(epoch + 1, loss, score if dev else None)
        net.load_state_dict(mean if mean is not None else best_state)
        self.info.update(epochs=opts.epochs, train_s=round(time.perf_counter() - started, 1))

    def epoch(
        self, chunks: list[Encoded], optim, rng, stop: threading.Event | None = None
    ) -> float:
        """One pass over ``chunks`` in a random order; the mean loss."""
        net, batch = self.net.train(), self.opts.batch
        order, total = rng.permutation(len(chunks)), 0.0
        for i in range(0, len(order), batch):
            if stop is not None and stop.is_set():
                raise Stopped("stopped: the training beside this one failed or was interrupted")
            loss = self.loss([chunks[j] for j in order[i : i + batch]], rng)
            optim.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            optim.step()
            total += float(loss.detach()) * len(order[i : i + batch])
        net.eval()
        return total / len(chunks)

    def loss(self, chunks: list[Encoded], rng=None) -> torch.Tensor:
        """The CRF's loss on a batch of chunks: softmax-margin with ``opts.miss_cost`` (the
        plain negative log-likelihood when it is 0)."""
        words, chars, feats, tags, lengths, mask = _batch(chunks, self.opts.word_dropout, rng)
        em = self.net.emissions(words, chars, feats, lengths)
        return self.net.crf.nll(em, tags, mask, miss_costs(self.opts.miss_cost))

    def token_f1(self, notes: list[Note]) -> float:
        from veil.deid.evaluate import token_scores

        return token_scores(notes, self.predict(notes))["f1"]

    # -- prediction ----------------------------------------------------------------------
    @torch.no_grad()
    def emissions(
        self, notes: list[Note], rule_spans: list[list[Span]] | None = None
    ) -> list[tuple[Encoded, np.ndarray]]:
        """Each chunk of ``notes`` with its emission scores (before the bias), shortest
        chunks first."""
        chunks = self.encoder.encode(notes, gold=False, rule_spans=rule_spans)
        # batches of chunks of about the same length: less padding for the LSTM to run over
        chunks.sort(key=lambda c: len(c.toks))
        parts = [chunks[i : i + 64] for i in range(0, len(chunks), 64)]
        out = []
        for g in range(0, len(parts), 16):  # 1,024 chunks' inputs at a time at most
            group = parts[g : g + 16]
            batches = [(w, c, f, n) for w, c, f, _, n, _ in map(_batch, group)]
            for part, em in zip(group, self.net.batched(batches), strict=True):
                em = em.numpy()
                out.extend((c, em[j, : len(c.toks)]) for j, c in enumerate(part))
        return out

    @torch.no_grad()
    def decode(
        self, scored: list[tuple[Encoded, np.ndarray]], n_notes: int, o_bias: float | None = None
    ) -> list[list[Span]]:
        """Spans per note (unsorted) from scored chunks, with the recall bias applied."""
        bias = self.o_bias if o_bias is None else o_bias
        found: list[list[Span]] = [[] for _ in range(n_notes)]
        # Viterbi steps one token of every chunk at a time: the fewer batches, the fewer steps
        for i in range(0, len(scored), 512):
            part = scored[i : i + 512]
            t = max(len(c.toks) for c, _ in part)
            em = torch.full((len(part), t, len(TAGS)), 0.0)
            for j, (c, e) in enumerate(part):
                em[j, : len(c.toks)] = torch.from_numpy(e)
            em[:, :, 0] -= bias
            lengths = torch.tensor([len(c.toks) for c, _ in part])
            mask = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)
            for (c, _), path in zip(part, self.net.crf.decode(em, mask), strict=True):
                found[c.note].extend(spans_from_tags(c.toks, path))
        return found

    def predict(
        self, notes: list[Note], o_bias: float | None = None, use_rules: bool = True
    ) -> list[list[Span]]:
        """PHI spans of each note: the network's, unioned with the rules' (merged, sorted)."""
        by_rules = [rules.spans(n.text) for n in notes]
        found = self.decode(self.emissions(notes, by_rules), len(notes), o_bias)
        return [
            self.finish(n.text, f, r if use_rules else [])
            for n, f, r in zip(notes, found, by_rules, strict=True)
        ]

    @staticmethod
    def finish(text: str, found: list[Span], by_rules: list[Span]) -> list[Span]:
        """The network's spans and the rules' names, names extended over the initials
        before them and drawn with the annotators' edges (:func:`veil.deid.rules.tidy`),
        unioned with the rules' other spans as found."""
        names = [s for s in by_rules if s.label.startswith("NAME-")]
        others = [s for s in by_rules if not s.label.startswith("NAME-")]
        found = rules.with_initials(text, [*found, *names])
        return rules.merge([*rules.tidy(text, found), *others])

    def spans(self, text: str) -> list[Span]:
        """PHI spans of one text."""
        return self.predict([Note("-", "-", text)])[0]

    def sweep(self, notes: list[Note], biases, confidence: float | None = None) -> Iterator[dict]:
        """Token scores on notes with gold spans at each bias in turn (the network runs once);
        with ``confidence``, also the precision bound held with it
        (:func:`~veil.deid.evaluate.precision_bound`)."""
        for bias, counts in self.sweep_counts(notes, biases):
            yield _point(bias, counts, confidence)

    def sweep_counts(self, notes: list[Note], biases) -> Iterator[tuple[float, np.ndarray]]:
        """Each bias with its token counts per note (:func:`veil.deid.evaluate.token_counts`)."""
        from veil.deid.evaluate import token_counts

        by_rules = [rules.spans(n.text) for n in notes]
        scored = self.emissions(notes, by_rules)
        for bias in biases:
            found = self.decode(scored, len(notes), float(bias))
            found = [
                self.finish(n.text, f, r) for n, f, r in zip(notes, found, by_rules, strict=True)
            ]
            yield float(bias), token_counts(notes, found)

    def calibrate(
        self,
        dev: list[Note],
        target_recall: float = 0.97,
        grid: tuple[float, ...] = BIASES,
        min_precision: float | None = None,
        confidence: float | None = None,
        pooled: np.ndarray | None = None,
    ) -> dict:
        """Set ``o_bias`` from notes with gold spans; return the chosen point's scores.

        By default the smallest bias whose dev token recall reaches ``target_recall`` (if none
        does, the bias with the highest recall). With ``min_precision``, instead the bias with
        the highest dev recall among those whose dev precision is at least ``min_precision``
        (ties: the higher precision; if none, the bias with the highest precision). With
        ``confidence`` too (say 0.9), the precision that must reach ``min_precision`` is not
        the dev notes' own but a lower bound held with that confidence when the notes are
        resampled (:func:`~veil.deid.evaluate.precision_bound`): a dev split is a few
        hundred PHI tokens, its precision moves by 0.02-0.05 from one set of patients to the
        next, and the highest-recall bias is the one that leans on it most. ``pooled``: token
        counts of more notes at each bias of ``grid`` (shape (biases, notes, 3)), scored by
        taggers that did not train on them (:func:`veil.deid.train.held_out_counts`); they
        count as dev notes. The grid goes below 0 because a tagger trained with a miss cost
        may pass the target there.
        """
        grid = sorted(grid)
        if min_precision is None and confidence is not None:
            raise ValueError("confidence bounds the precision: give min_precision too")
        swept = self.sweep_counts(dev, grid)
        if pooled is not None:
            if len(pooled) != len(grid):
                raise ValueError(
                    f"pooled counts for {len(pooled)} biases, the grid has {len(grid)}"
                )
            swept = (
                (b, np.concatenate([c, more])) for (b, c), more in zip(swept, pooled, strict=True)
            )
        best = pick_bias(swept, target_recall, min_precision, confidence)
        if min_precision is None:
            goal = {"target_recall": target_recall}
        else:
            goal = {"min_precision": min_precision}
        if confidence is not None:
            goal["confidence"] = confidence
        if pooled is not None:
            goal["pooled_notes"] = int(pooled.shape[1])
        self.o_bias = best["o_bias"]
        self.info["calibration"] = {**goal, **best}
        return best

    # -- files ---------------------------------------------------------------------------
    def save(self, path: str | Path, force: bool = False) -> Path:
        """Write the tagger as a veil model file (the architecture is ``deid-tagger``)."""
        from veil.core.io import save_model
        from veil.core.models import ModelSpec

        spec = ModelSpec(ARCH, (), len(TAGS), asdict(self.opts))
        extra = {"vocab": self.encoder.vocab, "o_bias": self.o_bias, "info": self.info}
        if self.encoder.subwords:
            extra["subwords"] = self.encoder.subwords.digest
        return save_model(path, self.net, spec, classes=list(TAGS), extra=extra, force=force)

    @classmethod
    def load(cls, path: str | Path) -> Tagger:
        """Read a tagger written by :meth:`save`; any other file is refused."""
        from safetensors import SafetensorError
        from safetensors.torch import load

        from veil.core.io import read_header

        header = read_header(path)
        spec = header.get("model", {})
        if spec.get("name") != ARCH:
            raise ModelFileError(
                f"{path} is a veil model file but not a PHI tagger ({spec.get('name')})"
            )
        try:
            # files from before an option was trained without it
            opts = Options(**{"miss_cost": 0.0, "subwords": False, **spec["options"]})
            extra = header["extra"]
            vocab, o_bias = list(extra["vocab"]), float(extra["o_bias"])
            state = load(Path(path).read_bytes())
        except (KeyError, TypeError, ValueError, SafetensorError) as e:
            raise ModelFileError(f"{path}: malformed PHI tagger ({e})") from e
        first = "members.0." if opts.networks > 1 else ""  # an ensemble's lists: its first's
        lexicon = Lexicon(
            {
                g: state[f"{first}lexicon_{g}"].numpy()
                for g in GROUPS
                if f"{first}lexicon_{g}" in state
            }
        )
        if len(lexicon) != len(GROUPS):
            raise ModelFileError(f"{path}: PHI tagger without its lexicon")
        encoder = make_encoder(vocab, lexicon, opts)
        if extra.get("subwords") != (encoder.subwords.digest if encoder.subwords else None):
            raise ModelFileError(
                f"{path}: trained with another subword table than this veil's; retrain it"
            )
        net = encoder_net(encoder, opts)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ModelFileError(f"{path}: weights do not fit the tagger ({e})") from e
        return cls(net, encoder, opts, o_bias, extra.get("info"))

    def parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    @property
    def precision(self) -> str:
        """What the BiLSTM runs in at inference: "fp32" or "bf16"."""
        net = next(m for m in self.net.modules() if isinstance(m, TaggerNet))
        return next(name for name, dtype in PRECISIONS.items() if dtype == net.lstm_dtype)

    @precision.setter
    def precision(self, precision: str) -> None:
        """Run the BiLSTM at inference in ``precision`` ("auto", "fp32" or "bf16")."""
        dtype = inference_dtype(precision)
        for m in self.net.modules():
            if isinstance(m, TaggerNet):
                m.lstm_dtype = dtype


def pick_bias(swept, target_recall: float = 0.97, min_precision=None, confidence=None) -> dict:
    """The point :meth:`Tagger.calibrate` chooses (its rules) from ``(bias, counts)`` pairs in
    increasing bias, ``counts`` per note (:func:`veil.deid.evaluate.token_counts`): for
    reading another rule off kept counts without a tagger."""
    points = [_point(b, c, confidence) for b, c in swept]
    return _choose(points, target_recall, min_precision, confidence is not None)


def _point(bias: float, counts: np.ndarray, confidence: float | None) -> dict:
    """Token scores of per-note counts at one bias, with the precision bound when asked."""
    from veil.deid.evaluate import precision_bound, scores

    point = {"o_bias": float(bias), **scores(counts)}
    if confidence is not None:
        point["precision_bound"] = precision_bound(counts, confidence)
    return point


def _choose(points: list[dict], target_recall, min_precision, bounded: bool) -> dict:
    """The point :meth:`Tagger.calibrate` picks from a sweep in increasing bias."""
    if min_precision is None:
        return next((q for q in points if q["recall"] >= target_recall),
                    max(points, key=lambda q: q["recall"]))  # fmt: skip
    held = "precision_bound" if bounded else "precision"
    ok = [q for q in points if q[held] >= min_precision]
    if not ok:
        return max(points, key=lambda q: q[held])
    return max(ok, key=lambda q: (q["recall"], q["precision"]))
