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
"""Bits of the four run-length field sizes this encoder writes (Label Studio's)."""
CHANNELS = 4
INSIDE = 255


REPEAT_LIMIT = 1 << RUN_FIELD_BITS[-1]
"""Longest run one chunk holds (a 16-bit length field)."""


def _pack(values: np.ndarray, widths: np.ndarray) -> list[int]:
    """Bytes of the fields ``values`` (``(F,)`` non-negative ints) of ``widths`` bits each,
    most significant bit first, then 1..8 zero bits (a whole zero byte when aligned, as
    Label Studio's encoder writes)."""
    total = int(widths.sum())
    field = np.repeat(np.arange(widths.size), widths)
    # Position of each bit inside its field, counted from the field's last bit.
    ends = np.cumsum(widths)
    shift = ends[field] - 1 - np.arange(total)
    bits = (values[field] >> shift) & 1
    bits = np.concatenate([bits, np.zeros(8 - total % 8, dtype=bits.dtype)])
    return np.packbits(bits.astype(np.uint8)).tolist()


def runs(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, lengths)`` (int64, ``(R,)`` each) of the runs of equal values in ``(V,)``
    ``flat``; both empty for an empty array."""
    if flat.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate([[0], change]).astype(np.int64)
    return starts, np.diff(np.concatenate([starts, [flat.size]])).astype(np.int64)


def encode_values(values: np.ndarray) -> list[int]:
    """Label Studio ``rle`` of ``(V,)`` byte values, byte for byte as its converter's
    ``encode_rle`` writes it (a run of one: a literal chunk; longer runs: the smallest
    length field that holds them, up to 256; longer: 65,536-long chunks, then the rest,
    all with 16-bit fields)."""
    flat = np.asarray(values).ravel().astype(np.int64)
    if flat.size and (flat.min() < 0 or flat.max() > 255):
        raise ValueError("rle values must be bytes 0..255")
    starts, lengths = runs(flat)
    return _encode_runs(lengths, flat[starts], flat.size)


def _encode_runs(lengths: np.ndarray, run_values: np.ndarray, total: int) -> list[int]:
    """The rle of runs ``lengths`` of ``run_values`` (``(R,)`` each) over ``total`` values."""
    # Long runs: 65,536-long chunks first, then the rest (all in 16-bit fields).
    full = np.where(lengths > 256, (lengths - 1) // REPEAT_LIMIT, 0)
    chunks = full + 1
    run = np.repeat(np.arange(lengths.size), chunks)
    first = np.cumsum(chunks) - chunks
    index_in_run = np.arange(run.size) - first[run]
    last = index_in_run == full[run]
    length = np.where(last, lengths[run] - full[run] * REPEAT_LIMIT, REPEAT_LIMIT)
    selector = np.select(
        [lengths[run] > 256, length > 16, length > 8], [3, 2, 1], default=0
    ).astype(np.int64)
    field_bits = np.asarray(RUN_FIELD_BITS, dtype=np.int64)[selector]
    repeat = (length > 1).astype(np.int64)
    # Per chunk: flag, selector, length − 1, value.
    fields = np.stack([repeat, selector, length - 1, run_values[run].astype(np.int64)], axis=1)
    widths = np.stack(
        [
            np.ones_like(field_bits),
            np.full_like(field_bits, 2),
            field_bits,
            np.full_like(field_bits, WORD_BITS),
        ],
        axis=1,
    )
    header = np.asarray([total, WORD_BITS - 1, *[b - 1 for b in RUN_FIELD_BITS]], dtype=np.int64)
    header_widths = np.asarray([32, 5, 4, 4, 4, 4], dtype=np.int64)
    return _pack(
        np.concatenate([header, fields.ravel()]), np.concatenate([header_widths, widths.ravel()])
    )


def encode_mask(mask: np.ndarray) -> list[int]:
    """Label Studio ``rle`` (list of byte values) for an ``H×W`` bool mask: its RGBA
    image (255 inside, 0 outside), byte for byte as Label Studio's ``mask2rle``."""
    flat = np.asarray(mask, dtype=bool).ravel()
    # Runs over pixels, four values each: no need to build the H·W·4 array.
    starts, lengths = runs(flat)
    values = np.where(flat[starts], INSIDE, 0).astype(np.int64)
    return _encode_runs(lengths * CHANNELS, values, flat.size * CHANNELS)


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
