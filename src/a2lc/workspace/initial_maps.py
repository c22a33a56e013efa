"""Initial segment and label maps brought by the user: checked, then streamed."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from a2lc.data.maps import read_label_map, read_segment_map
from a2lc.data.sample import IGNORE_INDEX, Dataset, identity_lut
from a2lc.data.segments import label_regions
from a2lc.errors import DataError, Problem

log = logging.getLogger(__name__)


def iter_initial_maps(
    dataset: Dataset,
    segments_dir: Path | None,
    labels_dir: Path,
    *,
    problems: list[Problem] | None,
    show_progress: bool,
    desc: str,
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield each sample's validated ``(id, segments, labels)``, one image at a time.

    With a ``problems`` list, problems are appended there and the image is
    skipped; without one, the first problem raises :class:`DataError`. Without
    ``segments_dir`` each image's segments are its regions of one label
    (:func:`a2lc.data.segments.label_regions`).
    """
    from a2lc._progress import progress

    lut = identity_lut(dataset.num_classes)
    samples = progress(
        dataset.samples, desc=desc, total=len(dataset.samples), enabled=show_progress
    )
    for sample in samples:
        found: list[Problem] = []
        segments = labels = None
        if segments_dir is not None:
            try:
                segments = read_segment_map(segments_dir / f"{sample.id}.png", shape=sample.shape)
            except DataError as exc:
                found.extend(exc.problems)
        try:
            labels = read_label_map(labels_dir / f"{sample.id}.png", lut=lut, shape=sample.shape)
        except DataError as exc:
            found.extend(exc.problems)
        if segments_dir is None and labels is not None:
            segments = label_regions(labels)
        if found or segments is None or labels is None:
            if problems is None:
                raise DataError(found)
            problems.extend(found)
            continue
        outside = (segments == 0) & (labels != IGNORE_INDEX)
        if outside.any():
            log.warning(
                "%s: %d labelled pixels are covered by no segment (id 0); they are set to %d (ignore)",
                labels_dir / f"{sample.id}.png",
                int(outside.sum()),
                IGNORE_INDEX,
            )
            labels = np.where(outside, np.uint8(IGNORE_INDEX), labels).astype(np.uint8)
        yield sample.id, segments, labels


def load_initial_maps(
    dataset: Dataset,
    segments_dir: Path | None,
    labels_dir: Path,
    *,
    problems: list[Problem],
    show_progress: bool,
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Check every map, appending each problem to ``problems``; return a stream of them.

    The stream is only valid (and should only be consumed) when no problem was found.
    """
    missing = [
        Problem(f, "folder does not exist")
        for f in (segments_dir, labels_dir)
        if f is not None and not f.is_dir()
    ]
    if missing:
        problems.extend(missing)
        return iter(())
    for _ in iter_initial_maps(
        dataset,
        segments_dir,
        labels_dir,
        problems=problems,
        show_progress=show_progress,
        desc="checking segments and labels",
    ):
        pass
    return iter_initial_maps(
        dataset,
        segments_dir,
        labels_dir,
        problems=None,
        show_progress=show_progress,
        desc="storing segments and labels",
    )
