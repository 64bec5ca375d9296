"""Stego embedding and image sharing: exact round trips, capacity, lossy covers refused."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from veil.core.metrics import psnr, ssim
from veil.imaging.images import (
    hide_share,
    pixel_part,
    read_image,
    read_share,
    recover_image,
    share_image,
    write_image,
)
from veil.imaging.shamir import ShareError
from veil.imaging.stego import StegoError, capacity, embed, extract, read_cover

KEY = b"k" * 32


@settings(max_examples=25, deadline=None)
@given(
    data=st.binary(max_size=500),
    bits=st.sampled_from([1, 2]),
    dtype=st.sampled_from([np.uint8, np.uint16]),
)
def test_embed_extract_round_trip(data, bits, dtype):
    cover = np.random.default_rng(1).integers(0, np.iinfo(dtype).max, (40, 50, 3), dtype=dtype)
    stego = embed(cover, data, KEY, bits)
    assert extract(stego, KEY, bits) == data
    changed = np.abs(stego.astype(np.int64) - cover.astype(np.int64))
    assert changed.max() < 2**bits  # only the low bits move
    if data:
        with pytest.raises(StegoError):
            if extract(stego, b"other key" * 4, bits) != data:
                raise StegoError("different key, different data")


def _reference_embed(cover, data, key, bits):
    """The layout spelled out value by value: a 4-byte length, then the data, as ``bits``-bit
    symbols (most significant first), into the keyed blocks' values in order."""
    import struct

    from veil.imaging.stego import BLOCK, _blocks

    stream = np.unpackbits(np.frombuffer(struct.pack(">I", len(data)) + data, dtype=np.uint8))
    symbols = stream if bits == 1 else (stream[0::2] << 1) | stream[1::2]
    flat = cover.reshape(-1).copy()
    rows, _ = _blocks(key, flat.size // BLOCK, -(-len(symbols) // BLOCK))
    for i, s in enumerate(symbols):
        at = rows[i // BLOCK] * BLOCK + i % BLOCK
        flat[at] = (int(flat[at]) >> bits << bits) | int(s)
    return flat.reshape(cover.shape)


@settings(max_examples=30, deadline=None)
@given(
    data=st.data(),
    bits=st.sampled_from([1, 2]),
    dtype=st.sampled_from(["u1", "<u2", ">u2"]),
    shape=st.sampled_from([(24, 40, 3), (37, 29), (8, 8)]),
)
def test_embed_writes_the_v1_layout(data, bits, dtype, shape):
    # the fast path works on 32-bit words a chunk of blocks at a time; the stored layout
    # must stay the one a value-by-value writer produces (and a partly used last block
    # must keep the rest of its values)
    cover = np.random.default_rng(4).integers(0, 250, shape).astype(dtype)
    payload = data.draw(st.binary(max_size=capacity(shape, bits)))
    stego = embed(cover, payload, KEY, bits)
    assert stego.dtype == cover.dtype
    assert np.array_equal(stego, _reference_embed(cover, payload, KEY, bits))
    assert np.array_equal(embed(np.asfortranarray(cover), payload, KEY, bits), stego)


@pytest.mark.parametrize(("bits", "dtype"), [(1, np.uint8), (2, np.uint8), (1, np.uint16)])
def test_embed_in_place_writes_what_a_copy_gets(bits, dtype):
    cover = np.random.default_rng(6).integers(0, 250, (33, 47, 3)).astype(dtype)
    payload = np.random.default_rng(7).bytes(capacity(cover.shape, bits) // 2 + 3)
    copy = embed(cover, payload, KEY, bits)
    target = cover.copy()
    assert np.shares_memory(embed(target, payload, KEY, bits, out=target), target)
    assert np.array_equal(target, copy) and extract(target, KEY, bits) == payload
    elsewhere = np.zeros_like(cover)
    embed(cover, payload, KEY, bits, out=elsewhere)
    assert np.array_equal(elsewhere, copy) and not np.array_equal(cover, copy)


def test_embed_refuses_an_out_it_cannot_write_exactly():
    cover = np.zeros((40, 40, 3), dtype=np.uint8)
    shifted = np.zeros(4803, dtype=np.uint8)
    with pytest.raises(StegoError, match="overlaps"):
        embed(shifted[:4800].reshape(40, 40, 3), b"abc", KEY, out=shifted[3:].reshape(40, 40, 3))
    with pytest.raises(StegoError, match="C-contiguous"):
        embed(cover, b"abc", KEY, out=np.zeros((40, 40, 3), dtype=np.uint16))
    with pytest.raises(StegoError, match="C-contiguous"):
        embed(cover, b"abc", KEY, out=np.zeros((40, 40, 3), dtype=np.uint8).T)


def test_capacity_error_says_what_is_missing():
    cover = np.zeros((16, 16), dtype=np.uint8)
    with pytest.raises(StegoError, match="cover too small"):
        embed(cover, b"x" * (capacity(cover.shape) + 1), KEY)
    embed(cover, b"x" * capacity(cover.shape), KEY)


def test_psnr_at_one_bit_per_channel_is_high():
    cover = np.random.default_rng(2).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    stego = embed(cover, np.random.default_rng(3).bytes(capacity(cover.shape)), KEY)
    assert psnr(cover, stego) > 50 and ssim(cover, stego) > 0.999
    assert psnr(cover, cover) == float("inf")


def test_jpeg_cover_refused(tmp_path):
    Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8)).save(tmp_path / "c.jpg")
    with pytest.raises(StegoError, match="lossless"):
        read_cover(tmp_path / "c.jpg")


@pytest.mark.parametrize(
    ("shape", "dtype", "fmt"),
    [((30, 40), np.uint16, "PNG"), ((30, 40, 3), np.uint8, "TIFF"), ((25, 25), np.uint8, "PNG")],
)
def test_image_round_trip_through_files_and_covers(tmp_path, shape, dtype, fmt):
    pixels = np.random.default_rng(4).integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
    src = write_image(tmp_path / f"scan.{fmt.lower()}", pixels, fmt)
    read, read_fmt = read_image(src)
    assert read.dtype == dtype and np.array_equal(read, pixels) and read_fmt == fmt
    shares = share_image(read, 2, 3, read_fmt)
    covers = [
        np.random.default_rng(i).integers(0, 256, (120, 120, 3), dtype=np.uint8) for i in range(3)
    ]
    paths = []
    for s, c in zip(shares, covers, strict=True):
        paths.append(write_image(tmp_path / f"s{s.index}.png", hide_share(s, c, KEY)))
    back, meta = recover_image([read_share(p, KEY) for p in paths[1:]])
    assert back.dtype == dtype and np.array_equal(back, pixels) and meta["used"] == [2, 3]


def test_tampered_stego_image_detected(tmp_path):
    pixels = np.arange(400, dtype=np.uint8).reshape(20, 20)
    shares = share_image(pixels, 2, 3)
    cover = np.zeros((60, 60, 3), dtype=np.uint8)
    stego = [hide_share(s, cover, KEY) for s in shares]
    stego[0] ^= 1  # flip every low bit of one stego image
    with pytest.raises((ShareError, StegoError)):
        recover_image([read_share_from(stego[0]), read_share_from(stego[1])])


def read_share_from(image):
    from veil.imaging.shamir import Share

    return Share.from_bytes(extract(image, KEY))


def test_bad_images_refused(tmp_path):
    Image.fromarray(np.zeros((4, 4), dtype=np.float32)).save(tmp_path / "f.tiff")
    with pytest.raises(ShareError, match="not supported"):
        read_image(tmp_path / "f.tiff")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ShareError, match="cannot read"):
        read_image(tmp_path / "junk.png")
    with pytest.raises(StegoError, match="stego key"):
        read_share(tmp_path / "junk.png")


@settings(max_examples=15, deadline=None)
@given(st.integers(2, 4), st.data())
def test_pixel_parts_xor_to_the_image(k, data):
    pixels = np.random.default_rng(k).integers(0, 256, (5, 7), dtype=np.uint8)
    shares = share_image(pixels, k, k + 1)
    chosen = data.draw(st.permutations(shares))[:k]
    holders = [s.index for s in chosen]
    cut = data.draw(st.integers(1, k - 1))  # two parties: one holds the first cut shares
    a, meta = pixel_part(chosen[:cut], holders)
    b, _ = pixel_part(chosen[cut:], holders)
    assert np.array_equal(a ^ b, pixels) and meta["shape"] == [5, 7]
    assert not np.array_equal(a, pixels)
    with pytest.raises(ShareError, match="8-bit"):
        pixel_part(share_image(pixels.astype(np.uint16), 2, 2), [1, 2])
    with pytest.raises(ShareError, match="different sharings"):
        pixel_part([shares[0], share_image(pixels, k, k + 1)[1]], holders)
