"""Model files: exact round trip, overwrite refused, damaged or foreign files refused."""

import json

import pytest
import torch
from safetensors.torch import save_file

from veil.core import models
from veil.core.errors import ModelFileError, VeilError
from veil.core.io import (
    atomic_write,
    load_model,
    read_header,
    save_model,
    tensors_equal,
    write_json,
)


@pytest.fixture
def saved(tmp_path):
    spec = models.spec_of("mlp", (1, 8, 8), 10, hidden=[16])
    net = spec.build()
    path = save_model(
        tmp_path / "m.veil", net, spec, classes=list("0123456789"), extra={"data": "digits"}
    )
    return path, net, spec


def test_round_trip(saved):
    path, net, spec = saved
    loaded = load_model(path)
    assert loaded.spec == spec and loaded.classes == list("0123456789")
    assert loaded.extra == {"data": "digits"}
    assert tensors_equal(loaded.model, net)
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(loaded.model(x), net.eval()(x))
    assert read_header(path)["veil_version"]


def test_overwrite_refused_unless_forced(saved):
    path, net, spec = saved
    before = path.read_bytes()
    with pytest.raises(VeilError, match="--force"):
        save_model(path, net, spec)
    assert path.read_bytes() == before
    save_model(path, net, spec, force=True)


def test_garbage_and_truncated_files(saved, tmp_path):
    path, _, _ = saved
    bad = tmp_path / "bad.veil"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFileError, match="not a veil model file"):
        load_model(bad)
    bad.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ModelFileError):
        load_model(bad)
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "missing.veil")


def test_foreign_safetensors_refused(tmp_path):
    p = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(p))
    with pytest.raises(ModelFileError, match="without a veil header"):
        load_model(p)


def test_tampered_header_refused(saved, tmp_path):
    path, net, spec = saved
    header = read_header(path)
    header["model"]["num_classes"] = 3  # header no longer fits the weights
    p = tmp_path / "t.veil"
    save_file(
        {k: v.contiguous() for k, v in net.state_dict().items()},
        str(p),
        metadata={"veil": json.dumps(header)},
    )
    with pytest.raises(ModelFileError, match="do not fit"):
        load_model(p)
    header["format"] = "pickle"
    save_file({"w": torch.zeros(1)}, str(p), metadata={"veil": json.dumps(header)})
    with pytest.raises(ModelFileError, match="bad format"):
        load_model(p)


def test_atomic_write_leaves_no_temporaries(tmp_path):
    atomic_write(tmp_path / "a.txt", "x")
    write_json(tmp_path / "b.json", {"k": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json"]
    with pytest.raises(ValueError):
        write_json(tmp_path / "c.json", {"k": float("nan")})
    assert not (tmp_path / "c.json").exists()
