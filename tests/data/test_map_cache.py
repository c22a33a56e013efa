from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from a2lc.data.map_cache import MapCache
from a2lc.data.maps import read_segment_map, write_segment_map
from a2lc.errors import DataError


class CountingDecoder:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, path: Path) -> np.ndarray:
        self.calls += 1
        return read_segment_map(path)


@pytest.fixture
def segment_file(tmp_path: Path) -> Path:
    path = tmp_path / "a.png"
    write_segment_map(path, np.arange(12, dtype=np.int32).reshape(3, 4) * 300)
    return path


def test_a_file_is_decoded_once_and_callers_get_copies(segment_file: Path) -> None:
    cache = MapCache(budget=1 << 20)
    decode = CountingDecoder()
    first = cache.get(segment_file, decode)
    first[:] = -1  # the caller's copy; the cache is untouched
    second = cache.get(segment_file, decode)
    assert decode.calls == 1
    assert second.dtype == np.int32
    np.testing.assert_array_equal(second, np.arange(12).reshape(3, 4) * 300)
    # Held in the smallest dtype that fits (ids up to 3300: uint16).
    assert cache.held_bytes == 12 * 2


def test_a_replaced_file_is_decoded_again(segment_file: Path) -> None:
    cache = MapCache(budget=1 << 20)
    decode = CountingDecoder()
    cache.get(segment_file, decode)
    write_segment_map(segment_file, np.full((3, 4), 7, dtype=np.int32))  # atomic replace
    np.testing.assert_array_equal(cache.get(segment_file, decode), 7)
    assert decode.calls == 2
    assert cache.held_bytes == 12  # the old entry's bytes were given back (uint8 now)


def test_the_same_file_through_another_decoder_is_another_entry(segment_file: Path) -> None:
    cache = MapCache(budget=1 << 20)
    plain = cache.get(segment_file, read_segment_map, kind="segments")
    doubled = cache.get(segment_file, lambda p: read_segment_map(p) * 2, kind="doubled")
    np.testing.assert_array_equal(doubled, plain * 2)


def test_beyond_the_budget_maps_are_decoded_on_every_read(tmp_path: Path) -> None:
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        write_segment_map(paths[-1], np.full((4, 4), i, dtype=np.int32))
    cache = MapCache(budget=40)  # two 16-byte uint8 maps fit, not three
    decode = CountingDecoder()
    for _ in range(3):
        for path in paths:
            cache.get(path, decode)
    # The first two are held from the first pass on; the third is decoded each time.
    assert decode.calls == 2 + 3
    assert cache.held_bytes == 32
    nothing = MapCache(budget=0)
    decode = CountingDecoder()
    nothing.get(paths[0], decode)
    nothing.get(paths[0], decode)
    assert decode.calls == 2


def test_a_missing_or_broken_file_raises_the_decoders_error(tmp_path: Path) -> None:
    cache = MapCache(budget=1 << 20)
    with pytest.raises(DataError, match="missing"):
        cache.get(tmp_path / "nope.png", read_segment_map)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(20)))
    with pytest.raises(DataError, match=r"broken\.png"):
        cache.get(broken, read_segment_map)
    assert cache.held_bytes == 0
