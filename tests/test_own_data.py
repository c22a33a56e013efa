"""Your own data: hand-labelled images stay as they are, and quality figures mean what they say."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from a2lc.cli import main
from a2lc.data.maps import read_label_map
from a2lc.data.readers import load_dataset
from a2lc.data.sample import identity_lut
from a2lc.rounds import RunConfig, run_rounds
from a2lc.steps.quality import label_accuracy_series
from a2lc.workspace import Answer, Workspace
from tests.test_rounds import TINY_TRAIN, make_data

HAND = 3


def _own_data(tmp_path: Path) -> tuple[Workspace, dict[str, np.ndarray]]:
    """10 synthetic images, a person's labels for 3; the rest of the truth kept aside."""
    data = make_data(tmp_path / "data")
    truth = {}
    labels = sorted((data.root / "labels/train").iterdir())
    for path in labels:
        truth[path.stem] = read_label_map(path, lut=identity_lut(8))
    for path in labels[HAND:]:
        path.unlink()
    dataset = load_dataset(data.root, split="train")
    ws = Workspace.create(
        tmp_path / "ws",
        dataset,
        segments_dir=data.segments,
        labels_dir=data.pseudo,
        show_progress=False,
    )
    return ws, truth


def _answer(ws: Workspace, r: int, truth: dict[str, np.ndarray]) -> None:
    answers = []
    for q in ws.queries(r):
        segments = ws.read_segments(q.image_id)
        inside = truth[q.image_id][segments == q.segment_id]
        answers.append(
            Answer(q.image_id, q.segment_id, int(np.bincount(inside).argmax()), "someone")
        )
    ws.record_answers(r, answers)


def test_the_person_s_labels_stay_and_the_figures_say_what_they_measure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws, truth = _own_data(tmp_path)
    hand = ws.hand_labelled_ids
    assert len(hand) == HAND
    config = RunConfig(strategy="eg+checked", rounds=2, budget=12, oracle="human", train=TINY_TRAIN)
    with ws:
        for image_id in hand:  # labels: the person's, pixel for pixel
            np.testing.assert_array_equal(ws.read_labels(image_id), truth[image_id])
        assert ws.measured_ids == []
        for r in (1, 2):
            result = run_rounds(ws, config, show_progress=False)
            assert result.waiting_round == r
            queries = ws.queries(r)
            assert len(queries) == 12
            assert not {q.image_id for q in queries} & set(hand)  # never queried
            sample = [tuple(k) for k in ws.rounds()[-1].config["estimate_sample"]]
            assert len(sample) == 5  # at least 5, a uniform sample inside the budget
            assert set(sample) <= {(q.image_id, q.segment_id) for q in queries}
            _answer(ws, r, truth)
        result = run_rounds(ws, config, show_progress=False)
        assert result.finished
        metrics = ws.metrics()
        for r in (1, 2):
            m = metrics[r]
            assert "data_miou" not in m  # nothing to measure it on
            assert m["label_accuracy_samples"] == 5 * r  # every sample so far
            assert m["label_accuracy_low"] <= m["label_accuracy_estimate"]
            assert m["label_accuracy_estimate"] <= m["label_accuracy_high"]
        # Shown afterwards, every round is re-estimated from all samples: one estimate
        # of the labels before any answer, plus exactly what the answers fixed.
        series = label_accuracy_series(ws)
        assert series[1]["label_accuracy_initial"] == series[2]["label_accuracy_initial"]
        assert series[2]["label_accuracy_samples"] == 10
        sizes = {
            (q.image_id, q.segment_id): int((ws.read_segments(q.image_id) == q.segment_id).sum())
            for r in (1, 2)
            for q in ws.queries(r)
        }
        total = float(ws.pool_segments().pixel_count.sum())
        fixed = {
            r: sum(
                sizes[(c["image_id"], c["segment_id"])]
                for c in ws.corrections(r)
                if c["source"] == "manual" and c["before"] != c["after"]
            )
            / total
            for r in (1, 2)
        }
        initial = series[1]["label_accuracy_initial"]
        for r in (1, 2):
            so_far = sum(fixed[k] for k in range(1, r + 1))
            assert series[r]["label_accuracy_estimate"] == pytest.approx(min(1.0, initial + so_far))
        for image_id in hand:  # still the person's labels after two rounds
            np.testing.assert_array_equal(ws.read_labels(image_id), truth[image_id])
        assert not [c for c in ws.corrections() if c["image_id"] in set(hand)]
    out_dir = tmp_path / "export"
    assert main(["export", "-w", str(tmp_path / "ws"), "--out", str(out_dir)]) == 0
    for image_id in hand:  # exported unchanged
        exported = read_label_map(out_dir / f"{image_id}.png", lut=identity_lut(8))
        np.testing.assert_array_equal(exported, truth[image_id])
    capsys.readouterr()
    assert main(["status", "-w", str(tmp_path / "ws")]) == 0
    out = capsys.readouterr().out
    assert "est. label accuracy (95%)" in out
    assert "an estimate, not ground truth" in out
    report = tmp_path / "report.html"
    assert main(["report", "-w", str(tmp_path / "ws"), "--out", str(report)]) == 0
    text = report.read_text()
    assert "Strategy: <strong>eg+checked</strong>, budget 12 queries per round" in text
    assert "estimated label accuracy (95% interval)" in text
    assert "no data mIoU" in text


