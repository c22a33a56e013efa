from __future__ import annotations

import numpy as np
import pytest

from a2lc.interop.rle import decode_mask, decode_values, encode_mask, encode_values


def test_masks_round_trip() -> None:
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (7, 5), (48, 64), (300, 400)]:
        mask = rng.random(shape) > 0.7
        mask[: shape[0] // 2, : shape[1] // 2] = True  # one long run too
        rle = encode_mask(mask)
        assert all(0 <= v <= 255 for v in rle)
        np.testing.assert_array_equal(decode_mask(rle, height=shape[0], width=shape[1]), mask)
    empty = np.zeros((200, 400), dtype=bool)  # 320,000 values: runs longer than one field
    np.testing.assert_array_equal(decode_mask(encode_mask(empty), height=200, width=400), empty)


def bits(value: int, count: int) -> str:
    return format(value, f"0{count}b")


def test_decoder_reads_literal_runs_and_other_field_sizes() -> None:
    # Written by hand: 6 values, 8-bit words, field sizes (2, 3, 4, 5); a literal run
    # [1, 2, 3] (selector 0: length-1 = 2 in 2 bits) then 3 × 255 (selector 1, 3 bits).
    stream = bits(6, 32) + bits(7, 5) + bits(1, 4) + bits(2, 4) + bits(3, 4) + bits(4, 4)
    stream += "0" + bits(0, 2) + bits(2, 2) + bits(1, 8) + bits(2, 8) + bits(3, 8)
    stream += "1" + bits(1, 2) + bits(2, 3) + bits(255, 8)
    stream += "0" * (-len(stream) % 8)
    rle = [int(stream[i : i + 8], 2) for i in range(0, len(stream), 8)]
    assert decode_values(rle).tolist() == [1, 2, 3, 255, 255, 255]


def test_bad_rle_is_refused() -> None:
    rle = encode_mask(np.ones((4, 4), dtype=bool))
    with pytest.raises(ValueError, match="expected 5×4×4"):
        decode_mask(rle, height=5, width=4)
    with pytest.raises(ValueError, match="ends early"):
        decode_values(rle[:6])
    with pytest.raises(ValueError, match="byte values"):
        decode_values([300])


def test_values_round_trip_with_single_values_and_chunked_runs() -> None:
    rng = np.random.default_rng(1)
    runs = [1, 2, 8, 9, 16, 17, 256, 257, 65_536, 65_537, 131_073, 1]
    values = np.concatenate([np.full(n, rng.integers(0, 256)) for n in runs])
    values = np.concatenate([values, rng.integers(0, 256, 50)])  # single values: literals
    np.testing.assert_array_equal(decode_values(encode_values(values)), values)
    # The mask encoder writes what the value encoder writes for the RGBA image.
    mask = rng.random((300, 500)) > 0.5
    mask[:200] = True  # 100,000 pixels: runs longer than one chunk
    rgba = np.repeat(np.where(mask, 255, 0).ravel(), 4)
    assert encode_mask(mask) == encode_values(rgba)
    with pytest.raises(ValueError, match="bytes"):
        encode_values(np.array([0, 256]))
