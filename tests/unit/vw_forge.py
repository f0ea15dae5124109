"""Forged Vowpal Wabbit model files, as a hostile client could write them: a real model with
its header rewritten and its checksum made right again (VW's chained MurmurHash3 over the
header fields after the version string, as VW 8.0.2 and later read them)."""

from __future__ import annotations

import struct


def _murmur3(data: bytes, seed: int) -> int:
    c1, c2, mask = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF
    h = seed & mask
    whole = len(data) // 4 * 4
    for i in range(0, whole, 4):
        (k,) = struct.unpack_from("<I", data, i)
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        h ^= (k * c2) & mask
        h = ((h << 13) | (h >> 19)) & mask
        h = (h * 5 + 0xE6546B64) & mask
    k = 0
    for i, byte in enumerate(data[whole:]):
        k |= byte << (8 * i)
    if len(data) > whole:
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        h ^= (k * c2) & mask
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & mask
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & mask
    return h ^ (h >> 16)


def _string(value: bytes) -> bytes:
    return struct.pack("<I", len(value)) + value


def forge_model(
    blob: bytes,
    *,
    extra_options: str = "",
    model_id: str | None = None,
    bits: int | None = None,
) -> bytes:
    """``blob`` (a model VW saved) with options appended to its header, another id or
    another bit count, and a checksum VW accepts."""
    offset = 0

    def take(size: int) -> bytes:
        nonlocal offset
        offset += size
        return blob[offset - size : offset]

    def string() -> bytes:
        (size,) = struct.unpack("<I", take(4))
        return take(size)

    version = string()
    old_id = string()
    marker, labels = take(1), take(8)
    (old_bits,) = struct.unpack("<I", take(4))
    lda, ngrams, skips = take(4), take(4), take(4)
    assert ngrams == skips == b"\0\0\0\0", "a model with n-grams or skips"
    options = string()
    checksum_size = take(4)
    take(4)  # the old checksum
    new_id = old_id if model_id is None else model_id.encode() + b"\0"
    new_options = options.rstrip(b"\0") + extra_options.encode() + b"\0"
    chunks = [
        struct.pack("<I", len(new_id)),
        new_id,
        marker,
        labels[:4],
        labels[4:],
        struct.pack("<I", old_bits if bits is None else bits),
        lda,
        ngrams,
        skips,
        struct.pack("<I", len(new_options)),
        new_options,
    ]
    checksum = 0
    for chunk in chunks:
        checksum = _murmur3(chunk, checksum)
    return (
        _string(version)
        + b"".join(chunks)
        + checksum_size
        + struct.pack("<I", checksum)
        + blob[offset:]
    )
