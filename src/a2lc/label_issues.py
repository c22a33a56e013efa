"""One call over a dataset: which segments' labels are most likely wrong.

The dataset-level counterpart of cleanlab's ``find_label_issues(labels,
pred_probs)``, at segment level: give the labels and a model's probabilities
(arrays, or folders of files) and, optionally, the segments; get back every
segment ranked by an acquisition function, with its current label and the class
the model suggests. Nothing is written anywhere (no workspace).

Shapes: ``N`` images, ``C`` classes; per image ``labels`` ``H×W`` uint8 (255 =
ignore), ``pred_probs`` ``C×H×W`` float softmax probabilities, ``segments``
``H×W`` int (0 = no segment). Images may differ in size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from a2lc.acquisition import ACQUISITIONS, class_pixel_counts
from a2lc.acquisition.functions import PoolTotals
from a2lc.acquisition.statistics import check_inputs, segment_statistics
from a2lc.data.maps import read_label_map, read_segment_map
from a2lc.data.probs import check_probability_values, load_probabilities, probability_path
from a2lc.data.sample import IGNORE_INDEX, identity_lut, unsafe_id_reason
from a2lc.data.segments import majority_labels
from a2lc.errors import DataError, Problem

DEFAULT_ACQUISITION = "eg"
"""The ranking of ``order="gain"``: expected IoU gain, what the correction loop's prior uses."""
MIN_ANSWERS = 20
"""Answers needed (with two classes among them) before a model of them replaces the prior."""
RANDOM_SEED = 0
"""Seed of the ``random`` acquisition's scores (a baseline)."""

ArrayInput = Sequence[np.ndarray] | np.ndarray
FolderInput = str | Path


@dataclass(frozen=True)
class LabelIssue:
    """One segment, ranked: higher ``score`` = more likely mislabelled (or more to gain).

    ``score`` is what the order sorts by: with ``order="wrong"``, the size-aware rank
    in [0, 1] (or, once a model of the answers is fitted, ``wrong_probability``);
    with ``order="gain"``, the acquisition's score.

    ``label`` is the segment's current (majority) label, 255 if it has none;
    ``suggested`` the class of its highest mean probability, with that mean
    probability as ``suggested_probability``; ``pixels`` its size.
    ``wrong_probability`` estimates the chance that ``label`` is wrong, and
    ``is_issue`` is the yes/no decision (as cleanlab's boolean mask, per segment).
    With answers, ``suggested`` and ``suggested_probability`` come from the model of
    the answers.
    """

    image_id: str
    segment_id: int
    score: float
    label: int
    suggested: int
    suggested_probability: float
    pixels: int
    wrong_probability: float = float("nan")
    is_issue: bool = False


def label_segments(labels: np.ndarray) -> np.ndarray:
    """``H×W`` int32 segments: the 4-connected regions of equal label (255 → 0, no segment)."""
    segments = np.zeros(labels.shape, dtype=np.int32)
    offset = 0
    for value in np.unique(labels):
        if value == IGNORE_INDEX:
            continue
        regions, count = ndimage.label(labels == value)
        inside = regions > 0
        segments[inside] = regions[inside] + offset
        offset += count
    return segments


