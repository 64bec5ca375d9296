"""Protocols on additive shares over Z_2^64 for two or three parties, with a trusted dealer.

Threat model: two (or three) semi-honest computing parties of which none colludes with
another, and a dealer that hands out correlated randomness (Beaver triples, AND triples,
shared random bits) and colludes with none. A party's shares are uniform whatever the
secret; what the parties open is always masked by dealer randomness. A third party adds a
data owner, not collusion resistance: party 1 learns party 2's shares at each truncation
(see below), so parties 0 and 1 together could rebuild values. Written for one party
(``Party``), run by every party and the dealer in step (:func:`serve_dealer`).

- multiplication and matmul: Beaver triples, one round;
- truncation after a fixed-point product: the probabilistic local rule of SecureML
  (Mohassel & Zhang 2017): off by one unit in the last place, wrong with probability about
  |x| / 2^63. It holds for two shares only, so with three parties party 2 first hands its
  share to party 1 (party 1 then holds x - x0, uniform to it), parties 0 and 1 truncate,
  and party 1 splits its result again with a stream it shares with party 2: one message;
- comparison: the sign bit of x = x0 + x1 (+ x2) by a Kogge-Stone adder over the bits of
  the shares (XOR-shared words, AND gates with dealer triples; three words are first
  reduced to two by a carry-save adder, one more AND round), 7 rounds on 64-bit words or 6
  on the low 32 bits (exact while |x| < 2^31 units); then one round applies the bit: a
  dealer multiplexer (random bit r, mask a, a·r) opens s XOR r and y - a together and gives
  s·y and s locally, so ReLU(x) = x - s·x and max(a, b) = a + s·(b - a).

Party 0 asks the dealer ahead (a comparison's triples in one request) and reads replies in
the order asked, so the dealer's work overlaps the parties' rounds. A model's weight
matrices are masked once per session (:meth:`Party.fix_weight`: W - B opened once, each
query's triple reusing B with a fresh A), so a query opens only its activations.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass

import torch

from veil.encrypted.mpc.comm import Comm
from veil.encrypted.mpc.ring import FRAC_BITS, PRG, MPCError

MUL, MATMUL, AND, BIT, MUX, WEIGHT, FIXED, FIXED_OWNED, STOP = 1, 2, 3, 4, 6, 7, 8, 9, 0
FIXED_KINDS = (FIXED, FIXED_OWNED)  # b_shape carries (slot, columns) of a registered weight
HEADER = 12


def _header(kind: int, a: tuple, b: tuple = (), count: int = 1) -> torch.Tensor:
    h = torch.zeros(HEADER, dtype=torch.int64)
    values = [kind, count, len(a), *a, len(b), *b]
    if len(values) > HEADER:
        raise MPCError(f"tensor shapes {a} {b} have too many dimensions for a dealer request")
    h[: len(values)] = torch.tensor(values)
    return h


def _parse(h: torch.Tensor) -> tuple[int, int, tuple, tuple]:
    v = h.tolist()
    na = v[2]
    a = tuple(v[3 : 3 + na])
    nb = v[3 + na]
    return v[0], v[1], a, tuple(v[4 + na : 4 + na + nb])


def _product(kind: int, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if kind == MUL:
        return a * b
    if kind == MATMUL:
        return a @ b
    return a & b


def _item_shape(kind: int, a: tuple, b: tuple) -> tuple:
    """The shape of the dealer's correction for one item of ``kind``."""
    if kind == BIT:
        return a
    if kind == MUX:
        return (2, *a)
    if kind == WEIGHT:
        return (1,)
    if kind in FIXED_KINDS:
        return (*a[:-1], b[1])
    return _result_shape(kind, a, b)


def _result_shape(kind: int, a: tuple, b: tuple) -> tuple:
    return (*a[:-1], b[-1]) if kind == MATMUL else a


def _send_seed(comm: Comm, to: int) -> PRG:
    """A fresh PRG whose seed ``to`` also gets: both then draw the same stream."""
    prg = PRG()
    comm.send(to, torch.frombuffer(bytearray(prg.seed), dtype=torch.int64))
    return prg


