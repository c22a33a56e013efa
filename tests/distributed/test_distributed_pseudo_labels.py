"""``torchrun -m a2lc pseudo-label`` with 2 gloo processes makes the initial maps one
process makes: the pool is labelled by image across the ranks, rank 0 commits."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from a2lc.cli import main
from a2lc.data.synthetic import make_synthetic_dataset
from a2lc.workspace import Workspace
from tests.distributed.launch import torchrun


def _maps(ws: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    with Workspace.open(ws, read_only=True) as w:
        return {s.id: (w.read_segments(s.id), w.read_initial_labels(s.id)) for s in w.samples}


def _one_and_two(root: Path, data: Path, args: list[str]) -> tuple[Path, Path, str]:
    """The same ``pseudo-label`` command on two copies of a fresh workspace: one process,
    then 2 under torchrun; returns both workspaces and torchrun's output."""
    initial = root / "initial"
    assert main(["init", "-w", str(initial), "--data", str(data)]) == 0
    one, two = root / "one", root / "two"
    shutil.copytree(initial, one)
    shutil.copytree(initial, two)
    assert main(["pseudo-label", "-w", str(one), *args]) == 0
    result = torchrun("-m", "a2lc", "pseudo-label", "-w", str(two), *args)
    return one, two, result.stdout


def test_superpixels_labelled_across_ranks(tmp_path: Path) -> None:
    # 7 images: rank 0 labels 4, rank 1 stages 3; 3 seed images in one batch split 2/1.
    data = make_synthetic_dataset(tmp_path / "data", num_images=7, height=48, width=64, cell=16)
    args = ["--source", "superpixels", "--seed-images", "3", "--seed-epochs", "2"]
    args += ["--min-confidence", "0"]
    one, two, out = _one_and_two(tmp_path, data.root, args)
    assert out.count("pseudo-labels (superpixels)") == 1  # rank 0 alone reports
    single, double = _maps(one), _maps(two)
    assert single.keys() == double.keys()
    for image_id, (segments, labels) in single.items():
        np.testing.assert_array_equal(double[image_id][0], segments)
        # The seed model trained data-parallel is the one process's up to summation order.
        assert (double[image_id][1] == labels).mean() >= 0.99, image_id
    assert not (two / "staging").exists()
    with Workspace.open(one, read_only=True) as a, Workspace.open(two, read_only=True) as b:
        assert b.meta("initial_source") == a.meta("initial_source") == "superpixels"
        assert b.status()["segments"] == a.status()["segments"]


def test_grounded_sam_runs_each_image_on_one_rank(tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason="install the sam extra: pip install 'a2lc[sam]'")
    from tests.pseudo_labels.tiny_hf import save_tiny_detector, save_tiny_segmenter

    detector = save_tiny_detector(tmp_path / "models" / "dino")
    segmenter = save_tiny_segmenter(tmp_path / "models" / "sam")
    make_synthetic_dataset(tmp_path / "data", num_images=3, height=144, width=176, cell=48)
    args = ["--source", "grounded-sam", "--detector", str(detector), "--segmenter", str(segmenter)]
    args += ["--box-threshold", "0.3", "--text-threshold", "0.35", "--device", "cpu"]
    one, two, out = _one_and_two(tmp_path, tmp_path / "data", args)
    assert out.count("grounded-sam: 3 images (0 done before)") == 1
    single, double = _maps(one), _maps(two)
    for image_id, (segments, labels) in single.items():
        np.testing.assert_array_equal(double[image_id][0], segments)
        np.testing.assert_array_equal(double[image_id][1], labels)
    assert not (two / "staging").exists()
