"""Scenario files: TOML, validated with pydantic, errors that name the key and its line.

A scenario is a ``[scenario]`` table and an ordered list of ``[[steps]]``; each step has an
``id`` (the name of what it produces) and a ``kind`` (registered in ``veil.pipeline.steps``).
Fields that name another step's output are marked with :func:`ref`; the runner checks that
graph before starting anything.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from veil.core.errors import ScenarioError

BUNDLED_DIR = Path(__file__).parent / "scenarios"
DEFAULT_SCENARIO = "clinic"


ANY_FILE = "file"


def kind_fits(wanted: str, produced: str | None) -> bool:
    """Whether an output of kind ``produced`` serves a field that wants ``wanted``."""
    return produced == wanted or (wanted == ANY_FILE and produced is not None)


def ref(artifact_kind: str, **kw):
    """A field that names the output of an earlier step, of kind ``artifact_kind`` (or a list
    of them); kind :data:`ANY_FILE` takes any step that produces something."""
    return Field(json_schema_extra={"artifact": artifact_kind}, **kw)


class Strict(BaseModel):
    """A config model that refuses unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ScenarioHeader(Strict):
    name: str = "scenario"
    description: str = ""
    seed: int = 0


StepId = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$", max_length=64)]


class StepConfig(Strict):
    """Fields every step has; each kind adds its own by subclassing."""

    id: StepId
    kind: str

    def references(self) -> dict[str, tuple[str, str]]:
        """``{field: (step id, artifact kind)}`` for every field that names an earlier output."""
        out = {}
        for name, info in type(self).model_fields.items():
            extra = info.json_schema_extra
            value = getattr(self, name)
            if not (isinstance(extra, dict) and "artifact" in extra) or value is None:
                continue
            if isinstance(value, list | tuple):
                out.update({f"{name}[{i}]": (v, extra["artifact"]) for i, v in enumerate(value)})
            else:
                out[name] = (value, extra["artifact"])
        return out


@dataclass
class Scenario:
    """A validated scenario: its header, its steps in order, and where it came from."""

    header: ScenarioHeader
    steps: list[StepConfig]
    source: str = "<string>"
    lines: dict[tuple, int] = field(default_factory=dict)
    digest: str = ""  # SHA-256 of the scenario's text (the report's reproducibility footer)


def key_lines(text: str) -> dict[tuple, int]:
    """Map each key's path (``("steps", 1, "epochs")``) to its 1-based line in TOML ``text``.

    Covers what scenario files use: ``[table]``, ``[[array]]`` and ``key = value`` lines.
    """
    lines: dict[tuple, int] = {}
    table: tuple = ()
    counts: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if m := re.match(r"^\[\[\s*([A-Za-z0-9_.-]+)\s*\]\]", line):
            name = m.group(1)
            counts[name] = counts.get(name, -1) + 1
            table = (name, counts[name])
            lines.setdefault(table, number)
        elif m := re.match(r"^\[\s*([A-Za-z0-9_.-]+)\s*\]", line):
            table = tuple(m.group(1).split("."))
            lines.setdefault(table, number)
        elif m := re.match(r"^([A-Za-z0-9_-]+|\"[^\"]+\")\s*=", line):
            lines.setdefault((*table, m.group(1).strip('"')), number)
    return lines


def _where(source: str, lines: dict[tuple, int], loc: tuple) -> str:
    for cut in range(len(loc), 0, -1):
        if loc[:cut] in lines:
            return f"{source}, line {lines[loc[:cut]]}"
    return source


def _explain(source: str, lines: dict[tuple, int], prefix: tuple, err: ValidationError) -> str:
    first = err.errors()[0]
    loc = (*prefix, *first["loc"])
    key = ".".join(str(p) for p in loc)
    if first["type"] == "extra_forbidden":
        what = f"unknown key {first['loc'][-1]!r}"
    else:
        what = f"{key}: {first['msg']}"
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{_where(source, lines, loc)}: {what}{more}"


def parse(text: str, source: str = "<string>") -> Scenario:
    """Parse and validate scenario ``text``; raise ScenarioError naming the key and line."""
    from veil.pipeline.steps import config_for, kinds

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{source}: not valid TOML: {e}") from e
    lines = key_lines(text)
    unknown = set(doc) - {"scenario", "steps"}
    if unknown:
        key = sorted(unknown)[0]
        raise ScenarioError(
            f"{_where(source, lines, (key,))}: unknown key {key!r}; a scenario has [scenario] "
            "and [[steps]]"
        )
    try:
        header = ScenarioHeader(**doc.get("scenario", {}))
    except ValidationError as e:
        raise ScenarioError(_explain(source, lines, ("scenario",), e)) from e
    raw_steps = doc.get("steps", [])
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ScenarioError(f"{source}: no [[steps]]; a scenario needs at least one step")
    steps = []
    for i, raw in enumerate(raw_steps):
        kind = raw.get("kind")
        if kind is None or kind not in kinds():
            raise ScenarioError(
                f"{_where(source, lines, ('steps', i, 'kind'))}: unknown step kind {kind!r}; "
                f"known: {', '.join(kinds())}"
            )
        try:
            steps.append(config_for(kind)(**raw))
        except ValidationError as e:
            raise ScenarioError(_explain(source, lines, ("steps", i), e)) from e
    return Scenario(header, steps, source, lines, hashlib.sha256(text.encode()).hexdigest())


def bundled() -> list[str]:
    """Names of the scenarios that ship with veil."""
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.toml"))


def resolve(name_or_path: str | Path | None) -> Path:
    """A scenario file from a path, or a bundled scenario by name (default: ``clinic``)."""
    if name_or_path is None:
        return BUNDLED_DIR / f"{DEFAULT_SCENARIO}.toml"
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.suffix == "" and (BUNDLED_DIR / f"{path}.toml").is_file():
        return BUNDLED_DIR / f"{path}.toml"
    raise ScenarioError(
        f"scenario {name_or_path} not found: give a .toml path or a bundled name "
        f"({', '.join(bundled())})"
    )


def load(name_or_path: str | Path | None = None) -> Scenario:
    """Read and validate a scenario file (see :func:`resolve`)."""
    path = resolve(name_or_path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(f"cannot read scenario {path}: {e}") from e
    return parse(text, str(path))
