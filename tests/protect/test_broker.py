"""Model keys released by a broker only to attested devices; never stored beside the model."""

import json

import pytest

from veil.core.net import ServiceProcess
from veil.enclave.chunks import check_sealed
from veil.protect.broker import BrokerError, Device, seal_with_broker, unseal_with_broker

MODEL = b"weights of a model" * 100


@pytest.fixture
def broker(tmp_path):
    folder = tmp_path / "broker"
    args = ["model", "broker", "--folder", str(folder)]
    with ServiceProcess(args, "/v1/health", "key broker") as svc:
        yield svc.url, (folder / "broker.token").read_text().strip(), folder


def test_only_allowed_devices_get_the_key(broker, tmp_path):
    url, token, folder = broker
    phone, other = Device(tmp_path / "phone"), Device(tmp_path / "other")
    blob = seal_with_broker(MODEL, url, token, [phone.identity()])
    assert MODEL[:32] not in blob and check_sealed(blob)["label"].startswith("veil-model:")
    assert unseal_with_broker(blob, url, phone) == MODEL
    with pytest.raises(BrokerError, match="403.*does not trust"):
        unseal_with_broker(blob, url, other)  # a device the owner did not allow
    stored = list((folder / "keys").iterdir())
    assert len(stored) == 1 and oct(stored[0].stat().st_mode & 0o777) == "0o600"
    with pytest.raises(BrokerError, match="401"):
        seal_with_broker(MODEL, url, "wrong-token", [phone.identity()])


def test_a_patched_device_runtime_is_refused(broker, tmp_path, monkeypatch):
    url, token, _ = broker
    phone = Device(tmp_path / "phone")
    blob = seal_with_broker(MODEL, url, token, [phone.identity()])
    patched = Device(tmp_path / "phone")  # same platform key, other runtime measurement
    monkeypatch.setattr(patched.backend, "_measurement", bytes(32))
    with pytest.raises(BrokerError, match="403"):
        unseal_with_broker(blob, url, patched)


def test_cli_seal_and_unseal_through_the_broker(broker, tmp_path, capsys):
    from veil.cli.main import main

    url, _, folder = broker
    model = tmp_path / "m.veil"
    assert (
        main(["-q", "train", "-d", "digits", "-m", "mlp", "--epochs", "1", "-o", str(model)]) == 0
    )
    assert main(["model", "device", str(tmp_path / "dev")]) == 0
    assert json.loads(capsys.readouterr().out)["measurement"]
    sealed = tmp_path / "m.sealed"
    args = ["model", "seal", str(model), "--broker", url, "--token-file",
            str(folder / "broker.token"), "--allow-device", str(tmp_path / "dev" / "device.json"),
            "-o", str(sealed)]  # fmt: skip
    assert main(args) == 0
    assert main(["model", "unseal", str(sealed), "--broker", url, "--device",
                 str(tmp_path / "dev")]) == 0  # fmt: skip
    assert "authentic; mlp" in capsys.readouterr().out
    assert main(["model", "unseal", str(sealed), "--broker", url]) == 2
    assert "--device" in capsys.readouterr().err
