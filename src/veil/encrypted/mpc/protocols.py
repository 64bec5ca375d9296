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
  reduced to two by a carry-save adder, one more AND round), 7 rounds, then one round to
  turn the bit into an arithmetic share; ReLU(x) = x (1 - sign) with one more product.
"""

from __future__ import annotations

import torch

from veil.encrypted.mpc.comm import Comm
from veil.encrypted.mpc.ring import FRAC_BITS, PRG, MPCError

MUL, MATMUL, AND, BIT, OWNED, STOP = 1, 2, 3, 4, 5, 0
HEADER = 12


def _header(kind: int, a: tuple, b: tuple = ()) -> torch.Tensor:
    h = torch.zeros(HEADER, dtype=torch.int64)
    values = [kind, len(a), *a, len(b), *b]
    if len(values) > HEADER:
        raise MPCError(f"tensor shapes {a} {b} have too many dimensions for a dealer request")
    h[: len(values)] = torch.tensor(values)
    return h


def _parse(h: torch.Tensor) -> tuple[int, tuple, tuple]:
    v = h.tolist()
    na = v[1]
    a = tuple(v[2 : 2 + na])
    nb = v[2 + na]
    return v[0], a, tuple(v[3 + na : 3 + na + nb])


def _product(kind: int, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if kind == MUL:
        return a * b
    if kind in (MATMUL, OWNED):
        return a @ b
    return a & b


def _result_shape(kind: int, a: tuple, b: tuple) -> tuple:
    return (*a[:-1], b[-1]) if kind in (MATMUL, OWNED) else a


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

    Replies go out without waiting for party 0 to take them: party 0 may ask for several
    triples before it reads the first reply (one AND round needs two), and a blocking send
    here would wait for a read that waits for this loop.
    """
    served, pending = 0, []
    while True:
        pending = [h for h in pending if not h.is_completed()]
        kind, a_shape, b_shape = _parse(comm.recv(0, (HEADER,)))
        if kind == STOP:
            for h in pending:
                h.wait()
            return served
        served += 1
        if kind == BIT:
            bits = [prg.bits(a_shape) for prg in prgs]
            arith = [prg.int64(a_shape) for prg in prgs[1:]]
            pending.append(comm.send(0, _xor(bits) - sum(arith), wait=False))
            continue
        # for OWNED the input owner (party 1) draws all of a: it is nobody's share
        a = [prgs[1].int64(a_shape)] if kind == OWNED else [prg.int64(a_shape) for prg in prgs]
        b = [prg.int64(b_shape) for prg in prgs]
        c_rest = [prg.int64(_result_shape(kind, a_shape, b_shape)) for prg in prgs[1:]]
        if kind == AND:
            reply = _xor([_product(kind, _xor(a), _xor(b)), *c_rest])
        else:
            reply = _product(kind, sum(a), sum(b)) - sum(c_rest)
        pending.append(comm.send(0, reply, wait=False))


def _xor(ts: list[torch.Tensor]) -> torch.Tensor:
    out = ts[0]
    for t in ts[1:]:
        out = out ^ t
    return out


