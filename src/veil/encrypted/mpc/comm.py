"""How parties talk: send and receive int64 tensors, counting rounds and bytes.

Every protocol is written once, for one party, and runs unchanged over two transports:
:class:`LocalNetwork` (threads in one process, queues: tests and quick runs) and
:class:`GlooComm` (processes over TCP through ``torch.distributed`` with the gloo backend,
so parties can sit on different machines). Messages have shapes both sides know from the
protocol, so a receive names the shape it expects.
"""

from __future__ import annotations

import operator
import queue
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import reduce

import torch

from veil.encrypted.mpc.ring import MPCError


@dataclass
class Traffic:
    """What one party sent: bytes, messages, and communication rounds (between parties)."""

    bytes_sent: int = 0
    messages: int = 0
    rounds: int = 0
    dealer_bytes: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Comm(ABC):
    """One party's end: ``rank`` among ``world`` ranks (the parties, then the dealer)."""

    rank: int
    world: int
    parties: int

    def __init__(self):
        self.traffic = Traffic()

    @property
    def dealer(self) -> int:
        return self.parties

    def send(self, to: int, tensor: torch.Tensor, wait: bool = True):
        """Send ``tensor``; with ``wait=False`` return a handle to ``.wait()`` on (so two
        parties can send to each other at once without deadlocking)."""
        tensor = tensor.contiguous()
        size = tensor.numel() * tensor.element_size()
        if to == self.dealer or self.rank == self.dealer:
            self.traffic.dealer_bytes += size
        else:
            self.traffic.bytes_sent += size
        self.traffic.messages += 1
        handle = self._send(to, tensor)
        if wait:
            handle.wait()
            return None
        return handle

    def recv(self, frm: int, shape, dtype=torch.int64) -> torch.Tensor:
        out = self._recv(frm, tuple(shape), dtype)
        if tuple(out.shape) != tuple(shape):
            raise MPCError(f"party {self.rank} expected {tuple(shape)} from {frm}, got {out.shape}")
        return out

    def exchange(
        self, tensors: list[torch.Tensor], xor: bool | list[bool] = False
    ) -> list[torch.Tensor]:
        """Send ``tensors`` to every other party and return the sum (or XOR: one flag for
        all, or one per tensor) of all parties' copies: opening shares, one round, one
        message per party."""
        self.traffic.rounds += 1
        flags = xor if isinstance(xor, list) else [xor] * len(tensors)
        copies = [_unpacked(got, tensors) for got in self._all_to_all(_packed(tensors))]
        return [
            reduce(operator.xor if flag else operator.add, parts)
            for flag, parts in zip(flags, zip(*copies, strict=True), strict=True)
        ]

    def announce(self, value: torch.Tensor) -> list[torch.Tensor]:
        """Every party's public ``value`` (same shape everywhere), by rank; one round."""
        self.traffic.rounds += 1
        return [copies[0] for copies in self._all_to_all([value])]

    def _all_to_all(self, tensors: list[torch.Tensor]) -> list[list[torch.Tensor]]:
        """Send ``tensors`` to every other party; every party's tensors, by rank."""
        others = [p for p in range(self.parties) if p != self.rank]
        handles = [self.send(p, t, wait=False) for p in others for t in tensors]
        out = [
            tensors if p == self.rank else [self.recv(p, t.shape, t.dtype) for t in tensors]
            for p in range(self.parties)
        ]
        for h in handles:
            h.wait()
        return out

    @abstractmethod
    def _send(self, to: int, tensor: torch.Tensor):
        """Start sending; return a handle with ``wait()`` and ``is_completed()``."""

    @abstractmethod
    def _recv(self, frm: int, shape, dtype) -> torch.Tensor:
        """Receive a tensor of ``shape`` from rank ``frm``."""


PACK_BELOW = 1 << 16  # elements: smaller tensors of one round travel as one message