def find_label_issues(
    labels: ArrayInput | FolderInput,
    pred_probs: ArrayInput | FolderInput,
    segments: ArrayInput | FolderInput | None = None,
    *,
    image_ids: Sequence[str] | None = None,
    order: str = "wrong",
    acquisition: str = DEFAULT_ACQUISITION,
    answers: Mapping[tuple[str, int], int] | None = None,
    top: int | None = None,
) -> list[LabelIssue]:
    """Every segment of the dataset, most likely mislabelled first (``top`` keeps the first).

    ``order="wrong"`` (default) ranks by how likely the label is wrong;
    ``order="gain"`` by ``acquisition`` (expected IoU gain by default: the segments
    whose correction moves mIoU most). Without answers ``wrong_probability`` is the
    model's own, ``1 − P̄[label]`` (the segment's mean probability of its label), and
    the order is size-aware (:func:`a2lc.correction.learned.size_aware_rank`: a
    quarter the rank of that probability, three quarters smaller-first; the
    ``score``), since a model trained on the labels agrees with most of their errors
    and the wrong labels are mostly on small segments (segment-level AUROC on
    CamVid, mean of 13 cells: 0.83 size-aware, 0.66 the model's probability alone;
    ``benchmarks/wrong_ranking.py``). A segment is an issue where, as in confident
    learning, its most likely class ``k ≠ label`` has ``P̄[k]`` at least class
    ``k``'s mean self-confidence (0.5 for a class no segment is labelled with).
    ``answers`` maps ``(image id, segment id)`` to the class a person gave it (or
    confirmed); with at least :data:`MIN_ANSWERS` of them, in two classes or more, a
    model of the answers (over each segment's label, mean probabilities, margin and
    size) gives the estimate (which is then the order), the suggestion and the
    decision (``P(wrong) > 0.5``), and answered segments are certain.

    ``labels``, ``pred_probs`` and ``segments`` are each either arrays (a list of
    per-image arrays, or one stacked ``N×…`` array) or a folder: label and segment
    PNGs named ``<image id>.png``, probabilities ``<image id>.npy`` / ``.npz``;
    with folders the image ids are the label files' names and each image's
    probabilities are loaded, used and dropped one at a time. Without
    ``segments`` every connected region of equal label is a segment
    (:func:`label_segments`). ``image_ids`` names array inputs (default "0", "1", …).

    Pool-level acquisitions (``eg``, ``abc``) take their class sizes or weights
    from the whole dataset, as the correction loop does. Raises
    :class:`~a2lc.errors.DataError` naming the image and what is wrong.
    """
    if order not in ("wrong", "gain"):
        raise ValueError(f"order must be 'wrong' or 'gain', got {order!r}")
    function = ACQUISITIONS.get(acquisition)
    ids, label_maps = _labels(labels, image_ids)
    probs_of = _probabilities(pred_probs, ids)
    segments_of = _segments(segments, ids)
    if top is not None and top < 0:
        raise ValueError(f"top must be >= 0, got {top}")

    class_count: int | None = None
    keys: list[tuple[str, np.ndarray]] = []
    parts: list[np.ndarray] = []
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    means_of: list[np.ndarray] = []
    label_pixels: np.ndarray | None = None
    mass: np.ndarray | None = None
    if function.needs_class_weight and not function.pooled:  # none registered today
        raise ValueError(f"acquisition {acquisition!r} needs a class weight: score it per image")
    for index, image_id in enumerate(ids):
        label_map = label_maps(index)
        probs = probs_of(index, label_map.shape)
        seg = segments_of(index, label_map)
        try:
            check_inputs(probs, label_map, seg)
        except ValueError as exc:
            raise DataError(Problem(image_id, str(exc))) from None
        if class_count is None:
            class_count = probs.shape[0]
            label_pixels = np.zeros(class_count, dtype=np.int64)
            mass = np.zeros(class_count, dtype=np.float64)
        elif probs.shape[0] != class_count:
            raise DataError(
                Problem(image_id, f"{probs.shape[0]} classes, the first image had {class_count}")
            )
        assert label_pixels is not None
        assert mass is not None
        stats = segment_statistics(probs, label_map, seg)
        if function.pooled:
            assert function.image_parts is not None
            parts.append(function.image_parts(stats, probs, label_map, seg))
            label_pixels += class_pixel_counts(label_map, seg, num_classes=class_count)
            mass += stats.features.astype(np.float64).T @ stats.sizes
        else:
            rng = np.random.default_rng([RANDOM_SEED, index])
            result = function.score(probs, label_map, seg, rng=rng)
            parts.append(result.scores)
        keys.append((image_id, stats.ids))
        means_of.append(stats.features.astype(np.float64))
        rows.append(
            (
                majority_labels(label_map, seg, stats.ids),
                stats.features.argmax(axis=1),
                stats.features.max(axis=1),
                stats.sizes,
            )
        )
    if not keys:
        return []
    if function.pooled:
        assert function.finish is not None
        assert label_pixels is not None
        assert mass is not None
        totals = PoolTotals(label_pixels, label_pixels, mass)
        scores, _ = function.finish(np.concatenate(parts), totals)
    else:
        scores = np.concatenate(parts)
    scores = np.asarray(scores, dtype=np.float64)
    image_of = np.concatenate([np.full(k[1].size, i) for i, k in enumerate(keys)])
    segment_of = np.concatenate([k[1] for k in keys])
    label_of, suggested_of, probability_of, size_of = (
        np.concatenate([r[j] for r in rows]) for j in range(4)
    )
    means = np.concatenate(means_of)
    segment_keys = [(keys[int(i)][0], int(s)) for i, s in zip(image_of, segment_of, strict=True)]
    wrong, issue, suggested_of, probability_of, learned = _wrong_estimate(
        means, label_of, size_of, segment_keys, answers, suggested_of, probability_of
    )
    if order == "wrong":
        scores = wrong if learned else _size_aware(wrong, size_of, segment_keys, answers)
    ranking = np.argsort(-scores, kind="stable")  # ties: image order, then segment id
    if top is not None:
        ranking = ranking[:top]
    return [
        LabelIssue(
            image_id=keys[int(image_of[k])][0],
            segment_id=int(segment_of[k]),
            score=float(scores[k]),
            label=int(label_of[k]),
            suggested=int(suggested_of[k]),
            suggested_probability=float(probability_of[k]),
            pixels=int(size_of[k]),
            wrong_probability=float(wrong[k]),
            is_issue=bool(issue[k]),
        )
        for k in ranking
    ]


