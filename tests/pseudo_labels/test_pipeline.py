from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from a2lc.cli import main
from a2lc.data.readers import load_dataset
from a2lc.data.synthetic import SyntheticPaths
from a2lc.errors import DataError, WorkspaceError
from a2lc.metrics import ConfusionAccumulator
from a2lc.pseudo_labels.segments import GtProxyConfig
from a2lc.steps.pseudo_labels import (
    PseudoLabelConfig,
    choose_seed_images,
    make_pseudo_labels,
    parse_seed_images,
)
from a2lc.workspace import Workspace

SMALL_SEGMENTS = GtProxyConfig(min_area=4, max_side=16, jitter=1.0, jitter_smoothness=2.0)


def detector_like(
    ws: Workspace, target: dict[str, float], *, seed: int = 1, noise: str = "detector-like"
) -> dict[str, object]:
    config = PseudoLabelConfig(
        source="gt-proxy",
        noise=noise,  # type: ignore[arg-type]
        noise_target=target,
        seed_images=2,
        seed_epochs=2,
        seed=seed,
        gt_proxy=SMALL_SEGMENTS,
    )
    return make_pseudo_labels(ws, config=config, show_progress=False)


def labels_of(ws: Workspace) -> dict[str, np.ndarray]:
    return {s.id: ws.read_initial_labels(s.id) for s in ws.samples}


@pytest.mark.parametrize("regime", ["detector-like", "correlated"])
def test_flip_regimes_are_deterministic_and_recorded(
    tmp_path: Path, synthetic: SyntheticPaths, regime: str
) -> None:
    dataset = load_dataset(synthetic.root, split="train")
    target = {name: 50.0 for name in dataset.class_names}
    with (
        Workspace.create(tmp_path / "a", dataset) as a,
        Workspace.create(tmp_path / "b", dataset) as b,
    ):
        summary = detector_like(a, target, noise=regime)
        detector_like(b, target, noise=regime)
        first, second = labels_of(a), labels_of(b)
        assert all(np.array_equal(first[k], second[k]) for k in first)
        recorded = json.loads(a.meta("initial_parameters") or "{}")
        noise = recorded[regime.replace("-", "_")]
        assert noise == summary["noise"]
        assert recorded["noise"] == regime
        assert set(noise["flip_rates"]) == set(dataset.class_names)
        # The recorded realised IoU is the data IoU of what was written.
        confusion = ConfusionAccumulator(a.num_classes)
        for sample in a.samples:
            confusion.update(a.read_ground_truth(sample.id), first[sample.id])
        for name, iou in zip(dataset.class_names, confusion.iou, strict=True):
            assert noise["realised_iou"][name] == pytest.approx(iou, abs=1e-6)
        # Every segment carries one class, and the only uncovered pixels are unsegmented ones.
        for sample in a.samples:
            segments = a.read_segments(sample.id)
            assert ((segments == 0) == (first[sample.id] == 255)).all()
    with Workspace.create(tmp_path / "c", dataset) as c:
        detector_like(c, target, seed=2, noise=regime)
        other = labels_of(c)
        assert any(not np.array_equal(first[k], other[k]) for k in first)


def test_detector_like_refuses_superpixels_and_bad_targets(
    tmp_path: Path, synthetic: SyntheticPaths
) -> None:
    dataset = load_dataset(synthetic.root, split="train")
    with Workspace.create(tmp_path / "ws", dataset) as ws:
        for regime in ("detector-like", "correlated"):
            with pytest.raises(WorkspaceError, match=f"--noise {regime} needs --source gt-proxy"):
                make_pseudo_labels(
                    ws,
                    config=PseudoLabelConfig(source="superpixels", noise=regime),  # type: ignore[arg-type]
                )
        with pytest.raises(DataError, match="unknown class 'nope'"):
            detector_like(ws, {"nope": 50.0})
        with pytest.raises(DataError, match="built-in detector-like target only for CamVid"):
            make_pseudo_labels(
                ws, config=PseudoLabelConfig(source="gt-proxy", noise="detector-like")
            )
        assert not ws.has_segments