def _packed(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Small tensors of one dtype as one flat message: every message costs a fixed latency
    (about 0.3 ms through gloo here), which dominates single-image rounds; large ones go as
    they are (copying them into one buffer would cost more than the latency it saves)."""
    total = sum(t.numel() for t in tensors)
    if len(tensors) == 1 or total >= PACK_BELOW or len({t.dtype for t in tensors}) > 1:
        return list(tensors)
    return [torch.cat([t.reshape(-1) for t in tensors])]


def _unpacked(got: list[torch.Tensor], like: list[torch.Tensor]) -> list[torch.Tensor]:
    if len(got) == len(like):
        return got
    out, start = [], 0
    for t in like:
        out.append(got[0][start : start + t.numel()].view(t.shape))
        start += t.numel()
    return out


class Aborted(MPCError):
    """Another rank (in this process) failed; its own error says why."""


class _Done:
    def wait(self) -> None:
        return None

    def is_completed(self) -> bool:
        return True


class LocalNetwork:
    """Queues between threads: ``LocalNetwork(world).comm(rank)`` gives each thread its end."""

    def __init__(self, parties: int, timeout: float = 120.0):
        self.parties, self.world, self.timeout = parties, parties + 1, timeout
        self.queues = {(a, b): queue.Queue() for a in range(self.world) for b in range(self.world)}
        self.aborted = threading.Event()  # set when a rank fails: the others stop waiting

    def comm(self, rank: int) -> Comm:
        return _LocalComm(self, rank)


class _LocalComm(Comm):
    def __init__(self, network: LocalNetwork, rank: int):
        super().__init__()
        self.network, self.rank = network, rank
        self.world, self.parties = network.world, network.parties

    def _send(self, to, tensor):
        # no copy: protocols never modify a tensor after sending it
        self.network.queues[(self.rank, to)].put(tensor)
        return _Done()

    def _recv(self, frm, shape, dtype):
        waited, source = 0.0, self.network.queues[(frm, self.rank)]
        while waited < self.network.timeout:
            if self.network.aborted.is_set():
                raise Aborted(f"party {self.rank} stopped: another rank failed")
            try:
                return source.get(timeout=0.1)
            except queue.Empty:
                waited += 0.1
        raise MPCError(f"party {self.rank} waited too long for party {frm}")


class GlooComm(Comm):
    """Processes over TCP: ``torch.distributed`` with gloo; rank ``parties`` is the dealer."""

    def __init__(
        self,
        rank: int,
        parties: int,
        master: str,
        timeout_s: float = 120.0,
        listen_fd: int | None = None,
    ):
        """``listen_fd``: rank 0 only, a socket already listening on ``master``'s port (the
        launcher binds it and passes it down, so no other process can take the port between
        its choice and rank 0's start); without it rank 0 binds the port itself."""
        import datetime

        import torch.distributed as dist

        super().__init__()
        host, _, port = master.rpartition(":")
        if not host or not port.isdigit():
            raise MPCError(f"--master must be HOST:PORT, got {master!r}")
        self.rank, self.parties, self.world = rank, parties, parties + 1
        if not 0 <= rank < self.world:
            raise MPCError(f"rank {rank} outside 0..{self.world - 1}")
        if listen_fd is not None and rank != 0:
            raise MPCError(f"only rank 0 listens for the others; rank {rank} got a socket")
        self.dist = dist
        timeout = datetime.timedelta(seconds=timeout_s)
        # every rank meets at rank 0's store (rank 0 serves it, on the socket if given)
        store = dist.TCPStore(host, int(port), self.world, rank == 0, timeout,
                              master_listen_fd=listen_fd)  # fmt: skip
        dist.init_process_group("gloo", store=store, rank=rank, world_size=self.world,
                                timeout=timeout)  # fmt: skip

    def _send(self, to, tensor):
        return self.dist.isend(tensor, dst=to)

    def _recv(self, frm, shape, dtype):
        out = torch.empty(shape, dtype=dtype)
        self.dist.recv(out, src=frm)
        return out

    def close(self) -> None:
        if self.dist.is_initialized():
            self.dist.destroy_process_group()


def run_threads(parties: int, program, timeout: float = 300.0) -> list:
    """Run ``program(comm)`` for every party and the dealer in threads; their results by rank."""
    network = LocalNetwork(parties)
    results: list = [None] * network.world
    errors: list = []

    def target(rank: int) -> None:
        try:
            results[rank] = program(network.comm(rank))
        except BaseException as e:  # noqa: BLE001 - reported below, after every thread ends
            errors.append((rank, e))
            network.aborted.set()

    threads = [
        threading.Thread(target=target, args=(r,), daemon=True) for r in range(network.world)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    if errors:  # the first failure, not the others' "another rank failed"
        rank, error = errors[0]
        raise error
    if any(t.is_alive() for t in threads):
        raise MPCError("a party did not finish in time")
    return results