def _size_aware(
    wrong: np.ndarray,
    sizes: np.ndarray,
    keys: list[tuple[str, int]],
    answers: Mapping[tuple[str, int], int] | None,
) -> np.ndarray:
    """``(N,)`` the default order without a model of the answers: the size-aware rank of
    the model's ``P(wrong)``; answered segments keep what the answer says (1 or 0)."""
    from a2lc.correction.learned import size_aware_rank

    scores = size_aware_rank(wrong, sizes)
    if answers:
        answered = {(str(i), int(s)) for i, s in answers}
        known = np.fromiter((key in answered for key in keys), dtype=bool, count=len(keys))
        scores = np.where(known, wrong, scores)
    return scores


def _wrong_estimate(
    means: np.ndarray,
    labels: np.ndarray,
    sizes: np.ndarray,
    keys: list[tuple[str, int]],
    answers: Mapping[tuple[str, int], int] | None,
    suggested: np.ndarray,
    suggested_probability: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """``(N,)`` P(wrong), is-issue, suggestion and its probability of every segment, and
    whether a model of the answers gave them.

    ``means``: ``(N, C)`` mean probabilities; ``labels``: ``(N,)`` (255: none);
    ``sizes``: ``(N,)`` pixels; ``answers``: see :func:`find_label_issues`.
    """
    from a2lc.correction.answer_model import fit_logistic
    from a2lc.correction.checked import design_matrix
    from a2lc.correction.learned import wrong_probability

    count, num_classes = means.shape
    labelled = labels != IGNORE_INDEX
    given = np.full(count, -1, dtype=np.int64)
    if answers:
        row_of = {key: i for i, key in enumerate(keys)}
        for (image_id, segment_id), value in answers.items():
            row = row_of.get((str(image_id), int(segment_id)))
            if row is None:
                raise DataError(Problem(str(image_id), f"answered segment {segment_id} not found"))
            if not 0 <= int(value) < num_classes:
                raise DataError(
                    Problem(
                        str(image_id), f"answer {value!r} for segment {segment_id} is not a class"
                    )
                )
            given[row] = int(value)
    known = given >= 0
    learned = bool(known.sum() >= MIN_ANSWERS and np.unique(given[known]).size >= 2)
    if learned:
        x = design_matrix(labels, means, sizes, np.zeros((count, 0)))
        model = fit_logistic(x[known], given[known], num_classes=num_classes)
        probabilities = model.probabilities(x)
        wrong = wrong_probability(probabilities, labels)
        suggested = probabilities.argmax(axis=1)
        suggested_probability = probabilities.max(axis=1)
        issue = labelled & (wrong > 0.5)
    else:
        wrong = wrong_probability(means, labels)
        # Confident learning: class k's threshold is its mean self-confidence (a class
        # nobody labelled: more than half).
        thresholds = np.full(num_classes, 0.5)
        for k in range(num_classes):
            mine = labels == k
            if mine.any():
                thresholds[k] = float(means[mine, k].mean())
        best = means.argmax(axis=1)
        issue = labelled & (best != labels) & (means[np.arange(count), best] >= thresholds[best])
    # What a person said is certain.
    wrong = np.where(known, (given != labels).astype(np.float64), wrong)
    issue = np.where(known, given != labels, issue)
    suggested = np.where(known, given, suggested)
    suggested_probability = np.where(known, 1.0, suggested_probability)
    return wrong, issue, suggested, suggested_probability, learned


# ------------------------------------------------------------------ inputs


def _is_folder(value: object) -> bool:
    return isinstance(value, str | Path)


def _folder(value: FolderInput, what: str) -> Path:
    path = Path(value)
    if not path.is_dir():
        raise DataError(Problem(path, f"{what} folder does not exist"))
    return path


def _arrays(value: ArrayInput, what: str) -> list[np.ndarray]:
    if not isinstance(value, np.ndarray | Sequence) or isinstance(value, str | bytes):
        raise TypeError(f"{what} must be a folder or a sequence of arrays, got {type(value)}")
    return [np.asarray(v) for v in value]


class _Labels:
    """Label maps by position, from arrays or a folder (read on demand)."""

    def __init__(self, paths: list[Path] | None, arrays: list[np.ndarray] | None) -> None:
        self.paths, self.arrays = paths, arrays

    def __call__(self, index: int) -> np.ndarray:
        if self.paths is not None:
            return read_label_map(self.paths[index], lut=_ANY_CLASS)
        assert self.arrays is not None
        labels = self.arrays[index]
        if labels.ndim != 2 or labels.dtype.kind not in "iu":
            raise DataError(
                Problem(f"labels[{index}]", f"must be an H×W integer array, got {labels.shape}")
            )
        if labels.size and (labels.min() < 0 or labels.max() > IGNORE_INDEX):
            raise DataError(Problem(f"labels[{index}]", "class ids must be 0..254 or 255"))
        return labels.astype(np.uint8)


_ANY_CLASS = identity_lut(IGNORE_INDEX)
"""Label files: any class id 0..254, 255 ignored (the probabilities say how many classes)."""


def _labels(
    labels: ArrayInput | FolderInput, image_ids: Sequence[str] | None
) -> tuple[list[str], _Labels]:
    if _is_folder(labels):
        folder = _folder(labels, "labels")  # type: ignore[arg-type]
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file())
        if not paths:
            raise DataError(Problem(folder, "no label PNGs (<image id>.png)"))
        ids = [p.stem for p in paths]
        bad = [Problem(p, r) for p, r in ((p, unsafe_id_reason(p.stem)) for p in paths) if r]
        DataError.collect(bad)
        if image_ids is not None:
            raise ValueError("image_ids names array inputs; a folder's ids are its file names")
        return ids, _Labels(paths, None)
    arrays = _arrays(labels, "labels")  # type: ignore[arg-type]
    if image_ids is None:
        ids = [str(i) for i in range(len(arrays))]
    else:
        ids = [str(i) for i in image_ids]
        if len(ids) != len(arrays) or len(set(ids)) != len(ids):
            raise ValueError(f"image_ids must be {len(arrays)} distinct ids, got {len(ids)}")
    return ids, _Labels(None, arrays)