def test_cli_noise_target_errors(
    tmp_path: Path, synthetic: SyntheticPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    assert main(["init", "-w", str(ws), "--data", str(synthetic.root)]) == 0
    bad = tmp_path / "target.json"
    bad.write_text('{"Road": 50')
    args = ["pseudo-label", "-w", str(ws), "--source", "gt-proxy", "--noise", "detector-like"]
    assert main([*args, "--noise-target", str(bad)]) == 1
    assert f"{bad}: not a readable JSON file" in capsys.readouterr().err
    assert main(["pseudo-label", "-w", str(ws), "--noise-target", str(bad)]) == 1
    assert "only used with --noise detector-like" in capsys.readouterr().err
    names = load_dataset(synthetic.root, split="train").class_names
    good = tmp_path / "good.json"
    good.write_text(json.dumps({names[0]: 100.0, names[1]: 40.0}))
    assert (
        main([*args, "--noise-target", str(good), "--seed-images", "2", "--seed-epochs", "2"]) == 0
    )
    printed = capsys.readouterr().out
    (row,) = [line for line in printed.splitlines() if line.startswith(f"{names[0]} ")]
    assert "capped by the segments" in row


# ------------------------------------------------------------------ seed images


def _partial_truth_workspace(tmp_path: Path, synthetic: SyntheticPaths, keep: int) -> Workspace:
    labels = synthetic.root / "labels/train"
    for path in sorted(labels.iterdir())[keep:]:
        path.unlink()
    return Workspace.create(tmp_path / "ws", load_dataset(synthetic.root, split="train"))


def test_seed_images_default_to_the_images_with_ground_truth(
    tmp_path: Path, synthetic: SyntheticPaths
) -> None:
    with _partial_truth_workspace(tmp_path, synthetic, keep=2) as ws:
        with_truth = ws.ground_truth_ids
        assert len(with_truth) == 2 < len(ws.samples)
        assert choose_seed_images(ws, PseudoLabelConfig()) == with_truth
        # A count is drawn among the images that have ground truth only.
        for seed in range(5):
            (picked,) = choose_seed_images(ws, PseudoLabelConfig(seed_images=1, seed=seed))
            assert picked in with_truth
        with pytest.raises(WorkspaceError, match=r"must be 1\.\.2 \(the pool images with ground"):
            choose_seed_images(ws, PseudoLabelConfig(seed_images=3))
        # Named ids come back in pool order; every problem is named at once.
        named = PseudoLabelConfig(seed_images=(with_truth[1], with_truth[0]))
        assert choose_seed_images(ws, named) == with_truth
        without = next(s.id for s in ws.samples if s.id not in with_truth)
        bad = PseudoLabelConfig(seed_images=("nope", without, with_truth[0], with_truth[0]))
        with pytest.raises(WorkspaceError) as info:
            choose_seed_images(ws, bad)
        message = str(info.value)
        assert "not in the pool: 'nope'" in message
        assert f"no ground truth for: '{without}'" in message
        assert f"named twice: '{with_truth[0]}'" in message


def test_seed_images_need_some_ground_truth(tmp_path: Path, synthetic: SyntheticPaths) -> None:
    with (
        _partial_truth_workspace(tmp_path, synthetic, keep=0) as ws,
        pytest.raises(WorkspaceError, match="no pool image has it; put label files"),
    ):
        choose_seed_images(ws, PseudoLabelConfig())


def test_a_count_over_a_fully_labelled_pool_draws_as_before(
    tmp_path: Path, synthetic: SyntheticPaths
) -> None:
    # The benchmarks' initial labels depend on this draw: it must not change.
    with Workspace.create(tmp_path / "ws", load_dataset(synthetic.root, split="train")) as ws:
        ids = [s.id for s in ws.samples]
        rng = np.random.default_rng([3, 0x5EED])
        expected = [ids[i] for i in sorted(rng.choice(len(ids), size=2, replace=False).tolist())]
        assert choose_seed_images(ws, PseudoLabelConfig(seed_images=2, seed=3)) == expected


def test_superpixels_with_ground_truth_for_the_seed_images_only(
    tmp_path: Path, synthetic: SyntheticPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    ws_dir = tmp_path / "ws"
    with _partial_truth_workspace(tmp_path, synthetic, keep=2) as ws:
        with_truth = ws.ground_truth_ids
    id_file = tmp_path / "seed.txt"
    id_file.write_text(f"{with_truth[0]}\n\n{with_truth[1]}\n")
    args = ["pseudo-label", "-w", str(ws_dir), "--source", "superpixels", "--seed-epochs", "2"]
    assert main([*args, "--seed-images", f"@{id_file}", "--min-confidence", "0"]) == 0
    assert f"seed images {with_truth}" in capsys.readouterr().out
    with Workspace.open(ws_dir) as ws:
        assert ws.has_segments
        recorded = json.loads(ws.meta("initial_parameters") or "{}")
        assert recorded["seed_image_ids"] == with_truth
    assert main([*args, "--seed-images", f"@{tmp_path / 'missing.txt'}"]) == 2
    assert "cannot read the id list" in capsys.readouterr().err


def test_parse_seed_images() -> None:
    assert parse_seed_images("5") == 5
    assert parse_seed_images(" a, b ,,c ") == ("a", "b", "c")
    assert parse_seed_images("0001,") == ("0001",)
    assert parse_seed_images("") is None
