"""A secure computation driven from one place: every party (and the dealer) as a thread.

``Session`` is the surface for experiments, notebooks and tests; the protocols are the ones
the parties run over TCP (``veil mpc party``), written once for one party
(:class:`~veil.encrypted.mpc.protocols.Party`). Each operation is sent to every party's
thread, which applies it to its own shares; a :class:`Shared` value is a handle to those
shares and never holds a secret in this process's view (the values themselves, of course,
pass through this process when it shares or reveals them: the session plays every role).

    with Session(parties=2) as s:
        x = s.share(1, images)        # party 1's input, as shares
        w = s.share(0, weights)       # party 0's weights, as shares
        logits = s.reveal_to(1, s.relu(x @ w))
"""

from __future__ import annotations

import itertools
import queue
import threading

import numpy as np
import torch

from veil.encrypted.mpc.comm import Aborted, LocalNetwork
from veil.encrypted.mpc.model import DEALERS
from veil.encrypted.mpc.protocols import Party, serve_dealer, setup_seeds
from veil.encrypted.mpc.ring import FRAC_BITS, MPCError, decode, encode


class Shared:
    """A handle to a secret-shared tensor of a :class:`Session` (each party holds a share)."""

    def __init__(self, session: Session, key: int, shape: tuple, fixed_point: bool = True):
        self.session, self.key, self.shape = session, key, tuple(shape)
        self.fixed_point = fixed_point  # False for integers (comparison bits, one-hots)

    def __add__(self, other):
        return self.session.add(self, other)

    def __sub__(self, other):
        return self.session.add(self, other, sign=-1)

    def __mul__(self, other):
        return self.session.mul(self, other)

    def __matmul__(self, other):
        return self.session.matmul(self, other)

    def __repr__(self) -> str:
        return f"Shared(shape={self.shape})"