def _probabilities(pred_probs: ArrayInput | FolderInput, ids: list[str]) -> _ProbabilityLoader:
    if _is_folder(pred_probs):
        folder = _folder(pred_probs, "probabilities")  # type: ignore[arg-type]
        problems: list[Problem] = []
        paths: list[Path] = []
        for image_id in ids:
            try:
                paths.append(probability_path(folder, image_id))
            except DataError as exc:
                problems.extend(exc.problems)
        DataError.collect(problems, summary=f"{len(problems)} probability map(s) missing")
        return _ProbabilityLoader(paths, None, ids)
    arrays = _arrays(pred_probs, "pred_probs")  # type: ignore[arg-type]
    if len(arrays) != len(ids):
        raise DataError(
            Problem("pred_probs", f"{len(arrays)} probability maps for {len(ids)} label maps")
        )
    return _ProbabilityLoader(None, arrays, ids)


class _ProbabilityLoader:
    def __init__(
        self, paths: list[Path] | None, arrays: list[np.ndarray] | None, ids: list[str]
    ) -> None:
        self.paths, self.arrays, self.ids = paths, arrays, ids
        self.num_classes: int | None = None

    def __call__(self, index: int, shape: tuple[int, ...]) -> np.ndarray:
        if self.paths is not None:
            path = self.paths[index]
            if self.num_classes is None:  # every map must have the first one's classes
                self.num_classes = _num_classes(path)
            return load_probabilities(
                path, num_classes=self.num_classes, shape=(shape[0], shape[1])
            )
        assert self.arrays is not None
        probs = self.arrays[index]
        where = f"pred_probs[{index}] (image {self.ids[index]})"
        if probs.ndim != 3 or probs.shape[1:] != tuple(shape) or probs.dtype.kind != "f":
            raise DataError(
                Problem(
                    where,
                    f"probabilities must be a float C×H×W array with H×W = {tuple(shape)}, "
                    f"got {probs.dtype} {probs.shape}",
                )
            )
        return check_probability_values(probs, where=where)


