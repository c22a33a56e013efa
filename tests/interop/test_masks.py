"""CVAT masks and COCO panoptic: export a workspace, import it as initial labels, compare."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from a2lc.cli import main
from a2lc.data.synthetic import SyntheticPaths
from a2lc.errors import DataError
from a2lc.interop.coco_panoptic import panoptic_paths
from a2lc.workspace import Workspace


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two segment maps group the pixels identically (ids may differ)."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


@pytest.fixture
def corrected(open_round: Path) -> Path:
    """A workspace after one corrected round (some segments relabelled)."""
    assert main(["correct", "-w", str(open_round)]) == 0
    return open_round


def fresh(synthetic: SyntheticPaths, path: Path) -> Path:
    assert main(["init", "-w", str(path), "--data", str(synthetic.root)]) == 0
    return path


@pytest.mark.parametrize("fmt", ["cvat", "coco-panoptic", "coco-panoptic-standard"])
def test_export_import_round_trip(
    fmt: str, corrected: Path, synthetic: SyntheticPaths, tmp_path: Path
) -> None:
    out = tmp_path / fmt
    options = {
        "coco-panoptic": ["--format", "coco-panoptic", "--panoptic-segments", "segments"],
        "coco-panoptic-standard": ["--format", "coco-panoptic"],
    }.get(fmt, ["--format", fmt])
    assert main(["export", "-w", str(corrected), "--out", str(out), *options]) == 0
    target = fresh(synthetic, tmp_path / "imported")
    if fmt == "coco-panoptic-standard":
        # Every pixel keeps its label; the segments are the standard conversion's.
        from a2lc.interop.coco_panoptic import standard_panoptic

        json_path = panoptic_paths(out, "train")[0]
        assert main(["import-labels", "-w", str(target), "--coco-panoptic", str(json_path)]) == 0
        with Workspace.open(corrected) as a, Workspace.open(target) as b:
            things = np.asarray([c.thing for c in a.dataset.classes])
            for sample in a.samples:
                labels_a = a.read_labels(sample.id)
                np.testing.assert_array_equal(b.read_initial_labels(sample.id), labels_a)
                standard, _ = standard_panoptic(labels_a, things)
                assert same_partition(standard, b.read_segments(sample.id))
        return
    source = (
        ["--cvat", str(out)]
        if fmt == "cvat"
        else ["--coco-panoptic", str(panoptic_paths(out, "train")[0])]
    )
    assert main(["import-labels", "-w", str(target), *source]) == 0
    with Workspace.open(corrected) as a, Workspace.open(target) as b:
        assert b.meta("initial_source") == fmt
        for sample in a.samples:
            segments_a = a.read_segments(sample.id)
            labels_a = a.read_labels(sample.id, segments=segments_a)
            segments_b, labels_b = b.read_segments(sample.id), b.read_initial_labels(sample.id)
            if fmt == "cvat":
                # Pixel labels survive exactly; so do the segments.
                np.testing.assert_array_equal(labels_b, labels_a)
                assert same_partition(segments_a, segments_b)
            else:
                # One class per segment: the segment's majority label; void-only segments drop out.
                ids = np.unique(segments_a[segments_a > 0])
                for i in ids:
                    inside = labels_a[segments_a == i]
                    valid = inside[inside != 255]
                    if valid.size:
                        assert (labels_b[segments_a == i] == np.bincount(valid).argmax()).all()
                    else:
                        assert (segments_b[segments_a == i] == 0).all()
                assert same_partition(np.where(labels_b == 255, 0, segments_a), segments_b)


def test_cvat_export_layout(corrected: Path, tmp_path: Path) -> None:
    out = tmp_path / "cvat"
    main(["export", "-w", str(corrected), "--out", str(out), "--format", "cvat"])
    lines = (out / "labelmap.txt").read_text().splitlines()
    assert lines[0] == "# label:color_rgb:parts:actions"
    assert lines[1] == "background:0,0,0::"
    assert lines[2] == "sky:70,130,180::"
    ids = (out / "ImageSets" / "Segmentation" / "default.txt").read_text().split()
    assert len(ids) == 6
    with Image.open(out / "SegmentationClass" / f"{ids[0]}.png") as image:
        assert image.mode == "P"


def test_cvat_import_without_instances_and_bad_input(
    corrected: Path, synthetic: SyntheticPaths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cvat"
    main(["export", "-w", str(corrected), "--out", str(out), "--format", "cvat"])
    for path in (out / "SegmentationObject").iterdir():
        path.unlink()
    target = fresh(synthetic, tmp_path / "imported")
    assert main(["import-labels", "-w", str(target), "--cvat", str(out)]) == 0
    with Workspace.open(target) as ws:
        sample = ws.samples[0]
        segments, labels = ws.read_segments(sample.id), ws.read_initial_labels(sample.id)
        for i in np.unique(segments[segments > 0]):
            assert len(np.unique(labels[segments == i])) == 1  # connected regions of one class
    # An unknown label name, and a colour outside the label map: clear errors, nothing written.
    other = fresh(synthetic, tmp_path / "other")
    text = (out / "labelmap.txt").read_text()
    (out / "labelmap.txt").write_text(text.replace("sky:", "heaven:"))
    assert main(["import-labels", "-w", str(other), "--cvat", str(out)]) == 1
    assert "label 'heaven' is not a class of the workspace" in capsys.readouterr().err
    (out / "labelmap.txt").write_text(text)
    first = sorted((out / "SegmentationClass").iterdir())[-1]
    Image.fromarray(np.full((48, 64, 3), 7, dtype=np.uint8)).save(first)
    assert main(["import-labels", "-w", str(other), "--cvat", str(out)]) == 1
    assert "colour [7, 7, 7] is not in labelmap.txt" in capsys.readouterr().err
    with Workspace.open(other) as ws:
        assert not ws.has_segments
        assert not (other / "segments").exists() or not any((other / "segments").iterdir())


def test_panoptic_json_and_bad_categories(
    corrected: Path, synthetic: SyntheticPaths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pan"
    main(["export", "-w", str(corrected), "--out", str(out), "--format", "coco-panoptic"])
    json_path, folder = panoptic_paths(out, "train")
    assert json_path == out / "annotations" / "panoptic_train.json"
    document = json.loads(json_path.read_text())
    assert [c["name"] for c in document["categories"]][:2] == ["sky", "building"]
    annotation = document["annotations"][0]
    info = annotation["segments_info"][0]
    with Image.open(folder / annotation["file_name"]) as image:
        rgb = np.asarray(image.convert("RGB")).astype(np.int64)
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    assert (ids == info["id"]).sum() == info["area"]
    ys, xs = np.nonzero(ids == info["id"])
    width, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    assert info["bbox"] == [xs.min(), ys.min(), width, height]
    document["categories"][0]["name"] = "heaven"
    json_path.write_text(json.dumps(document))
    target = fresh(synthetic, tmp_path / "imported")
    assert main(["import-labels", "-w", str(target), "--coco-panoptic", str(json_path)]) == 1
    assert "category 'heaven' is not a class" in capsys.readouterr().err
    for text, message in (("{not json", "not a readable JSON file"), ("[]", "not a COCO panoptic")):
        json_path.write_text(text)
        args = ["import-labels", "-w", str(target), "--coco-panoptic", str(json_path)]
        assert main(args) == 1
        assert f"{json_path}: {message}" in capsys.readouterr().err


def check_coco_panoptic(json_path: Path, folder: Path) -> dict[str, object]:
    """The checks COCO's own tools make (pycocotools / panopticapi level)."""
    document = json.loads(json_path.read_text())
    assert {"info", "licenses", "images", "annotations", "categories"} <= set(document)
    image_ids = [image["id"] for image in document["images"]]
    assert all(isinstance(i, int) and not isinstance(i, bool) for i in image_ids)
    assert len(set(image_ids)) == len(image_ids)
    categories = {c["id"]: c for c in document["categories"]}
    assert all(c["isthing"] in (0, 1) for c in categories.values())
    assert {a["image_id"] for a in document["annotations"]} == set(image_ids)
    sizes = {image["id"]: (image["height"], image["width"]) for image in document["images"]}
    for annotation in document["annotations"]:
        with Image.open(folder / annotation["file_name"]) as image:
            rgb = np.asarray(image.convert("RGB")).astype(np.int64)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        assert ids.shape == sizes[annotation["image_id"]]
        infos = annotation["segments_info"]
        assert len({s["id"] for s in infos}) == len(infos)
        assert set(np.unique(ids[ids > 0]).tolist()) == {s["id"] for s in infos}
        for info in infos:
            assert info["category_id"] in categories
            mask = ids == info["id"]
            assert info["area"] == int(mask.sum())
            ys, xs = np.nonzero(mask)
            x, y = int(xs.min()), int(ys.min())
            assert info["bbox"] == [x, y, int(xs.max()) - x + 1, int(ys.max()) - y + 1]
    return document