def _recv_seed(comm: Comm, frm: int) -> PRG:
    return PRG(comm.recv(frm, (4,)).numpy().tobytes())


def setup_seeds(comm: Comm) -> PRG | list[PRG]:
    """The dealer sends each party a fresh PRG seed; returns the party's PRG (or, for the
    dealer, every party's)."""
    if comm.rank == comm.dealer:
        return [_send_seed(comm, p) for p in range(comm.parties)]
    return _recv_seed(comm, comm.dealer)


def serve_dealer(comm: Comm, prgs: list[PRG]) -> int:
    """The dealer's loop: answer party 0's requests until it says stop; returns how many.

    A request asks for ``count`` items of one kind and shape; they go back as one message.
    Replies go out without waiting for party 0 to take them: party 0 asks ahead (a ReLU's
    whole adder at once) and reads replies when it needs them, and a blocking send here
    would wait for a read that waits for this loop.
    """
    served, pending, weights = 0, _InFlight(), []
    while True:
        kind, count, a_shape, b_shape = _parse(comm.recv(0, (HEADER,)))
        if kind == STOP:
            pending.finish()
            return served
        served += count
        reply = torch.stack([_deal(kind, prgs, a_shape, b_shape, weights) for _ in range(count)])
        pending.add(comm.send(0, reply, wait=False), reply)


def _deal(kind: int, prgs: list[PRG], a_shape: tuple, b_shape: tuple, weights: list):
    """Party 0's part of one item; the parties draw theirs from the streams in this order.
    ``weights``: the session's registered weight masks B, by slot (WEIGHT adds one)."""
    if kind == WEIGHT:
        weights.append(sum(prg.int64(b_shape) for prg in prgs))
        return torch.zeros(1, dtype=torch.int64)
    if kind in FIXED_KINDS:  # a fresh mask a, and a·B for the registered B
        slot, columns = b_shape
        a = sum(prg.int64(a_shape) for prg in (prgs[1:2] if kind == FIXED_OWNED else prgs))
        c_rest = [prg.int64((*a_shape[:-1], columns)) for prg in prgs[1:]]
        return a @ weights[slot] - sum(c_rest)
    if kind == BIT:
        bits = [prg.bits(a_shape) for prg in prgs]
        arith = [prg.int64(a_shape) for prg in prgs[1:]]
        return _xor(bits) - sum(arith)
    if kind == MUX:  # a random bit r (XOR shares), a mask a; then r and a·r, added shares
        bits = [prg.bits(a_shape) for prg in prgs]
        a = [prg.int64(a_shape) for prg in prgs]
        rest = [prg.int64((2, *a_shape)) for prg in prgs[1:]]
        r = _xor(bits)
        return torch.stack([r - sum(t[0] for t in rest), sum(a) * r - sum(t[1] for t in rest)])
    a = [prg.int64(a_shape) for prg in prgs]
    b = [prg.int64(b_shape) for prg in prgs]
    c_rest = [prg.int64(_result_shape(kind, a_shape, b_shape)) for prg in prgs[1:]]
    if kind == AND:
        return _xor([_product(kind, _xor(a), _xor(b)), *c_rest])
    return _product(kind, sum(a), sum(b)) - sum(c_rest)


def _xor(ts: list[torch.Tensor]) -> torch.Tensor:
    out = ts[0]
    for t in ts[1:]:
        out = out ^ t
    return out


@dataclass
class Weight:
    """A weight matrix masked once per session: its slot at the dealer, this party's share
    of the mask B, and the opened W - B."""

    slot: int
    b: torch.Tensor
    opened: torch.Tensor

    @property
    def columns(self) -> int:
        return int(self.opened.shape[-1])