def _num_classes(path: Path) -> int:
    """``C`` of a saved ``C×H×W`` map, read from its header (the data is not loaded)."""
    try:
        if path.suffix == ".npz":
            with np.load(path) as archive:
                key = "probs" if "probs" in archive.files else archive.files[0]
                shape = archive[key].shape
        else:
            shape = np.load(path, mmap_mode="r").shape
    except (OSError, ValueError, IndexError) as exc:
        raise DataError(Problem(path, f"unreadable probability map ({exc})")) from None
    if len(shape) != 3:
        raise DataError(Problem(path, f"probabilities must be C×H×W, got shape {shape}"))
    return int(shape[0])


def _segments(segments: ArrayInput | FolderInput | None, ids: list[str]) -> _SegmentSource:
    if segments is None:
        return _SegmentSource(None, None, ids)
    if _is_folder(segments):
        folder = _folder(segments, "segments")  # type: ignore[arg-type]
        paths = [folder / f"{image_id}.png" for image_id in ids]
        missing = [Problem(p, "segment map is missing") for p in paths if not p.is_file()]
        DataError.collect(missing, summary=f"{len(missing)} segment map(s) missing")
        return _SegmentSource(paths, None, ids)
    arrays = _arrays(segments, "segments")  # type: ignore[arg-type]
    if len(arrays) != len(ids):
        raise DataError(Problem("segments", f"{len(arrays)} segment maps for {len(ids)} images"))
    return _SegmentSource(None, arrays, ids)


class _SegmentSource:
    def __init__(
        self, paths: list[Path] | None, arrays: list[np.ndarray] | None, ids: list[str]
    ) -> None:
        self.paths, self.arrays, self.ids = paths, arrays, ids

    def __call__(self, index: int, labels: np.ndarray) -> np.ndarray:
        if self.paths is not None:
            return read_segment_map(self.paths[index], shape=labels.shape)
        if self.arrays is None:
            return label_segments(labels)
        seg = self.arrays[index]
        if seg.shape != labels.shape or seg.dtype.kind not in "iu":
            raise DataError(
                Problem(
                    self.ids[index],
                    f"segments must be an integer H×W array like its labels {labels.shape}, "
                    f"got {seg.dtype} {seg.shape}",
                )
            )
        if seg.size and seg.min() < 0:
            raise DataError(Problem(self.ids[index], "segment ids must be >= 0"))
        return seg.astype(np.int32)


__all__ = ["DEFAULT_ACQUISITION", "LabelIssue", "find_label_issues", "label_segments"]
