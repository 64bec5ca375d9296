import dataclasses

import pytest

from veil.enclave.attest import AttestationError, Evidence, Policy, SimulatedBackend
from veil.enclave.broker import EnclaveKey, KeyBroker

DATA_KEY = bytes(range(32))


@pytest.fixture
def runtime(tmp_path):
    files = []
    for name, text in (("runtime.py", "print('trusted')"), ("sandbox.py", "x = 1")):
        (tmp_path / name).write_text(text)
        files.append(tmp_path / name)
    return files


def _backend(runtime, tmp_path, policy=b"policy-v1"):
    return SimulatedBackend(runtime, policy, tmp_path / "platform")


def _broker(backend):
    policy = Policy(frozenset({backend.measure().hex()}), frozenset({backend.platform_key().hex()}))
    return KeyBroker(DATA_KEY, policy)


def test_attested_enclave_gets_the_key(runtime, tmp_path):
    backend = _backend(runtime, tmp_path)
    broker, enclave = _broker(backend), EnclaveKey()
    nonce = broker.challenge()
    evidence = enclave.attest(backend, nonce)
    wrapped = broker.release(Evidence.from_json(evidence.to_json()), enclave.public(), nonce)
    assert enclave.unwrap(wrapped, backend.measure()) == DATA_KEY
    with pytest.raises(AttestationError, match="cannot unwrap"):
        enclave.unwrap(wrapped, bytes(32))  # the key is bound to the measurement
    with pytest.raises(AttestationError, match="cannot unwrap"):
        EnclaveKey().unwrap(wrapped, backend.measure())  # and to this enclave's key


def test_replayed_forged_and_foreign_quotes_are_refused(runtime, tmp_path):
    backend = _backend(runtime, tmp_path)
    broker, enclave = _broker(backend), EnclaveKey()
    nonce = broker.challenge()
    evidence = enclave.attest(backend, nonce)
    broker.release(evidence, enclave.public(), nonce)
    with pytest.raises(AttestationError, match="spent"):
        broker.release(evidence, enclave.public(), nonce)  # replay
    nonce = broker.challenge()
    with pytest.raises(AttestationError, match="report data"):
        broker.release(evidence, enclave.public(), nonce)  # old quote, new nonce
    nonce = broker.challenge()
    fresh = enclave.attest(backend, nonce)
    forged = dataclasses.replace(fresh, measurement=bytes(32))
    with pytest.raises(AttestationError, match="signature"):
        broker.release(forged, enclave.public(), nonce)
    nonce = broker.challenge()
    with pytest.raises(AttestationError, match="report data"):
        broker.release(enclave.attest(backend, nonce), EnclaveKey().public(), nonce)


def test_tampered_runtime_or_policy_changes_the_measurement(runtime, tmp_path):
    honest = _backend(runtime, tmp_path)
    broker = _broker(honest)
    other_policy = _backend(runtime, tmp_path, policy=b"policy-v2")
    assert other_policy.measure() != honest.measure()
    runtime[1].write_text("x = 2  # patched")
    patched = _backend(runtime, tmp_path)
    assert patched.measure() != honest.measure()
    for backend in (other_policy, patched):
        enclave, nonce = EnclaveKey(), broker.challenge()
        with pytest.raises(AttestationError, match="allow-list"):
            broker.release(enclave.attest(backend, nonce), enclave.public(), nonce)


def test_untrusted_platform_key_is_refused(runtime, tmp_path):
    broker = _broker(_backend(runtime, tmp_path))
    rogue = SimulatedBackend(runtime, b"policy-v1", tmp_path / "rogue-platform")
    enclave, nonce = EnclaveKey(), broker.challenge()
    with pytest.raises(AttestationError, match="does not trust"):
        broker.release(enclave.attest(rogue, nonce), enclave.public(), nonce)


def test_sealing_is_bound_to_the_measurement(runtime, tmp_path):
    backend = _backend(runtime, tmp_path)
    blob = backend.seal(b"model weights")
    assert backend.unseal(blob) == b"model weights"
    assert _backend(runtime, tmp_path).unseal(blob) == b"model weights"  # same platform
    with pytest.raises(AttestationError, match="another measurement"):
        _backend(runtime, tmp_path, policy=b"policy-v2").unseal(blob)