def test_seed_images_are_left_out_of_data_miou_in_a_benchmark(tmp_path: Path) -> None:
    """With ground truth everywhere, data mIoU skips the seed model's training images
    (``data_miou_all`` keeps them, as earlier versions measured)."""
    from a2lc.steps.pseudo_labels import PseudoLabelConfig, make_pseudo_labels

    data = make_data(tmp_path / "data")
    with Workspace.create(
        tmp_path / "ws", load_dataset(data.root, split="train"), show_progress=False
    ) as ws:
        make_pseudo_labels(
            ws, config=PseudoLabelConfig(source="gt-proxy", seed_images=2), show_progress=False
        )
        seed = ws.seed_image_ids
        assert len(seed) == 2
        assert ws.hand_labelled_ids == []
        assert ws.measured_ids == [i for i in ws.ground_truth_ids if i not in seed]
        result = run_rounds(
            ws, RunConfig(strategy="alc", rounds=0, budget=5, train=TINY_TRAIN), show_progress=False
        )
        m = result.metrics[0]
        assert m["data_miou_images"] == len(ws.samples) - 2
        assert "data_miou_all" in m
        assert "label_accuracy_estimate" not in m


def test_label_regions() -> None:
    from a2lc.data.segments import label_regions

    labels = np.zeros((6, 10), np.uint8)
    labels[:, 5:] = 1
    labels[0, 0] = 255
    labels[4:, 7:] = 2
    segments = label_regions(labels, max_side=4)
    assert segments[0, 0] == 0  # 255: in no segment
    for s in np.unique(segments[segments > 0]):
        assert np.unique(labels[segments == s]).size == 1  # every segment is one label
    big = label_regions(np.zeros((8, 8), np.uint8), max_side=4)
    assert np.unique(big).tolist() == [1, 2, 3, 4]  # one region, cut on the grid
    with pytest.raises(ValueError, match="H×W"):
        label_regions(np.zeros(3, np.uint8))


def test_init_with_labels_alone_derives_segments(tmp_path: Path) -> None:
    data = make_data(tmp_path / "data")
    assert main(["init", "-w", str(tmp_path / "ws"), "--data", str(data.root),
                 "--labels", str(data.pseudo)]) == 0  # fmt: skip
    with Workspace.open(tmp_path / "ws") as ws:
        for sample in ws.samples:
            segments = ws.read_segments(sample.id)
            labels = ws.read_labels(sample.id)
            for s in ws.segment_table(sample.id).ids:
                assert np.unique(labels[segments == s]).size == 1


def test_global_options_after_the_command_and_descriptions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from a2lc.cli import _parser

    parser = _parser()
    args = parser.parse_args(["run", "-w", str(tmp_path), "--threads", "2", "-v"])
    assert args.threads == 2
    assert args.verbose
    args = parser.parse_args(["--threads", "3", "run", "-w", str(tmp_path)])
    assert args.threads == 3
    assert not args.verbose
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        assert sub.description, f"{name} has no description"
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--help"])
    assert "default: 4% of the pool's segments" in " ".join(capsys.readouterr().out.split())


def test_pseudo_label_refuses_before_it_trains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws, _ = _own_data(tmp_path)
    with ws:
        ws.start_round([(ws.samples[5].id, 1, 1.0)], strategy="alc", budget=1)
    code = main(["pseudo-label", "-w", str(tmp_path / "ws"), "--source", "superpixels"])
    assert code == 1
    assert "has correction rounds" in capsys.readouterr().err


def test_the_sampled_accuracy_interval() -> None:
    from a2lc.steps.quality import sampled_accuracy

    every = sampled_accuracy(np.ones(28, bool), np.full(28, 100.0))
    assert every.estimate == 1.0
    assert every.high == 1.0
    assert 0.85 < every.low < 0.95  # 28 of 28 right does not prove 100%
    mixed = sampled_accuracy(np.array([True, False, True, True]), np.array([10.0, 30, 30, 30]))
    assert mixed.estimate == pytest.approx(0.7)
    assert mixed.low < 0.7 < mixed.high
    empty = sampled_accuracy(np.zeros(0, bool), np.zeros(0))
    assert empty.samples == 0
    assert np.isnan(empty.estimate)
