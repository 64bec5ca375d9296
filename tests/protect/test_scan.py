"""The model scanner on synthetic app packages: models, protection, frameworks, unsafe pickles,
hostile archives skipped, never a crash."""

import io
import json
import os
import pickle
import zipfile
import zlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.cli.main import main
from veil.protect.scan import detect_format, entropy, pickle_imports, scan

EVIL_PICKLE = b"\x80\x02cos\nsystem\nq\x00X\x07\x00\x00\x00echo hiq\x01\x85q\x02Rq\x03."


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _torch_zip() -> bytes:
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(3)}, buf)
    return buf.getvalue()


@pytest.fixture
def apk(tmp_path):
    tflite = b"\x1c\x00\x00\x00TFL3" + os.urandom(2000)
    inner = _zip({"models/face.onnx.enc": os.urandom(20_000)})
    members = {
        "assets/detector.tflite": tflite,
        "assets/model.bin": os.urandom(40_000),  # encrypted
        "assets/aes.key": os.urandom(32),  # ... with its key beside it
        "assets/classifier.model": zlib.compress(b"weights " * 20_000, 9) + os.urandom(9000),
        "assets/net.pkl": EVIL_PICKLE,
        "assets/resnet.pt": _torch_zip(),
        "lib/arm64-v8a/libtensorflowlite_jni.so": b"\x7fELF...tensorflow lite: tflite::Interpreter",
        "lib/arm64-v8a/libncnn.so": b"\x7fELF...ncnn...",
        "../../evil.tflite": tflite,
        "assets/bomb.bin": b"\0" * (8 << 20),
        "nested.zip": inner,
    }
    path = tmp_path / "app.apk"
    path.write_bytes(_zip(members))
    return path


def test_scan_finds_models_protection_and_frameworks(apk):
    report = scan(apk).to_dict()
    by_name = {m["path"].rsplit("!/", 1)[-1]: m for m in report["models"]}
    assert by_name["assets/detector.tflite"]["format"] == "tflite"
    assert by_name["assets/detector.tflite"]["protection"] == "plain"
    assert by_name["assets/model.bin"]["protection"] == "encrypted"
    assert by_name["assets/model.bin"]["key_beside"] is not None
    assert by_name["assets/resnet.pt"]["format"] == "pytorch"
    assert by_name["models/face.onnx.enc"]["protection"] == "encrypted"  # in a nested zip
    assert {"tensorflow", "tflite", "ncnn"} <= set(report["frameworks"])
    assert any("os.system" in u["reason"] for u in report["unsafe"])
    assert not any("resnet.pt" in u["path"] for u in report["unsafe"])  # torch's own globals
    reasons = " ".join(s["reason"] for s in report["skipped"])
    assert "path traversal" in reasons and "zip bomb" in reasons


def test_compressed_is_told_apart_from_encrypted(tmp_path):
    comp = tmp_path / "m.model"
    comp.write_bytes(zlib.compress(os.urandom(30_000)))
    enc = tmp_path / "e.model"
    enc.write_bytes(os.urandom(30_000))
    models = {m["path"]: m["protection"] for m in scan(tmp_path).models}
    assert models[str(comp)] == "compressed" and models[str(enc)] == "encrypted"


def test_content_detection_and_pickle_reading():
    assert detect_format(b"\x00\x00\x00\x00TFL3rest", "x") == "tflite"
    assert detect_format(b"GGUF\x03", "x") == "gguf"
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    assert (
        detect_format(len(header).to_bytes(8, "little") + header + b"\0" * 4, "x") == "safetensors"
    )
    assert pickle_imports(EVIL_PICKLE) == ["os.system"]
    assert pickle_imports(pickle.dumps({"a": 1})) == []
    assert entropy(b"\0" * 100) == 0.0 and entropy(bytes(range(256))) == 8.0


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=3000))
def test_never_crashes_on_garbage(tmp_path_factory, data):
    d = tmp_path_factory.mktemp("g")
    (d / "x.model").write_bytes(data)
    (d / "y.apk").write_bytes(b"PK\x03\x04" + data)
    scan(d)


def test_cli_scan_json_sarif_and_policy(apk, tmp_path, capsys):
    assert main(["model", "scan", str(apk), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {"models", "unsafe", "frameworks", "skipped"} <= doc.keys()
    sarif = tmp_path / "r.sarif"
    assert main(["model", "scan", str(apk), "--sarif", str(sarif), "--fail-on", "unsafe"]) == 1
    assert json.loads(sarif.read_text())["version"] == "2.1.0"
    assert main(["model", "scan", str(apk), "--fail-on", "bogus"]) == 2


def test_pickles_inside_pytorch_zips_go_through_the_bomb_guard(tmp_path):
    bomb = _zip({"archive/data.pkl": b"\x80\x02" + b"\0" * (16 << 20), "archive/version": b"3"})
    (tmp_path / "m.pt").write_bytes(bomb)
    report = scan(tmp_path / "m.pt")
    assert report.models[0]["format"] == "pytorch"
    assert any("zip bomb" in s["reason"] for s in report.skipped)


def test_small_encrypted_files_are_called_encrypted_at_every_size():
    from veil.protect.scan import ENCRYPTED_ENTROPY, entropy_estimate

    for size in (8192, 12_000, 20_000, 40_000):
        estimates = [entropy_estimate(os.urandom(size)) for _ in range(40)]
        assert min(estimates) >= ENCRYPTED_ENTROPY, size
    assert entropy_estimate(zlib.compress(b"weights " * 20_000, 9)) < ENCRYPTED_ENTROPY