class Party:
    """One computing party: its comm end, its PRG shared with the dealer, fixed-point bits."""

    def __init__(self, comm: Comm, prg: PRG, frac: int = FRAC_BITS):
        if comm.parties not in (2, 3):
            raise MPCError("these protocols are for two or three computing parties")
        self.comm, self.prg, self.frac = comm, prg, frac
        self.rank, self.parties = comm.rank, comm.parties
        self.others = [q for q in range(self.parties) if q != self.rank]
        self.pair = self._pair_stream() if self.parties == 3 else None

    # -- dealer randomness ----------------------------------------------------------------

    def _triple(self, kind: int, a_shape: tuple, b_shape: tuple):
        """This party's (a, b) now and a function giving its c: party 0 asks the dealer
        first and collects c last, so the dealer computes while the parties talk."""
        a, b = self.prg.int64(a_shape), self.prg.int64(b_shape)
        c_shape = _result_shape(kind, a_shape, b_shape)
        if self.rank == 0:
            self.comm.send(self.comm.dealer, _header(kind, a_shape, b_shape))
            return a, b, lambda: self.comm.recv(self.comm.dealer, c_shape)
        c = self.prg.int64(c_shape)
        return a, b, lambda: c

    def _random_bit(self, shape: tuple):
        bit = self.prg.bits(shape)
        if self.rank == 0:
            self.comm.send(self.comm.dealer, _header(BIT, shape))
            arith = self.comm.recv(self.comm.dealer, shape)
        else:
            arith = self.prg.int64(shape)
        return bit, arith

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

    def input_matmul(self, x: torch.Tensor | None, y: torch.Tensor, shape: tuple) -> torch.Tensor:
        """Shares of ``x @ y`` where party 1 holds ``x`` in the clear and ``y`` is shared.

        The dealer's mask ``a`` comes from party 1's own stream, so party 1 sends ``x - a``
        once instead of sharing ``x`` and opening it masked: one message of the input's
        size instead of three. With three parties ``x`` is shared, then multiplied.
        """
        if self.parties == 3:
            return self.matmul(self.share(1, x, shape), y)
        a = self.prg.int64(shape) if self.rank == 1 else None
        b = self.prg.int64(tuple(y.shape))
        c_shape = (*shape[:-1], y.shape[-1])
        if self.rank == 0:
            self.comm.send(self.comm.dealer, _header(OWNED, tuple(shape), tuple(y.shape)))
            e = self.comm.recv(1, shape)
            (f,) = self.open(y - b)
            z = self.comm.recv(self.comm.dealer, c_shape) + e @ b + e @ f
        else:
            if tuple(x.shape) != tuple(shape):
                raise MPCError(f"input shape {tuple(x.shape)} differs from {tuple(shape)}")
            e = x - a
            self.comm.send(0, e)
            (f,) = self.open(y - b)
            z = self.prg.int64(c_shape) + e @ b + a @ f
        return self.truncate(z)

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
        triples = [self._triple(AND, tuple(x.shape), tuple(x.shape)) for x, _ in pairs]
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

    def sign_bit(self, x: torch.Tensor) -> torch.Tensor:
        """XOR shares of the sign bit (1 for negative) of the shared ``x``."""
        a, b = self._words(x)
        (g,) = self._and([(a, b)])
        p0 = p = a ^ b
        for k in (1, 2, 4, 8, 16, 32):
            if k < 32:
                g_and, p = self._and([(p, g << k), (p, p << k)])
            else:
                (g_and,) = self._and([(p, g << k)])
            g = g ^ g_and
        return ((p0 ^ (g << 1)) >> 63) & 1

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

    def relu_and_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ReLU(x) and integer shares of [x >= 0], the derivative training needs."""
        keep = self.add_public(-self.bit_to_arith(self.sign_bit(x)), torch.ones_like(x))
        return self.mul(x, keep, truncate=False), keep

    def square(self, x: torch.Tensor) -> torch.Tensor:
        return self.mul(x, x)

    def less(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Integer arithmetic shares of [a < b] (0 or 1), from the sign of a - b."""
        return self.bit_to_arith(self.sign_bit(a - b))

    def select(self, bit: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``b`` where the shared integer ``bit`` is 1, else ``a``: a + bit (b - a)."""
        return a + self.mul(bit, b - a, truncate=False)

    def maximum(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Elementwise max of two shared tensors (one comparison, one product)."""
        return self.select(self.less(a, b), a, b)

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
            bit = self.less(a, b)  # b wins only when strictly larger: the first max is kept
            both = self.select(torch.cat([bit, bit.unsqueeze(-1).expand_as(ea).flatten(-2)], -1),
                               torch.cat([a, ea.flatten(-2)], -1),
                               torch.cat([b, eb.flatten(-2)], -1))  # fmt: skip
            win, e = both[..., :m], both[..., m:].unflatten(-1, (m, n))
            values = torch.cat([win, values[..., 2 * m :]], -1)
            onehot = torch.cat([e, onehot[..., 2 * m :, :]], -2)
        return values[..., 0], onehot[..., 0, :]


def run_local(program, frac: int = FRAC_BITS, parties: int = 2) -> list:
    """``program(party)`` on every party, the dealer serving, as threads of this process
    (for tests and experiments); the results by rank (the dealer's: its request count)."""
    from veil.encrypted.mpc.comm import run_threads

    def each(comm: Comm):
        if comm.rank == comm.dealer:
            return serve_dealer(comm, setup_seeds(comm))
        party = Party(comm, setup_seeds(comm), frac)
        out = program(party)
        party.stop_dealer()
        return out

    return run_threads(parties, each)
