"""The dataset type: sample lookup by id is a dictionary lookup, not a scan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from a2lc.data.sample import Dataset, Sample, identity_lut


class CountingSamples(tuple[Sample, ...]):
    """A tuple that counts how often it is iterated."""

    iterations = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        CountingSamples.iterations += 1
        return super().__iter__()


def test_sample_lookup_does_not_scan_the_pool() -> None:
    samples = CountingSamples(
        Sample(f"img{i:05d}", Path(f"{i}.png"), None, 4, 3) for i in range(5000)
    )
    dataset = Dataset("folder", Path("."), "train", (), samples, identity_lut(2))
    CountingSamples.iterations = 0
    for i in range(0, 5000, 7):
        assert dataset.sample(f"img{i:05d}").id == f"img{i:05d}"
    assert CountingSamples.iterations <= 1  # the index is built once
    with pytest.raises(KeyError, match="nope"):
        dataset.sample("nope")
    assert dataset.sample("img04999").shape == (3, 4)
    assert np.array_equal(dataset.gt_lut, identity_lut(2))
