"""The dataset-level API: one call over arrays or folders, ranked like the loop ranks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import a2lc
from a2lc.data.readers import load_dataset
from a2lc.data.synthetic import SyntheticPaths
from a2lc.errors import DataError, UnknownNameError
from a2lc.label_issues import label_segments
from a2lc.steps.scoring import ScoreConfig, probability_folder_loader, select_queries
from a2lc.workspace import Workspace


def two_images() -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Two 8×8 images, classes 0..2; image 1's top-left 2×2 block (its own segment) is
    labelled 0 where the model is sure it is class 2."""
    labels = [np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8)]
    labels[0][:, 4:] = 1
    labels[1][4:, :] = 1
    probs = []
    for lab in labels:
        p = np.full((3, 8, 8), 0.05, np.float32)
        p[lab, *np.indices(lab.shape)] = 0.9
        probs.append(p)
    probs[1][:, :2, :2] = np.asarray([0.05, 0.05, 0.9], np.float32)[:, None, None]
    segments = [label_segments(lab) for lab in labels]
    segments[1][:2, :2] = segments[1].max() + 1
    return labels, probs, segments


def test_a_mislabelled_segment_ranks_first_with_the_suggested_class() -> None:
    labels, probs, segments = two_images()
    issues = a2lc.find_label_issues(labels, probs, segments, image_ids=["a", "b"])
    first = issues[0]
    assert (first.image_id, first.label, first.suggested, first.pixels) == ("b", 0, 2, 4)
    assert first.suggested_probability == pytest.approx(0.9)
    assert [i.score for i in issues] == sorted((i.score for i in issues), reverse=True)
    assert len(issues) == sum(len(np.unique(s[s > 0])) for s in segments)
    assert len(a2lc.find_label_issues(labels, probs, segments, top=2)) == 2
    stacked = a2lc.find_label_issues(np.stack(labels), np.stack(probs), np.stack(segments))
    assert [(i.image_id, i.segment_id) for i in stacked][:1] == [("1", first.segment_id)]


def test_without_segments_each_connected_region_is_one() -> None:
    labels = np.zeros((6, 6), np.uint8)
    labels[:, 3:] = 1
    labels[0, 0] = 255
    labels[5, 0:2] = 1  # a second, separate region of class 1
    segments = label_segments(labels)
    assert segments[0, 0] == 0
    assert len(np.unique(segments[segments > 0])) == 3
    probs = np.full((2, 6, 6), 0.5, np.float32)
    issues = a2lc.find_label_issues([labels], [probs])
    assert len(issues) == 3


def test_folders_rank_exactly_as_the_correction_loop(
    synthetic: SyntheticPaths, tmp_path: Path
) -> None:
    issues = a2lc.find_label_issues(
        synthetic.pseudo, synthetic.probs, synthetic.segments, order="gain", acquisition="eg"
    )
    dataset = load_dataset(synthetic.root, split="train")
    with Workspace.create(
        tmp_path / "ws", dataset, segments_dir=synthetic.segments, labels_dir=synthetic.pseudo
    ) as ws:
        selection = select_queries(
            ws,
            probability_folder_loader(ws, synthetic.probs),
            config=ScoreConfig(strategy="eg", budget=ws.num_segments()),
            show_progress=False,
        )
        current = {s.id: ws.segment_table(s.id) for s in ws.samples}
    assert len(issues) == len(selection.queries)
    ours = {(i.image_id, i.segment_id): i.score for i in issues}
    loop = {(image_id, segment_id): score for image_id, segment_id, score in selection.queries}
    assert ours.keys() == loop.keys()
    for key, score in loop.items():
        assert ours[key] == pytest.approx(score, rel=1e-12)
    for issue in issues[:20]:
        table = current[issue.image_id]
        row = int(np.flatnonzero(table.ids == issue.segment_id)[0])
        assert issue.label == int(table.label[row])
        assert issue.pixels == int(table.pixel_count[row])


def test_bad_inputs_name_the_image_and_the_problem(synthetic: SyntheticPaths) -> None:
    labels, probs, _ = two_images()
    with pytest.raises(
        DataError, match=r"pred_probs\[1\] \(image b\): probabilities must be a float C×H×W array"
    ):
        a2lc.find_label_issues(labels, [probs[0], probs[1][:, :4]], image_ids=["a", "b"])
    with pytest.raises(DataError, match="1 probability maps for 2 label maps"):
        a2lc.find_label_issues(labels, probs[:1])
    with pytest.raises(UnknownNameError, match=r"valid names: .*alc"):
        a2lc.find_label_issues(labels, probs, acquisition="nope")
    with pytest.raises(DataError, match="probability map is missing"):
        a2lc.find_label_issues(synthetic.pseudo, synthetic.segments)
    with pytest.raises(DataError, match="folder does not exist"):
        a2lc.find_label_issues(synthetic.root / "nope", synthetic.probs)