def test_coco_panoptic_is_what_coco_tools_expect_and_pq_works_on_it(
    corrected: Path, tmp_path: Path
) -> None:
    from a2lc.interop.coco_panoptic import panoptic_quality

    out = tmp_path / "pan"
    assert (
        main(["export", "-w", str(corrected), "--out", str(out), "--format", "coco-panoptic"]) == 0
    )
    json_path, folder = panoptic_paths(out, "train")
    document = check_coco_panoptic(json_path, folder)
    thing = {c["name"]: c["isthing"] for c in document["categories"]}  # type: ignore[union-attr]
    assert thing["car"] == thing["person"] == 1
    assert thing["sky"] == thing["road"] == 0
    same = panoptic_quality(json_path, json_path)
    for group in ("All", "Things", "Stuff"):
        assert same[group]["n"] > 0
        assert same[group]["pq"] == pytest.approx(1.0)
    # One segment given another category: one false negative for its category and one
    # false positive for the other, nothing else changes.
    changed = json.loads(json_path.read_text())
    info = changed["annotations"][0]["segments_info"][0]
    before = info["category_id"]
    after = next(c["id"] for c in changed["categories"] if c["id"] != before)
    info["category_id"] = after
    prediction = tmp_path / "prediction" / "annotations" / json_path.name
    prediction.parent.mkdir(parents=True)
    prediction.write_text(json.dumps(changed))
    shutil.copytree(folder, prediction.with_suffix(""))
    count = Counter(
        s["category_id"]
        for a in document["annotations"]
        for s in a["segments_info"]  # type: ignore[union-attr]
    )
    result = panoptic_quality(json_path, prediction)
    names = {c["id"]: c["name"] for c in changed["categories"]}
    tp_before, tp_after = count[before] - 1, count[after]
    assert result[names[before]]["rq"] == pytest.approx(tp_before / (tp_before + 0.5))
    assert result[names[after]]["rq"] == pytest.approx(tp_after / (tp_after + 0.5))
    assert result[names[before]]["sq"] == pytest.approx(1.0)
    assert 0 < result["All"]["pq"] < 1


