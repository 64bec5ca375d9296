import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.enclave.chunks import ChunkError, open_sealed, seal, seal_chunks

KEY = bytes(range(32))


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 64))
def test_round_trip_any_size(data, chunk):
    assert open_sealed(seal(data, KEY, "x", chunk), KEY, "x") == data


def _parts(data: bytes, chunk: int) -> tuple[bytes, list[bytes]]:
    header, *chunks = seal_chunks(data, KEY, "", chunk)
    return header, chunks


@pytest.mark.parametrize(
    "attack",
    ["swap", "drop_last", "drop_middle", "repeat", "flip", "truncate_bytes", "append"],
)
def test_tampering_is_refused(attack):
    header, chunks = _parts(os.urandom(100), 16)
    if attack == "swap":
        chunks[1], chunks[2] = chunks[2], chunks[1]
    elif attack == "drop_last":
        chunks = chunks[:-1]
    elif attack == "drop_middle":
        del chunks[3]
    elif attack == "repeat":
        chunks.insert(2, chunks[2])
    elif attack == "flip":
        chunks[0] = bytes([chunks[0][0] ^ 1]) + chunks[0][1:]
    elif attack == "truncate_bytes":
        chunks[-1] = chunks[-1][:-3]
    else:
        chunks.append(chunks[-1])
    with pytest.raises(ChunkError, match="fails authentication"):
        open_sealed(header + b"".join(chunks), KEY)


def test_wrong_key_label_and_garbage():
    blob = seal(b"records", KEY, "owner-data")
    with pytest.raises(ChunkError, match="fails authentication"):
        open_sealed(blob, bytes(32), "owner-data")
    with pytest.raises(ChunkError, match="labelled 'owner-data'"):
        open_sealed(blob, KEY, "other")
    with pytest.raises(ChunkError, match="bad magic"):
        open_sealed(b"junk" * 10, KEY)