class _InFlight:
    """Sends started without waiting, kept (with their tensors) until done. A gloo send
    reports completion only when waited on, so the oldest is waited for once more than
    ``limit`` are out: the list stays short over a long session."""

    def __init__(self, limit: int = 16):
        self.limit, self.sends = limit, collections.deque()

    def add(self, handle, tensor: torch.Tensor) -> None:
        self.sends.append((handle, tensor))
        while len(self.sends) > self.limit:
            self.sends.popleft()[0].wait()

    def finish(self) -> None:
        while self.sends:
            self.sends.popleft()[0].wait()


class _Replies:
    """Party 0's requests to the dealer and their replies, read in the order asked: a reply
    asked for early (prefetched) may be needed after one asked for later. A reply is kept
    only until its asker first reads it."""

    def __init__(self, comm: Comm):
        self.comm, self.sends = comm, _InFlight()
        self.shapes: dict[int, tuple] = {}
        self.got: dict[int, torch.Tensor] = {}
        self.asked = self.read = 0

    def ask(self, header: torch.Tensor, shape: tuple):
        """Send a request without waiting; a function returning its reply when called."""
        self.sends.add(self.comm.send(self.comm.dealer, header, wait=False), header)
        slot, self.asked = self.asked, self.asked + 1
        self.shapes[slot] = shape
        kept: list[torch.Tensor] = []

        def reply() -> torch.Tensor:
            if not kept:
                kept.append(self._get(slot))
            return kept[0]

        return reply

    def _get(self, slot: int) -> torch.Tensor:
        while self.read <= slot:
            self.got[self.read] = self.comm.recv(self.comm.dealer, self.shapes.pop(self.read))
            self.read += 1
        return self.got.pop(slot)

    def close(self) -> None:
        self.sends.finish()


