"""The own-data flow, checked against ground truth the workspace never sees.

A user's dataset is simulated from CamVid: 60 train images (every 6th), ground truth
kept for 5 of them (the person's labels), superpixel pseudo-labels from a seed model
trained on those 5, then rounds answered by a "person" who knows the full ground
truth (the majority class of each queried segment, as the simulated annotator).
After each round: what a2lc reports (the estimated label accuracy; data mIoU cannot
be measured there) and the truth (data mIoU and pixel accuracy over the 55 images
nobody labelled, from the full ground truth); and whether the 5 hand-labelled images
are exported bit-identical to their labels.

    A2LC_THREADS=1 python benchmarks/own_data_flow.py --work /tmp/own-data
    # writes benchmarks/results/own_data_flow.json
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from a2lc._atomic import atomic_write_text
from a2lc.cli import main as cli
from a2lc.data.maps import read_label_map
from a2lc.data.sample import identity_lut
from a2lc.metrics import ConfusionAccumulator
from a2lc.steps.quality import with_label_accuracy
from a2lc.workspace import Answer, Workspace

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "own_data_flow.json"


def make_dataset(camvid: Path, folder: Path, *, images: int, labelled: int) -> list[str]:
    """A folder dataset of ``images`` CamVid train images, ground truth for ``labelled``."""
    names = sorted(p.name for p in (camvid / "images" / "train").iterdir())[::6][:images]
    for sub in ("images/train", "labels/train"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy(camvid / "classes.json", folder / "classes.json")
    for name in names:
        (folder / "images/train" / name).symlink_to(camvid / "images/train" / name)
    step = len(names) // labelled
    hand = names[::step][:labelled]
    for name in hand:
        label = f"{Path(name).stem}.png"
        shutil.copy(camvid / "labels/train" / label, folder / "labels/train" / label)
    return [Path(n).stem for n in hand]


def truth_of(camvid: Path, ws: Workspace) -> dict[str, np.ndarray]:
    lut = ws.dataset.gt_lut
    return {
        s.id: read_label_map(camvid / "labels/train" / f"{s.id}.png", lut=lut, shape=s.shape)
        for s in ws.samples
    }


def true_quality(ws: Workspace, truth: dict[str, np.ndarray], skip: set[str]) -> dict[str, float]:
    acc = ConfusionAccumulator(ws.num_classes)
    for sample in ws.samples:
        if sample.id not in skip:
            acc.update(truth[sample.id], ws.read_labels(sample.id))
    return {"data_miou": acc.miou, "pixel_accuracy": acc.accuracy}


def answer_as_a_person(ws: Workspace, round_index: int, truth: dict[str, np.ndarray]) -> None:
    answers = []
    for q in ws.unanswered(round_index):
        inside = truth[q.image_id][ws.read_segments(q.image_id) == q.segment_id]
        inside = inside[inside != 255]
        label = int(np.bincount(inside).argmax()) if inside.size else 255
        answers.append(Answer(q.image_id, q.segment_id, label, "person"))
    ws.record_answers(round_index, answers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--camvid", type=Path, default=ROOT.parent / "shared" / "data" / "camvid")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.work.exists():
        shutil.rmtree(args.work)
    data, work = args.work / "data", args.work / "ws"
    hand = make_dataset(args.camvid, data, images=60, labelled=5)
    assert cli(["init", "-w", str(work), "--data", str(data)]) == 0
    assert cli(["pseudo-label", "-w", str(work), "--source", "superpixels"]) == 0
    rows: list[dict[str, Any]] = []
    run = ["run", "-w", str(work), "--rounds", str(args.rounds), "--oracle", "human"]
    with Workspace.open(work) as ws:
        truth = truth_of(args.camvid, ws)
        rows.append({"round": 0, **true_quality(ws, truth, set(hand))})
    for r in range(1, args.rounds + 1):
        assert cli(run) == 0
        with Workspace.open(work) as ws:
            answer_as_a_person(ws, r, truth)
    assert cli(run) == 0
    with Workspace.open(work) as ws:
        logged = ws.metrics()  # what each round's log said, from the samples up to it
        shown = with_label_accuracy(ws, logged)  # what status and the report show now
        for r in range(1, args.rounds + 1):
            rows.append(
                {
                    "round": r,
                    **{k: v for k, v in shown.get(r, {}).items() if "accuracy" in k},
                    **{
                        f"logged_{k}": v
                        for k, v in logged.get(r, {}).items()
                        if k.startswith("label_accuracy_")
                    },
                }
            )
        # The truth after each round, from the label snapshots each closed round wrote.
        for row in rows[1:]:
            row.update(_quality_after(ws, truth, set(hand), int(row["round"])))
        exported = args.work / "export"
    assert cli(["export", "-w", str(work), "--out", str(exported)]) == 0
    identical = []
    with Workspace.open(work, read_only=True) as ws:
        lut = identity_lut(ws.num_classes)
    for image_id in hand:
        out = read_label_map(exported / f"{image_id}.png", lut=lut)
        identical.append(bool(np.array_equal(out, truth[image_id])))
    inside = [
        bool(
            row["label_accuracy_low"] <= row["segment_label_accuracy"] <= row["label_accuracy_high"]
        )
        for row in rows[1:]
    ]
    same_direction = [
        bool(
            np.sign(rows[i]["label_accuracy_estimate"] - rows[i - 1]["label_accuracy_estimate"])
            == np.sign(rows[i]["data_miou"] - rows[i - 1]["data_miou"])
        )
        for i in range(2, len(rows))
    ]
    result = {
        "images": 60,
        "hand_labelled": hand,
        "rounds": rows,
        "estimate_and_truth_move_together_from_round_2": same_direction,
        "truth_of_the_estimate_inside_its_interval": inside,
        "hand_labelled_exported_identical": identical,
    }
    atomic_write_text(OUT, json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


def _quality_after(
    ws: Workspace, truth: dict[str, np.ndarray], skip: set[str], round_index: int
) -> dict[str, float]:
    """True data mIoU and pixel accuracy of the labels as they were when round
    ``round_index`` closed (images nobody labelled), and the truth of what the estimate
    estimates: the share of the pool segments' pixels whose segment has its majority class."""
    acc = ConfusionAccumulator(ws.num_classes)
    right = total = 0
    lut = identity_lut(ws.num_classes)
    versions = {
        (str(i), int(r)): str(p)
        for i, r, p in ws.connection.execute("SELECT image_id, round, path FROM label_versions")
    }
    for sample in ws.samples:
        latest = max(r for (i, r) in versions if i == sample.id and r <= round_index)
        path = ws.path / versions[(sample.id, latest)]
        labels = read_label_map(path, lut=lut, shape=sample.shape)
        if sample.id not in skip:
            acc.update(truth[sample.id], labels)
        segments = ws.read_segments(sample.id).ravel()
        gt = truth[sample.id].ravel()
        known = gt != 255
        # Majority class of each segment in the truth and in the labels.
        ids, inverse = np.unique(segments, return_inverse=True)
        k = ws.num_classes
        true_counts = np.bincount(inverse[known] * k + gt[known], minlength=ids.size * k)
        labelled = labels.ravel()
        ok = labelled != 255
        label_counts = np.bincount(inverse[ok] * k + labelled[ok], minlength=ids.size * k)
        true_counts = true_counts.reshape(ids.size, k)
        label_major = label_counts.reshape(ids.size, k).argmax(1)
        sizes = np.bincount(inverse, minlength=ids.size)
        # Segments with no known truth are left out, and so are pixels outside every
        # segment (the seed model was too unsure to label them: not in the pool).
        judged = (true_counts.sum(1) > 0) & np.isin(ids, ws.segment_table(sample.id).ids)
        right += int(sizes[judged & (true_counts.argmax(1) == label_major)].sum())
        total += int(sizes[judged].sum())
    return {
        "data_miou": acc.miou,
        "pixel_accuracy": acc.accuracy,
        "segment_label_accuracy": right / max(total, 1),
    }


if __name__ == "__main__":
    raise SystemExit(main())