def test_isthing_from_classes_json_and_the_built_in_lists(tmp_path: Path) -> None:
    from a2lc.data.readers import load_dataset, read_classes_json
    from tests.fakes import make_cityscapes_tree, make_voc_tree

    path = tmp_path / "classes.json"
    path.write_text(
        json.dumps(
            [
                {"id": 0, "name": "road"},
                {"id": 1, "name": "lamp", "isthing": True},
                {"id": 2, "name": "car", "isthing": False},
            ]
        )
    )
    road, lamp, car = read_classes_json(path)
    assert (road.thing, lamp.thing, car.thing) == (False, True, False)
    path.write_text(json.dumps([{"id": 0, "name": "road", "isthing": "yes"}]))
    with pytest.raises(DataError, match="optional true/false 'isthing'"):
        read_classes_json(path)
    make_cityscapes_tree(tmp_path / "cs")
    things = [c.name for c in load_dataset(tmp_path / "cs", split="train").classes if c.thing]
    assert things == ["person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]
    make_voc_tree(tmp_path / "voc")
    voc = load_dataset(tmp_path / "voc", split="train").classes
    assert [c.name for c in voc if not c.thing] == ["background"]


def test_cvat_refuses_more_segments_than_its_palette_holds(
    corrected: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Refused up front, naming the images and the format that has no limit; nothing written."""
    from a2lc.interop import cvat

    monkeypatch.setattr(cvat, "MAX_INSTANCES", 3)
    out = tmp_path / "x"
    assert main(["export", "-w", str(corrected), "--out", str(out), "--format", "cvat"]) == 1
    assert "at most 3 segments per image" in capsys.readouterr().err
    assert not out.exists()


def independent_pq(gt_json: Path, pred_json: Path) -> float:
    """PQ over all categories, written from the definition (Kirillov et al. 2019) with
    plain loops, sharing no code with a2lc's panoptic_quality."""
    from a2lc.interop.coco_panoptic import png_folder

    def load(json_path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        document = json.loads(json_path.read_text())
        maps = {}
        for annotation in document["annotations"]:
            with Image.open(png_folder(json_path) / annotation["file_name"]) as image:
                rgb = np.asarray(image.convert("RGB")).astype(np.int64)
            maps[annotation["file_name"]] = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        return document, maps

    gt_doc, gt_maps = load(gt_json)
    pred_doc, pred_maps = load(pred_json)
    pred_by_name = {a["file_name"]: a for a in pred_doc["annotations"]}
    tp: dict[int, int] = {}
    fp: dict[int, int] = {}
    fn: dict[int, int] = {}
    iou_sum: dict[int, float] = {}
    for gt_ann in gt_doc["annotations"]:
        name = gt_ann["file_name"]
        pred_ann = pred_by_name[name]
        g, p = gt_maps[name], pred_maps[name]
        gt_cat = {s["id"]: s["category_id"] for s in gt_ann["segments_info"]}
        pred_cat = {s["id"]: s["category_id"] for s in pred_ann["segments_info"]}
        void = ~np.isin(g, list(gt_cat))
        matched_gt, matched_pred = set(), set()
        for gid, gcat in gt_cat.items():
            gmask = g == gid
            for pid, pcat in pred_cat.items():
                if pcat != gcat:
                    continue
                pmask = p == pid
                inter = int((gmask & pmask).sum())
                if not inter:
                    continue
                union = int(gmask.sum() + pmask.sum() - inter - (pmask & void).sum())
                if inter / union > 0.5:
                    matched_gt.add(gid)
                    matched_pred.add(pid)
                    tp[gcat] = tp.get(gcat, 0) + 1
                    iou_sum[gcat] = iou_sum.get(gcat, 0.0) + inter / union
        for gid, gcat in gt_cat.items():
            if gid not in matched_gt:
                fn[gcat] = fn.get(gcat, 0) + 1
        for pid, pcat in pred_cat.items():
            pmask = p == pid
            if pid not in matched_pred and (pmask & void).sum() <= 0.5 * pmask.sum():
                fp[pcat] = fp.get(pcat, 0) + 1
    scores = []
    for cat in set(tp) | set(fp) | set(fn):
        t, f_p, f_n = tp.get(cat, 0), fp.get(cat, 0), fn.get(cat, 0)
        scores.append(iou_sum.get(cat, 0.0) / (t + 0.5 * f_p + 0.5 * f_n))
    return float(np.mean(scores))


def test_panoptic_quality_of_the_standard_export_independently_checked(
    corrected: Path, tmp_path: Path
) -> None:
    """Ground truth against itself is 1; a2lc's PQ equals one written from the definition;
    per-segment panoptic scores far lower than the standard conversion of the same labels."""
    from a2lc.interop.coco_panoptic import export_panoptic, panoptic_quality

    with Workspace.open(corrected, read_only=True) as ws:
        export_panoptic(ws, tmp_path / "gt", labels_of=ws.read_ground_truth)
        export_panoptic(ws, tmp_path / "standard")
        export_panoptic(ws, tmp_path / "segments", units="segments")
    gt, standard, segments = (
        panoptic_paths(tmp_path / name, "train")[0] for name in ("gt", "standard", "segments")
    )
    assert panoptic_quality(gt, gt)["All"]["pq"] == pytest.approx(1.0)
    assert independent_pq(gt, gt) == pytest.approx(1.0)
    for prediction in (standard, segments):
        ours = panoptic_quality(gt, prediction)["All"]["pq"]
        assert ours == pytest.approx(independent_pq(gt, prediction), abs=1e-12)
    assert panoptic_quality(gt, standard)["All"]["pq"] > panoptic_quality(gt, segments)["All"]["pq"]