class Party:
    """One computing party: its comm end, its PRG shared with the dealer, fixed-point bits."""

    def __init__(self, comm: Comm, prg: PRG, frac: int = FRAC_BITS, compare_bits: int = 64):
        if comm.parties not in (2, 3):
            raise MPCError("these protocols are for two or three computing parties")
        if compare_bits not in (32, 64):
            raise MPCError(f"comparisons run on 32 or 64 bits, not {compare_bits}")
        self.compare_bits = compare_bits
        self.comm, self.prg, self.frac = comm, prg, frac
        self.rank, self.parties = comm.rank, comm.parties
        self.others = [q for q in range(self.parties) if q != self.rank]
        self.pair = self._pair_stream() if self.parties == 3 else None
        self.replies = _Replies(comm) if self.rank == 0 else None
        self.ready: dict[tuple, list] = {}  # prefetched dealer items, by kind and shapes
        self.weights = 0  # weight masks registered with the dealer (fix_weight)

    # -- dealer randomness ----------------------------------------------------------------

    def prefetch(self, kind: int, a_shape: tuple, b_shape: tuple = (), count: int = 1) -> None:
        """Ask the dealer now for ``count`` items (triples, random bits, multiplexers) that
        the protocol will use later, in one message: the dealer's work and the reply's trip
        then overlap the parties' rounds instead of waiting between them."""
        key = (kind, tuple(a_shape), tuple(b_shape))
        self.ready.setdefault(key, []).extend(self._draw(kind, key[1], key[2], count))

    def _draw(self, kind: int, a_shape: tuple, b_shape: tuple, count: int) -> list:
        """``count`` items: this party's parts drawn now (in the dealer's order), party 0's
        corrections as functions reading the dealer's one reply when first called."""
        out_shape = _item_shape(kind, a_shape, b_shape)
        items = []
        for _ in range(count):
            if kind == BIT:
                mine = [self.prg.bits(a_shape)]
            elif kind == MUX:
                mine = [self.prg.bits(a_shape), self.prg.int64(a_shape)]
            elif kind == WEIGHT:
                mine = [self.prg.int64(b_shape)]
            elif kind in FIXED_KINDS:
                owns_a = kind == FIXED or self.rank == 1
                mine = [self.prg.int64(a_shape) if owns_a else None]
            else:
                mine = [self.prg.int64(a_shape), self.prg.int64(b_shape)]
            last = None if self.rank == 0 or kind == WEIGHT else self.prg.int64(out_shape)
            items.append((mine, last))
        if self.rank == 0:
            reply = self.replies.ask(_header(kind, a_shape, b_shape, count), (count, *out_shape))
            return [(*mine, lambda i=i: reply()[i]) for i, (mine, _) in enumerate(items)]
        return [(*mine, lambda c=c: c) for mine, c in items]

    def _take(self, kind: int, a_shape: tuple, b_shape: tuple = ()):
        key = (kind, tuple(a_shape), tuple(b_shape))
        waiting = self.ready.get(key)
        return waiting.pop(0) if waiting else self._draw(kind, key[1], key[2], 1)[0]

    def _triple(self, kind: int, a_shape: tuple, b_shape: tuple):
        """This party's (a, b) and a function giving its c: party 0 asks the dealer first
        and collects c last, so the dealer computes while the parties talk."""
        return self._take(kind, a_shape, b_shape)

    def _random_bit(self, shape: tuple):
        """XOR shares of a random bit and arithmetic shares of the same bit."""
        bit, arith = self._take(BIT, shape)
        return bit, arith()

    def _pair_stream(self) -> PRG | None:
        """A stream parties 1 and 2 share (party 1 draws the seed): re-splits after a
        three-party truncation without a message."""
        if self.rank == 1:
            return _send_seed(self.comm, 2)
        if self.rank == 2:
            return _recv_seed(self.comm, 1)
        return None

    def stop_dealer(self) -> None:
        if self.rank == 0:
            self.replies.close()
            self.comm.send(self.comm.dealer, _header(STOP, ()))

    # -- sharing and opening --------------------------------------------------------------

    def share(self, owner: int, value: torch.Tensor | None, shape: tuple) -> torch.Tensor:
        """``owner`` splits ``value`` (ring elements) into one share per party; one round."""
        self.comm.traffic.rounds += 1
        if self.rank != owner:
            return self.comm.recv(owner, shape)
        if tuple(value.shape) != tuple(shape):
            raise MPCError(f"value shape {tuple(value.shape)} differs from {tuple(shape)}")
        fresh = PRG()
        out = value
        for q in self.others:
            mask = fresh.int64(shape)
            self.comm.send(q, mask)
            out = out - mask
        return out

    def open(self, *shares: torch.Tensor) -> list[torch.Tensor]:
        return self.comm.exchange(list(shares))

    def reveal_to(self, owner: int, share: torch.Tensor) -> torch.Tensor | None:
        """Only ``owner`` learns the value (output privacy); the others learn nothing."""
        self.comm.traffic.rounds += 1
        if self.rank != owner:
            self.comm.send(owner, share)
            return None
        for q in self.others:
            share = share + self.comm.recv(q, share.shape)
        return share

    def publish(self, owner: int, rows: torch.Tensor | None, columns: int, most: int, what: str):
        """``owner``'s public table of int64 ``rows`` (a count, then the rows) at every party;
        the others refuse a count outside 1..``most``."""
        if self.rank == owner:
            for q in self.others:
                self.comm.send(q, torch.tensor([len(rows)], dtype=torch.int64))
                self.comm.send(q, rows)
            return rows
        (n,) = self.comm.recv(owner, (1,)).tolist()
        if not 1 <= n <= most:
            raise MPCError(f"party {owner} announced {n} {what}")
        return self.comm.recv(owner, (n, columns))

    # -- arithmetic -----------------------------------------------------------------------

    def _beaver(self, kind: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a, b, c = self._triple(kind, tuple(x.shape), tuple(y.shape))
        e, f = self.open(x - a, y - b)
        z = c() + _product(kind, e, b) + _product(kind, a, f)
        if self.rank == 0:
            z = z + _product(kind, e, f)
        return z

    def mul(self, x: torch.Tensor, y: torch.Tensor, truncate: bool = True) -> torch.Tensor:
        if x.shape != y.shape:
            raise MPCError(f"elementwise product of shapes {tuple(x.shape)} and {tuple(y.shape)}")
        z = self._beaver(MUL, x, y)
        return self.truncate(z) if truncate else z

    def matmul(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.truncate(self._beaver(MATMUL, x, y))

    def fix_weight(self, w: torch.Tensor) -> Weight:
        """Mask the shared (or owned) weight matrix ``w`` once for the session: B from the
        dealer's streams, W - B opened now (one round). Products with it then open only
        the other operand: each query's triple (A, B, A·B) takes a fresh A and reuses B,
        so every opened X - A is still a one-time pad, and W - B, opened once, says
        nothing about W (B stays unknown to every party but W's owner, who knows W)."""
        (b, _), slot = self._draw(WEIGHT, (), tuple(w.shape), 1)[0], self.weights
        self.weights += 1
        (opened,) = self.open(w - b)
        return Weight(slot, b, opened)

    def fixed_matmul(self, x: torch.Tensor, w: Weight) -> torch.Tensor:
        """Shares of ``x @ W`` for a weight fixed with :meth:`fix_weight`; one round."""
        (a, c) = self._take(FIXED, tuple(x.shape), (w.slot, w.columns))
        (e,) = self.open(x - a)
        z = c() + e @ w.b + a @ w.opened
        return self.truncate(z + e @ w.opened if self.rank == 0 else z)

    def fixed_input_matmul(self, x: torch.Tensor | None, w: Weight, shape: tuple):
        """Shares of ``x @ W`` where party 1 holds ``x`` in the clear: it sends x - A, A
        from its own stream, and nothing comes back (three parties: ``x`` is shared)."""
        if self.parties == 3:
            return self.fixed_matmul(self.share(1, x, shape), w)
        a, c = self._take(FIXED_OWNED, tuple(shape), (w.slot, w.columns))
        self.comm.traffic.rounds += 1
        if self.rank == 0:
            e = self.comm.recv(1, shape)
            return self.truncate(c() + e @ w.b + e @ w.opened)
        if tuple(x.shape) != tuple(shape):
            raise MPCError(f"input shape {tuple(x.shape)} differs from {tuple(shape)}")
        e = x - a
        self.comm.send(0, e)
        return self.truncate(c() + e @ w.b + a @ w.opened)

    def truncate(self, x: torch.Tensor, bits: int | None = None) -> torch.Tensor:
        """Divide by 2^bits (default: frac) locally (SecureML): exact up to one unit, with
        high probability. Three parties: first down to two shares (see the module)."""
        bits = self.frac if bits is None else bits
        if self.parties == 3:
            return self._truncate_three(x, bits)
        if self.rank == 0:
            return x >> bits
        return -((-x) >> bits)

    def _truncate_three(self, x: torch.Tensor, bits: int) -> torch.Tensor:
        self.comm.traffic.rounds += 1
        if self.rank == 2:
            self.comm.send(1, x)
            return self.pair.int64(tuple(x.shape))
        if self.rank == 0:
            return x >> bits
        mine = -((-(x + self.comm.recv(2, x.shape))) >> bits)
        return mine - self.pair.int64(tuple(x.shape))

    def add_public(self, x: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        return x + value if self.rank == 0 else x

    def public(self, value: float, shape: tuple) -> torch.Tensor:
        """Shares of a public real: party 0 holds it, party 1 holds zero."""
        fill = round(value * 2**self.frac) if self.rank == 0 else 0
        return torch.full(shape, fill, dtype=torch.int64)

    def scale(self, x: torch.Tensor, value: float) -> torch.Tensor:
        """x times a public real, locally (and a truncation)."""
        return self.truncate(x * round(value * 2**self.frac))

    # -- comparison -----------------------------------------------------------------------

    def _and(self, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
        """AND of XOR-shared words, every pair in one round."""
        triples = [self._and_triple(x) for x, _ in pairs]
        masked = []
        for (x, y), (a, b, _) in zip(pairs, triples, strict=True):
            masked += [x ^ a, y ^ b]
        opened = self._open_xor(masked)
        out = []
        for i, (a, b, c) in enumerate(triples):
            d, e = opened[2 * i], opened[2 * i + 1]
            z = c() ^ (d & b) ^ (e & a)
            out.append(z ^ (d & e) if self.rank == 0 else z)
        return out

    def _and_triple(self, word: torch.Tensor):
        """An AND triple shaped like ``word``; 32-bit words take half as many 64-bit
        elements from the dealer, viewed as pairs of 32-bit ones."""
        shape = tuple(word.shape)
        if word.dtype == torch.int64:
            return self._triple(AND, shape, shape)
        n = word.numel()
        half = ((n + 1) // 2,)
        a, b, c = self._triple(AND, half, half)

        def words(t: torch.Tensor) -> torch.Tensor:
            return t.view(torch.int32)[:n].reshape(shape)

        return words(a), words(b), lambda: words(c())

    def _open_xor(self, shares: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.comm.exchange(shares, xor=True)

    def _words(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every party's share of ``x`` as an XOR-shared word: its owner holds it, the others
        zero. Three words become two by a carry-save adder (one AND round)."""
        zero = torch.zeros_like(x)
        words = [x if q == self.rank else zero for q in range(self.parties)]
        if len(words) == 3:
            a, b, c = words
            ab, ac, bc = self._and([(a, b), (a, c), (b, c)])
            words = [a ^ b ^ c, (ab ^ ac ^ bc) << 1]  # sum bits and carries (the majority)
        return words

    def _prefetch_comparison(self, shape: tuple) -> None:
        """Ask ahead for a comparison's AND triples (the carry-save adder's three with three
        parties, then the Kogge-Stone adder's 2·log2(bits)) and the multiplexer that
        applies its result."""
        count = (3 if self.parties == 3 else 0) + 2 * (self.compare_bits.bit_length() - 1)
        if self.compare_bits == 64:
            self.prefetch(AND, shape, shape, count)
        else:
            half = ((math.prod(shape) + 1) // 2,)
            self.prefetch(AND, half, half, count)
        self.prefetch(MUX, shape)

    def sign_bit(self, x: torch.Tensor) -> torch.Tensor:
        """XOR shares of the sign bit (1 for negative) of the shared ``x``.

        With ``compare_bits`` 32 the adder runs on the shares' low 32 bits (shares of x mod
        2^32, as uniform as the full ones): one round and half the bytes fewer, and exact
        while |x| < 2^31 ring units (32,768 at 16 fractional bits).
        """
        bits = self.compare_bits
        if bits == 32:
            x = x.to(torch.int32)  # keeps the low 32 bits (two's complement wrap)
        a, b = self._words(x)
        (g,) = self._and([(a, b)])
        p0 = p = a ^ b
        k = 1
        while k < bits // 2:
            g_and, p = self._and([(p, g << k), (p, p << k)])
            g, k = g ^ g_and, 2 * k
        (g_and,) = self._and([(p, g << k)])  # the last level needs no p
        g = g ^ g_and
        return (((p0 ^ (g << 1)) >> (bits - 1)) & 1).to(torch.int64)

    def bit_to_arith(self, bit: torch.Tensor) -> torch.Tensor:
        """Arithmetic shares (integers, not fixed point) of an XOR-shared bit; one round."""
        r_bit, r_arith = self._random_bit(tuple(bit.shape))
        (c,) = self._open_xor([bit ^ r_bit])
        out = r_arith - 2 * c * r_arith
        return out + c if self.rank == 0 else out

    def from_xor_bytes(self, x: torch.Tensor, scale: float) -> torch.Tensor:
        """Fixed-point shares of ``scale * byte`` from XOR shares of bytes (0..255): each bit
        becomes an arithmetic share in one round, then the bits are weighted and summed."""
        powers = 1 << torch.arange(8, dtype=torch.int64)
        bits = self.bit_to_arith((x.unsqueeze(-1) >> torch.arange(8)) & 1)
        return (bits * powers).sum(-1) * round(scale * 2**self.frac)

    def relu(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu_and_mask(x)[0]

    def mux(self, s: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Shares of s·y and of s (an integer) for an XOR-shared bit ``s`` and shared ``y``,
        in one round: with the dealer's random bit r, mask a and product a·r, the parties
        open c = s XOR r and e = y - a together; then s = c + (1 - 2c) r and
        s·y = c·y + (1 - 2c)(e·r + a·r), all local (c and e are uniformly masked)."""
        r, a, rest = self._take(MUX, tuple(y.shape))
        c, e = self.comm.exchange([s ^ r, y - a], xor=[True, False])
        r_arith, ar = rest()
        flip = 1 - 2 * c
        s_arith = flip * r_arith + (c if self.rank == 0 else 0)
        return c * y + flip * (e * r_arith + ar), s_arith

    def relu_and_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ReLU(x) and integer shares of [x >= 0], the derivative training needs."""
        self._prefetch_comparison(tuple(x.shape))
        negative_x, negative = self.mux(self.sign_bit(x), x)
        return x - negative_x, self.add_public(-negative, torch.ones_like(x))

    def square(self, x: torch.Tensor) -> torch.Tensor:
        return self.mul(x, x)

    def maximum(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Elementwise max of two shared tensors: a + [a < b](b - a), one comparison."""
        self._prefetch_comparison(tuple(a.shape))
        return a + self.mux(self.sign_bit(a - b), b - a)[0]

    def max_last(self, x: torch.Tensor) -> torch.Tensor:
        """Max over the last dimension, by pairwise maxima (ceil(log2 n) comparison levels)."""
        while x.shape[-1] > 1:
            m = x.shape[-1] // 2
            top = self.maximum(x[..., 0 : 2 * m : 2], x[..., 1 : 2 * m : 2])
            x = torch.cat([top, x[..., 2 * m :]], -1)
        return x[..., 0]

    def argmax(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Shares of each row's max and of a one-hot of its (first) argmax, by a tournament:
        ceil(log2 n) levels, each comparing pairs and carrying the winner's one-hot along."""
        n = x.shape[-1]
        eye = torch.eye(n, dtype=torch.int64).expand(*x.shape, n)
        onehot = eye if self.rank == 0 else torch.zeros_like(eye)  # public, as shares
        values = x
        while values.shape[-1] > 1:
            m = values.shape[-1] // 2
            a, b = values[..., 0 : 2 * m : 2], values[..., 1 : 2 * m : 2]
            ea, eb = onehot[..., 0 : 2 * m : 2, :], onehot[..., 1 : 2 * m : 2, :]
            bit = self.sign_bit(a - b)  # b wins only when strictly larger: the first max stays
            lo = torch.cat([a, ea.flatten(-2)], -1)
            hi = torch.cat([b, eb.flatten(-2)], -1)
            pick = torch.cat([bit, bit.unsqueeze(-1).expand_as(ea).flatten(-2)], -1)
            both = lo + self.mux(pick, hi - lo)[0]
            win, e = both[..., :m], both[..., m:].unflatten(-1, (m, n))
            values = torch.cat([win, values[..., 2 * m :]], -1)
            onehot = torch.cat([e, onehot[..., 2 * m :, :]], -2)
        return values[..., 0], onehot[..., 0, :]


def run_local(program, frac: int = FRAC_BITS, parties: int = 2, compare_bits: int = 64) -> list:
    """``program(party)`` on every party, the dealer serving, as threads of this process
    (for tests and experiments); the results by rank (the dealer's: its request count)."""
    from veil.encrypted.mpc.comm import run_threads

    def each(comm: Comm):
        if comm.rank == comm.dealer:
            return serve_dealer(comm, setup_seeds(comm))
        party = Party(comm, setup_seeds(comm), frac, compare_bits)
        out = program(party)
        party.stop_dealer()
        return out

    return run_threads(parties, each)
