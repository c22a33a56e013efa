"""Label Studio's brush RLE (the ``rle-pack`` bit stream), for ``H×W`` masks.

A brush region is the RGBA image of its mask (every channel 255 inside, 0
outside) flattened to ``H·W·4`` bytes, run-length packed into a bit stream
(most significant bit first): a 32-bit value count, 5 bits word size − 1, four
4-bit run-length field sizes − 1, then chunks. Each chunk is a flag bit (1: one
value repeated, 0: literal values), a 2-bit field-size selector, the chunk
length − 1 in that many bits, then one value (repeat) or that many values
(literal), each ``word size`` bits.
"""

from __future__ import annotations

import numpy as np

WORD_BITS = 8
RUN_FIELD_BITS = (3, 4, 8, 16)
"""Bits of the four run-length field sizes this encoder writes (the common choice)."""
CHANNELS = 4
INSIDE = 255


class _BitWriter:
    def __init__(self) -> None:
        self.chunks: list[str] = []

    def write(self, value: int, bits: int) -> None:
        self.chunks.append(format(value, f"0{bits}b"))

    def to_bytes(self) -> list[int]:
        bits = "".join(self.chunks)
        # As Label Studio's encoder: always 1..8 zero bits (a whole zero byte when aligned),
        # so an unchanged brush comes back byte for byte.
        bits += "0" * (8 - len(bits) % 8)
        return [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]


def encode_mask(mask: np.ndarray) -> list[int]:
    """Label Studio ``rle`` (list of byte values) for an ``H×W`` bool mask."""
    flat = np.repeat(np.asarray(mask, dtype=bool).ravel(), CHANNELS)
    values = np.where(flat, INSIDE, 0).astype(np.int64)
    writer = _BitWriter()
    writer.write(values.size, 32)
    writer.write(WORD_BITS - 1, 5)
    for bits in RUN_FIELD_BITS:
        writer.write(bits - 1, 4)
    if values.size:
        change = np.flatnonzero(np.diff(values)) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [values.size]])
        limit = (1 << RUN_FIELD_BITS[-1]) - 1
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            value = int(values[start])
            remaining = end - start
            while remaining:
                length = min(remaining, limit + 1)
                selector = next(i for i, b in enumerate(RUN_FIELD_BITS) if length - 1 < (1 << b))
                writer.write(1, 1)
                writer.write(selector, 2)
                writer.write(length - 1, RUN_FIELD_BITS[selector])
                writer.write(value, WORD_BITS)
                remaining -= length
    return writer.to_bytes()


def decode_values(
    rle: list[int], *, expected: int | None = None, shape: str | None = None
) -> np.ndarray:
    """The flattened byte values of a Label Studio ``rle`` (any field sizes, literal runs too).

    ``expected``: the number of values it must hold, checked before anything is
    allocated (a hostile header may claim four billion).
    """
    try:
        bits = np.unpackbits(np.asarray(rle, dtype=np.uint8))
    except (ValueError, OverflowError, TypeError):
        raise ValueError("rle must be a list of byte values 0..255") from None
    position = 0

    def read(count: int) -> int:
        nonlocal position
        if position + count > bits.size:
            raise ValueError("rle ends early")
        chunk = bits[position : position + count]
        position += count
        return int("".join(map(str, chunk.tolist())) or "0", 2)

    total = read(32)
    if expected is not None and total != expected:
        raise ValueError(f"rle holds {total} values, expected {shape or expected} for this image")
    word = read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    out = np.zeros(total, dtype=np.int64)
    i = 0
    while i < total:
        repeat = read(1)
        end = i + 1 + read(sizes[read(2)])
        if end > total:
            raise ValueError("rle run passes the end of the image")
        if repeat:
            out[i:end] = read(word)
        else:
            for k in range(i, end):
                out[k] = read(word)
        i = end
    return out


def decode_mask(rle: list[int], *, height: int, width: int) -> np.ndarray:
    """``H×W`` bool mask of a Label Studio ``rle`` (a pixel is inside where its alpha is set)."""
    values = decode_values(
        rle, expected=height * width * CHANNELS, shape=f"{height}×{width}×{CHANNELS}"
    )
    if values.size != height * width * CHANNELS:
        raise ValueError(
            f"rle holds {values.size} values, expected {height}×{width}×{CHANNELS} for this image"
        )
    return np.asarray(values.reshape(height, width, CHANNELS)[..., 3] > 0)
