"""Scenario files: validation errors name the key and the line; graph checks."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from veil import pipeline
from veil.core.errors import ScenarioError
from veil.pipeline.scenario import key_lines

GOOD = """\
[scenario]
name = "t"

[[steps]]
id = "fit"
kind = "train"
data = "digits"
epochs = 1

[[steps]]
id = "check"
kind = "evaluate"
uses = "fit"
"""


def test_good_scenario_parses():
    sc = pipeline.parse(GOOD, "t.toml")
    assert [s.id for s in sc.steps] == ["fit", "check"]
    assert sc.steps[0].epochs == 1 and sc.steps[0].model == "mlp"
    pipeline.check_graph(sc)


def test_every_bundled_scenario_is_valid():
    assert "clinic" in pipeline.bundled()
    for name in pipeline.bundled():
        pipeline.check_graph(pipeline.load(name))


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (GOOD.replace("epochs = 1", "epohcs = 1"), r"t.toml, line 8: unknown key 'epohcs'"),
        (
            GOOD.replace('kind = "evaluate"', 'kind = "evalute"'),
            r"line 12: unknown step kind 'evalute'",
        ),
        (
            GOOD.replace("epochs = 1", "epochs = 0"),
            r"line 8: steps.0.epochs: .*greater than",
        ),
        (GOOD.replace('name = "t"', 'name = "t"\ncolour = 1'), r"line 3: unknown key 'colour'"),
        (GOOD + "\n[extras]\nx = 1\n", r"line 15: unknown key 'extras'"),
        (GOOD.replace('id = "fit"', 'id = "1 fit"'), r"line 5: steps.0.id"),
        ("[[steps]\n", r"not valid TOML.*line 1"),
        ("[scenario]\nname='x'\n", r"no \[\[steps\]\]"),
    ],
)
def test_errors_name_key_and_line(text, pattern):
    with pytest.raises(ScenarioError, match=pattern):
        pipeline.parse(text, "t.toml")


def test_graph_errors():
    missing = GOOD.replace('uses = "fit"', 'uses = "fitt"')
    with pytest.raises(ScenarioError, match="needs model 'fitt', which no earlier step produces"):
        pipeline.check_graph(pipeline.parse(missing, "t.toml"))
    twice = GOOD.replace('id = "check"', 'id = "fit"').replace('uses = "fit"', 'uses = "fit"')
    with pytest.raises(ScenarioError, match="used twice"):
        pipeline.check_graph(pipeline.parse(twice, "t.toml"))
    wrong_kind = GOOD + '\n[[steps]]\nid = "again"\nkind = "evaluate"\nuses = "check"\n'
    with pytest.raises(ScenarioError, match="produces nothing"):
        pipeline.check_graph(pipeline.parse(wrong_kind, "t.toml"))


def test_unknown_scenario_name():
    with pytest.raises(ScenarioError, match="not found.*clinic"):
        pipeline.load("no-such-scenario")


@given(
    keys=st.lists(
        st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), min_size=1, max_size=6, unique=True
    )
)
def test_key_lines_finds_each_key(keys):
    text = "[[steps]]\n" + "".join(f"{k} = 1\n" for k in keys)
    lines = key_lines(text)
    for i, k in enumerate(keys):
        assert lines[("steps", 0, k)] == i + 2
