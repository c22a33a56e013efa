from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from a2lc.data import (
    identity_lut,
    read_label_map,
    read_segment_map,
    write_label_map,
    write_segment_map,
)
from a2lc.data.segments import label_histograms, majority_labels, paint_segments, segment_sizes
from a2lc.errors import DataError


def test_label_map_round_trip_as_palette_png(tmp_path: Path) -> None:
    labels = np.array([[0, 1, 2], [255, 1, 0]], dtype=np.uint8)
    path = tmp_path / "l.png"
    write_label_map(path, labels, palette=[(1, 2, 3), (4, 5, 6), (7, 8, 9)])
    with Image.open(path) as image:
        assert image.mode == "P"
    np.testing.assert_array_equal(read_label_map(path, lut=identity_lut(3)), labels)


@pytest.mark.parametrize("top", [200, 300, 65535])
def test_segment_map_round_trip_8_and_16_bit(tmp_path: Path, top: int) -> None:
    segments = np.array([[0, 1], [top, top - 1]], dtype=np.int32)
    path = tmp_path / "s.png"
    write_segment_map(path, segments)
    with Image.open(path) as image:
        assert image.mode == ("L" if top <= 255 else "I;16")
    back = read_segment_map(path, shape=(2, 2))
    assert back.dtype == np.int32
    np.testing.assert_array_equal(back, segments)


def test_segment_ids_above_16_bit_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="65535"):
        write_segment_map(tmp_path / "s.png", np.array([[70000]], dtype=np.int32))


def test_missing_truncated_and_mis_sized_maps_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope.png: file is missing"):
        read_segment_map(tmp_path / "nope.png")
    path = tmp_path / "s.png"
    write_segment_map(path, np.arange(400, dtype=np.int32).reshape(20, 20))
    with pytest.raises(DataError, match=r"s.png: size 20×20 does not match its image \(30×20"):
        read_segment_map(path, shape=(20, 30))
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(DataError, match=r"s.png: unreadable or truncated"):
        read_segment_map(path)


def test_label_values_out_of_range(tmp_path: Path) -> None:
    path = tmp_path / "l.png"
    write_label_map(path, np.array([[0, 5, 9]], dtype=np.uint8))
    with pytest.raises(DataError, match=r"2 pixels have invalid class ids \(5, 9\)"):
        read_label_map(path, lut=identity_lut(4))


def test_segment_helpers() -> None:
    segments = np.array([[0, 1, 1, 3], [3, 3, 1, 0]])
    labels = np.array([[9, 2, 2, 4], [5, 5, 255, 9]], dtype=np.uint8)
    ids, sizes = segment_sizes(segments)
    assert ids.tolist() == [1, 3]
    assert sizes.tolist() == [3, 3]
    hist = label_histograms(labels, segments, ids)
    assert hist[0, 2] == 2
    assert hist[0, 255] == 1
    assert hist[1, 5] == 2
    assert majority_labels(labels, segments, ids).tolist() == [2, 5]
    painted = paint_segments(labels, segments, np.array([3]), np.array([7]))
    assert painted.tolist() == [[9, 2, 2, 7], [7, 7, 255, 9]]
    assert labels[0, 3] == 4  # input untouched