def test_default_order_is_most_likely_wrong_with_a_decision_per_segment() -> None:
    labels, probs, segments = two_images()
    issues = a2lc.find_label_issues(labels, probs, segments, image_ids=["a", "b"])
    scores = [i.score for i in issues]
    assert scores == sorted(scores, reverse=True)
    first = issues[0]
    assert (first.image_id, first.label, first.suggested) == ("b", 0, 2)
    assert first.wrong_probability == pytest.approx(0.95, abs=1e-6)
    assert first.is_issue
    assert [i.is_issue for i in issues].count(True) == 1  # the others agree with their labels
    gain = a2lc.find_label_issues(labels, probs, segments, image_ids=["a", "b"], order="gain")
    assert {(i.image_id, i.segment_id) for i in gain} == {
        (i.image_id, i.segment_id) for i in issues
    }
    with pytest.raises(ValueError, match="order must be"):
        a2lc.find_label_issues(labels, probs, segments, order="size")


def test_answers_teach_the_estimate() -> None:
    # 40 single-segment images; the model always agrees with the label, but the label
    # of every segment whose second class has mass is wrong. Without answers nothing
    # is flagged; with 20 answers the model of the answers finds the others.
    rng = np.random.default_rng(0)
    labels, probs, truth = [], [], []
    for i in range(40):
        lab = np.zeros((4, 4), np.uint8)
        p = np.zeros((2, 4, 4), np.float32)
        mixed = i % 2 == 1
        p[0] = 0.6 if mixed else 0.95 - 0.02 * rng.random()
        p[1] = 1 - p[0]
        labels.append(lab)
        probs.append(p)
        truth.append(1 if mixed else 0)
    segments = [np.ones((4, 4), np.int32) for _ in labels]
    before = a2lc.find_label_issues(labels, probs, segments)
    assert not any(i.is_issue for i in before)
    answers = {(str(i), 1): truth[i] for i in range(20)}
    after = a2lc.find_label_issues(labels, probs, segments, answers=answers)
    unanswered = [i for i in after if int(i.image_id) >= 20]
    flagged = {int(i.image_id) for i in unanswered if i.is_issue}
    assert flagged == {i for i in range(20, 40) if truth[i]}
    assert all(i.suggested == 1 for i in unanswered if i.is_issue)
    answered = {int(i.image_id): i for i in after if int(i.image_id) < 20}
    assert all(answered[k].wrong_probability == float(truth[k]) for k in answered)
    with pytest.raises(DataError, match="answered segment 7 not found"):
        a2lc.find_label_issues(labels, probs, segments, answers={("3", 7): 1})
    with pytest.raises(DataError, match="is not a class"):
        a2lc.find_label_issues(labels, probs, segments, answers={("3", 1): 5})


def test_the_default_order_is_size_aware() -> None:
    # One image, four segments the model doubts alike (P(label) = 0.6) or not at all:
    # a 2-pixel and a 30-pixel doubted segment, a 2-pixel and a 30-pixel sure one.
    labels = np.zeros((8, 8), np.uint8)
    segments = np.zeros((8, 8), np.int32)
    segments[:4, :] = 1  # sure, 30 px (less segment 4)
    segments[4:, :] = 2  # doubted, 30 px (less segment 3)
    segments[7, 6:] = 3  # doubted, 2 px
    segments[0, :2] = 4  # sure, 2 px
    probs = np.zeros((2, 8, 8), np.float32)
    probs[0] = np.where(np.isin(segments, (2, 3)), 0.6, 0.99)
    probs[1] = 1 - probs[0]
    issues = a2lc.find_label_issues([labels], [probs], [segments])
    order = [i.segment_id for i in issues]
    # Equal doubt: the small one first; equal size: the doubted one first.
    assert order.index(3) < order.index(2)
    assert order.index(3) < order.index(4)
    assert order[0] == 3
    doubted = {i.segment_id: i.wrong_probability for i in issues}
    assert doubted[2] == pytest.approx(doubted[3]) == pytest.approx(0.4, abs=1e-6)
    assert [i.score for i in issues] == sorted((i.score for i in issues), reverse=True)
    assert all(0.0 <= i.score <= 1.0 for i in issues)
    # An answered segment keeps what its answer says, whatever its size.
    answered = a2lc.find_label_issues([labels], [probs], [segments], answers={("0", 1): 1})
    assert answered[0].segment_id == 1
    assert answered[0].score == 1.0
