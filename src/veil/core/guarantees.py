"""Guarantee records and the Ledger of a run: what was claimed, how, and what backs it.

Every operation that gives or tests a guarantee appends a :class:`Guarantee` to the run's
:class:`Ledger`; results that are neither (a training run, an evaluation) go in as a
:class:`Record`. ``veil report`` renders a ledger. The JSON form is versioned
(:data:`SCHEMA_VERSION`) and round-trips exactly.

Example::

    ledger = Ledger.start("my run")
    ledger.add(Guarantee(
        guarantee="training-data", mechanism="DP-SGD",
        claim="(2.0, 1e-5)-DP for each training example",
        threat_model="adversary sees the final model; the training code is trusted",
        parameters={"sigma": 1.1, "q": 0.01, "steps": 3000}, numbers={"epsilon": 2.0,
        "delta": 1e-5}))
    ledger.save("ledger.json")
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from veil.core.errors import LedgerError

SCHEMA_VERSION = 1
GUARANTEES = ("training-data", "input", "output", "model")
GUARANTEE_TITLES = {
    "training-data": "Training-data privacy",
    "input": "Input privacy",
    "output": "Output privacy",
    "model": "Model privacy",
    "audit": "Audits",
}
KINDS = (*GUARANTEES, "audit")
STATUSES = ("claimed", "supported", "violated", "failed")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _check_json(what: str, value) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise LedgerError(
            f"{what} must be plain JSON (str, finite numbers, lists, dicts): {e}"
        ) from e


@dataclass(frozen=True)
class Guarantee:
    """One guarantee given (or one audit run) by one mechanism, with its threat model.

    ``guarantee`` is one of :data:`GUARANTEES` or ``"audit"``; an audit names the guarantee
    it tests in ``tests``. ``status``: ``claimed`` (the mechanism gives it by construction),
    ``supported`` (an audit backs it), ``violated`` (an audit contradicts it), ``failed``
    (the step that should give it failed).
    """

    guarantee: str
    mechanism: str
    claim: str
    threat_model: str
    parameters: dict = field(default_factory=dict)
    numbers: dict = field(default_factory=dict)
    evidence: dict = field(default_factory=dict)
    status: str = "claimed"
    tests: str | None = None
    step: str = ""
    time: str = field(default_factory=_now)

    def __post_init__(self):
        if self.guarantee not in KINDS:
            raise LedgerError(
                f"unknown guarantee {self.guarantee!r}; use one of {', '.join(KINDS)}"
            )
        if self.status not in STATUSES:
            raise LedgerError(f"unknown status {self.status!r}; use one of {', '.join(STATUSES)}")
        if self.guarantee == "audit" and self.tests not in GUARANTEES:
            raise LedgerError(f"an audit must name the guarantee it tests, one of {GUARANTEES}")
        if not self.threat_model.strip():
            raise LedgerError(f"{self.mechanism}: every guarantee names its threat model")
        for name in ("parameters", "numbers", "evidence"):
            _check_json(f"{self.mechanism} {name}", getattr(self, name))
        for key, value in self.numbers.items():
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise LedgerError(f"{self.mechanism}: number {key!r} must be finite, got {value!r}")


@dataclass(frozen=True)
class Record:
    """A result that is not a guarantee: a training run, an evaluation, a timing."""

    kind: str
    step: str
    metrics: dict = field(default_factory=dict)
    curves: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    time: str = field(default_factory=_now)

    def __post_init__(self):
        for name in ("metrics", "curves", "details"):
            _check_json(f"{self.kind} record {name}", getattr(self, name))


@dataclass
class Ledger:
    """Everything a run claimed and measured, in order; saved as versioned JSON."""

    run: dict = field(default_factory=dict)
    entries: list[Guarantee] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    artifacts: dict[str, str] = field(default_factory=dict)
    version: int = SCHEMA_VERSION

    @classmethod
    def start(cls, name: str, **run) -> Ledger:
        from veil import __version__

        return cls(run={"name": name, "started": _now(), "veil_version": __version__, **run})

    def add(self, guarantee: Guarantee) -> Guarantee:
        self.entries.append(guarantee)
        return guarantee

    def record(self, record: Record) -> Record:
        self.records.append(record)
        return record

    def finish(self, **run) -> None:
        self.run |= {"finished": _now(), **run}

    def for_guarantee(self, kind: str) -> list[Guarantee]:
        """Entries that give ``kind``, and audits that test it."""
        return [e for e in self.entries if e.guarantee == kind or e.tests == kind]

    def status(self, kind: str) -> str:
        """One word for a guarantee: violated, failed, supported, claimed, or not claimed."""
        statuses = {e.status for e in self.for_guarantee(kind)}
        for word in ("violated", "failed", "supported", "claimed"):
            if word in statuses:
                return word
        return "not claimed"

    def to_dict(self) -> dict:
        return {
            "veil_ledger": self.version,
            "run": self.run,
            "entries": [asdict(e) for e in self.entries],
            "records": [asdict(r) for r in self.records],
            "artifacts": self.artifacts,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def save(self, path: str | Path) -> Path:
        """Write atomically, so a crash never leaves half a ledger."""
        from veil.core.io import atomic_write

        return atomic_write(path, self.to_json())

    @classmethod
    def from_dict(cls, d: dict) -> Ledger:
        if not isinstance(d, dict) or "veil_ledger" not in d:
            raise LedgerError("not a veil ledger: no 'veil_ledger' version field")
        if d["veil_ledger"] != SCHEMA_VERSION:
            raise LedgerError(
                f"ledger schema version {d['veil_ledger']} is not supported "
                f"(this veil reads version {SCHEMA_VERSION})"
            )
        try:
            return cls(
                run=dict(d.get("run", {})),
                entries=[Guarantee(**_as_object(e)) for e in d.get("entries", [])],
                records=[Record(**_as_object(r)) for r in d.get("records", [])],
                artifacts=dict(d.get("artifacts", {})),
            )
        except TypeError as e:
            raise LedgerError(f"malformed ledger entry: {e}") from e

    @classmethod
    def load(cls, path: str | Path) -> Ledger:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as e:
            raise LedgerError(f"ledger {path} does not exist") from e
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise LedgerError(f"cannot read ledger {path}: {e}") from e
        return cls.from_dict(data)


def _as_object(d) -> dict:
    """A ledger entry must be a JSON object; unknown or missing fields fail in the constructor."""
    if not isinstance(d, dict):
        raise LedgerError(f"malformed ledger entry: expected an object, got {type(d).__name__}")
    return d