class Session:
    """``parties`` (2 or 3) computing parties and a dealer, as threads of this process.

    ``dealer``: "trusted" (a third party that colludes with none) or "client" (the input
    owner deals: nobody else need be trusted for the input, but the weights are not hidden
    from it); the protocols are the same, the threat model differs (see
    :func:`veil.encrypted.mpc.model.guarantees`). ``compare_bits`` 32 runs comparisons on
    the shares' low 32 bits (exact while compared values stay below 32,768).
    """

    def __init__(self, parties: int = 2, dealer: str = "trusted", frac: int = FRAC_BITS,
                 compare_bits: int = 64, timeout: float = 120.0):  # fmt: skip
        if parties not in (2, 3):
            raise MPCError("a session has two or three computing parties")
        if dealer not in DEALERS:
            raise MPCError(f"the dealer is {' or '.join(DEALERS)}, not {dealer!r}")
        self.parties, self.dealer, self.frac = parties, dealer, frac
        self.network = LocalNetwork(parties, timeout)
        self.inbox = [queue.Queue() for _ in range(parties)]
        self.outbox: queue.Queue = queue.Queue()
        self.keys = itertools.count()
        self.timeout, self.closed = timeout, False
        self.dealer_error: BaseException | None = None
        self.threads = [
            threading.Thread(target=self._party, args=(r, compare_bits), daemon=True)
            for r in range(parties)
        ]
        self.threads.append(threading.Thread(target=self._dealer, daemon=True))
        for t in self.threads:
            t.start()

    # -- the parties' side ------------------------------------------------------------------

    def _dealer(self) -> None:
        comm = self.network.comm(self.parties)
        try:
            serve_dealer(comm, setup_seeds(comm))
        except BaseException as e:  # noqa: BLE001 - reported by the controller
            self.dealer_error = e
            self.network.aborted.set()

    def _failed(self, rank: int, error: BaseException) -> None:
        """Report first, then stop the others: their "another rank failed" comes after."""
        self.outbox.put((rank, error))
        self.network.aborted.set()

    def _party(self, rank: int, compare_bits: int) -> None:
        comm = self.network.comm(rank)
        try:
            party = Party(comm, setup_seeds(comm), self.frac, compare_bits)
        except BaseException as e:  # noqa: BLE001 - handed to the controller
            self._failed(rank, e)
            return
        shares: dict[int, torch.Tensor] = {}
        while (job := self.inbox[rank].get()) is not None:
            work, key = job
            try:
                result = work(party, shares)
                if key is not None:
                    shares[key] = result
                self.outbox.put((rank, result))
            except BaseException as e:  # noqa: BLE001 - handed to the controller
                self._failed(rank, e)
        party.stop_dealer()

    def _run(self, work, shape: tuple | None = None, fixed_point: bool = True):
        """``work(party, shares)`` at every party; a handle to the result's shares (with
        ``shape``) or, without a shape, every party's result by rank."""
        if self.closed:
            raise MPCError("this session is closed")
        key = None if shape is None else next(self.keys)
        for box in self.inbox:
            box.put((work, key))
        results: list = [None] * self.parties
        for _ in range(self.parties):
            try:
                rank, value = self.outbox.get(timeout=self.timeout)
            except queue.Empty as e:
                raise MPCError("a party did not answer in time") from e
            if isinstance(value, BaseException):
                self.close()
                if isinstance(value, Aborted) and self.dealer_error is not None:
                    raise self.dealer_error
                raise value
            results[rank] = value
        return results if key is None else Shared(self, key, shape, fixed_point)

    # -- the controller's side --------------------------------------------------------------

    def share(self, owner: int, value) -> Shared:
        """Party ``owner``'s real-valued ``value``, split into one share per party."""
        if not 0 <= owner < self.parties:
            raise MPCError(f"party {owner} is not in this session of {self.parties}")
        encoded = encode(value, self.frac)
        shape = tuple(encoded.shape)
        return self._run(lambda p, s: p.share(owner, encoded if p.rank == owner else None, shape),
                         shape)  # fmt: skip

    def reveal_to(self, party: int, x: Shared) -> np.ndarray:
        """The value of ``x``, opened to ``party`` only (the others send their shares)."""
        results = self._run(lambda p, s: p.reveal_to(party, s[x.key]))
        return decode(results[party], self.frac) if x.fixed_point else results[party].numpy()

    def add(self, x: Shared, y, sign: int = 1) -> Shared:
        """x + y (or x - y): shares add locally; a public ``y`` is added by party 0 alone."""
        if isinstance(y, Shared):
            return self._run(lambda p, s: s[x.key] + sign * s[y.key], x.shape)
        public = sign * encode(np.array(np.broadcast_to(y, x.shape)), self.frac)
        return self._run(lambda p, s: p.add_public(s[x.key], public), x.shape)

    def mul(self, x: Shared, y: Shared) -> Shared:
        """Elementwise product (Beaver triple, one round, truncated)."""
        return self._run(lambda p, s: p.mul(s[x.key], s[y.key]), x.shape)

    def matmul(self, x: Shared, y: Shared) -> Shared:
        """Matrix product (Beaver triple, one round, truncated)."""
        shape = (*x.shape[:-1], y.shape[-1])
        return self._run(lambda p, s: p.matmul(s[x.key], s[y.key]), shape)

    def relu(self, x: Shared) -> Shared:
        """max(x, 0) by a comparison on shares."""
        return self._run(lambda p, s: p.relu(s[x.key]), x.shape)

    def square(self, x: Shared) -> Shared:
        return self._run(lambda p, s: p.square(s[x.key]), x.shape)

    def maximum(self, x: Shared, y: Shared) -> Shared:
        """Elementwise max of two shared tensors."""
        return self._run(lambda p, s: p.maximum(s[x.key], s[y.key]), x.shape)

    def argmax(self, x: Shared) -> Shared:
        """A shared one-hot of each row's first maximum (integers, not fixed point)."""
        return self._run(lambda p, s: p.argmax(s[x.key])[1], (*x.shape, x.shape[-1]), False)

    def traffic(self) -> list[dict]:
        """What each party has sent so far (bytes, messages, rounds), by rank."""
        return self._run(lambda p, s: p.comm.traffic.to_dict())

    def close(self) -> None:
        """Stop the parties and the dealer (idempotent)."""
        if self.closed:
            return
        self.closed = True
        for box in self.inbox:
            box.put(None)
        for t in self.threads:
            t.join(self.timeout)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
