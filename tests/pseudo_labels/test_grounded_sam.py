from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from a2lc.cli import main
from a2lc.data.readers import load_dataset
from a2lc.data.synthetic import make_synthetic_dataset
from a2lc.errors import DataError, MissingDependencyError
from a2lc.pseudo_labels import grounded_sam
from a2lc.pseudo_labels.grounded_sam import (
    GroundedSam,
    GroundedSamConfig,
    assign_boxes,
    build_prompt,
    chunk_phrases,
    class_phrase,
    corners_from_centres,
    paint_masks,
    phrase_token_spans,
    prompt_phrases,
    run_grounded_sam,
)
from a2lc.workspace import Workspace

from .tiny_hf import VOCAB, save_tiny_detector, save_tiny_segmenter

pytest.importorskip("transformers", reason="install the sam extra: pip install 'a2lc[sam]'")


# ------------------------------------------------------------------ pure functions


def test_class_phrases_and_prompt() -> None:
    assert class_phrase("traffic_light") == "traffic light"
    assert class_phrase("SignSymbol") == "sign symbol"
    assert prompt_phrases(["road", "sidewalk"], {"sidewalk": "side walk"}) == ["road", "side walk"]
    with pytest.raises(DataError, match="unknown class names \\['walkway'\\]"):
        prompt_phrases(["road"], {"walkway": "x"})
    with pytest.raises(DataError, match=r"contain no '\.'"):
        prompt_phrases(["road"], {"road": "a. b"})
    prompt, spans = build_prompt(["road", "traffic light", "car"])
    assert prompt == "road . traffic light . car ."
    assert [prompt[a:b] for a, b in spans] == ["road", "traffic light", "car"]


def test_phrase_token_spans_from_offsets() -> None:
    # [CLS] road . traffic light . car . [SEP], as a BERT tokenizer reports them.
    offsets = [(0, 0), (0, 4), (5, 6), (7, 14), (15, 20), (21, 22), (23, 26), (27, 28), (0, 0)]
    spans = phrase_token_spans(offsets, [(0, 4), (7, 20), (23, 26)])
    assert [s.tolist() for s in spans] == [[1], [3, 4], [6]]


def test_assign_boxes_thresholds_and_best_phrase() -> None:
    spans = [np.array([1]), np.array([3, 4]), np.array([6])]
    probs = np.zeros((4, 9))
    probs[0, [1, 4]] = [0.3, 0.9]  # best phrase: 1 (via its second token)
    probs[1, 6] = 0.5  # phrase 2
    probs[2, 1] = 0.15  # below the box threshold
    probs[3, [2, 5]] = 0.99  # only separators: no phrase matches
    kept, phrase, score = assign_boxes(probs, spans, box_threshold=0.2, text_threshold=0.25)
    assert kept.tolist() == [0, 1]
    assert phrase.tolist() == [1, 2]
    np.testing.assert_allclose(score, [0.9, 0.5])
    kept, _, _ = assign_boxes(probs, spans, box_threshold=0.6, text_threshold=0.25)
    assert kept.tolist() == [0]
    kept, _, _ = assign_boxes(probs, spans, box_threshold=0.1, text_threshold=0.1)
    assert kept.tolist() == [0, 1, 2]


def test_paint_masks_puts_smaller_masks_on_top() -> None:
    masks = np.zeros((3, 6, 8), dtype=bool)
    masks[0, 1:3, 1:3] = True  # small (4 px), detection 0
    masks[1] = True  # whole image, detection 1
    masks[2, :4, :4] = True  # medium, detection 2
    segments, labels = paint_masks(masks, np.array([7, 2, 5]))
    assert segments[1, 1] == 1  # the smallest wins where all overlap
    assert segments[0, 0] == 3
    assert segments[5, 7] == 2
    assert labels[1, 1] == 7
    assert labels[0, 0] == 5
    assert labels[5, 7] == 2
    empty_segments, empty_labels = paint_masks(np.zeros((0, 2, 2), bool), np.zeros(0, np.int64))
    assert (empty_segments == 0).all()
    assert (empty_labels == 255).all()


def test_boxes_and_prompt_chunks() -> None:
    corners = corners_from_centres(
        np.array([[0.5, 0.5, 0.5, 1.0], [0.0, 0.0, 0.2, 0.2]]), width=100, height=50
    )
    np.testing.assert_allclose(corners, [[25, 0, 75, 50], [0, 0, 10, 5]])
    assert chunk_phrases([1, 2, 1, 1], max_tokens=8) == [[0, 1], [2, 3]]
    with pytest.raises(DataError, match="needs 9 tokens"):
        chunk_phrases([9], max_tokens=8)


# ------------------------------------------------------------------ with tiny models


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("models")
    return save_tiny_detector(root / "dino"), save_tiny_segmenter(root / "sam")


@pytest.fixture
def dataset_root(tmp_path: Path) -> Path:
    # 128 px and more, non-square, two different sizes.
    make_synthetic_dataset(tmp_path / "data", num_images=3, height=144, width=176, cell=48)
    return tmp_path / "data"


def config(models: tuple[Path, Path], **kwargs: object) -> GroundedSamConfig:
    options: dict[str, object] = {"box_threshold": 0.0, "text_threshold": 0.0}
    options.update(kwargs)
    return GroundedSamConfig(detector=models[0], segmenter=models[1], **options)  # type: ignore[arg-type]


def test_tokens_of_multi_word_prompts_map_to_their_class(models: tuple[Path, Path]) -> None:
    names = ["road", "sidewalk", "car"]
    model = GroundedSam(config(models, prompts={"sidewalk": "side walk"}), names)
    ((text, spans, chunk),) = model.prompts
    ids = text["input_ids"][0].tolist()
    assert [[VOCAB[ids[i]] for i in s] for s in spans] == [["road"], ["side", "walk"], ["car"]]
    assert chunk == [0, 1, 2]


def test_long_class_lists_are_split_into_prompts_that_fit(
    tmp_path: Path, models: tuple[Path, Path]
) -> None:
    detector = save_tiny_detector(tmp_path / "short", max_text_len=8)
    names = ["sky", "building", "road", "tree", "car", "pole", "person"]
    model = GroundedSam(config((detector, models[1])), names)
    assert [chunk for _, _, chunk in model.prompts] == [[0, 1, 2], [3, 4, 5], [6]]
    image = (np.random.default_rng(0).random((130, 150, 3)) * 255).astype(np.uint8)
    detections = model.detect(image)
    assert detections.classes.size == 3 * 12  # every query of every chunk (thresholds 0)
    assert set(detections.classes.tolist()) <= set(range(len(names)))
    assert (np.diff(detections.scores) <= 0).all()


def test_run_writes_consistent_maps_in_painting_order(
    tmp_path: Path, models: tuple[Path, Path], dataset_root: Path
) -> None:
    dataset = load_dataset(dataset_root, split="train")
    out = tmp_path / "out"
    summary = run_grounded_sam(
        dataset.samples,
        out,
        config=config(models),
        class_names=dataset.class_names,
        show_progress=False,
    )
    assert (summary.images, summary.skipped) == (3, 0)
    assert summary.detections == 3 * 12
    for sample in dataset.samples:
        from a2lc.data.maps import read_label_map, read_segment_map
        from a2lc.data.sample import identity_lut

        segments = read_segment_map(out / "segments" / f"{sample.id}.png", shape=sample.shape)
        labels = read_label_map(
            out / "labels" / f"{sample.id}.png", lut=identity_lut(8), shape=sample.shape
        )
        record = json.loads((out / "detections" / f"{sample.id}.json").read_text())
        areas = np.array(record["areas"])
        assert len(record["classes"]) == len(record["boxes"]) == 12
        for k in np.unique(segments[segments > 0]):
            assert (
                labels[segments == k] == dataset.class_names.index(record["classes"][k - 1])
            ).all()
            assert (segments == k).sum() <= areas[k - 1]
        # Painted last, the smallest non-empty mask is never covered.
        smallest = int(np.flatnonzero(areas == areas[areas > 0].min())[0])
        assert (segments == smallest + 1).sum() == areas[smallest]
        assert ((segments == 0) == (labels == 255)).all()


def test_box_threshold_drops_everything_above_the_best_score(
    tmp_path: Path, models: tuple[Path, Path], dataset_root: Path
) -> None:
    dataset = load_dataset(dataset_root, split="train")
    summary = run_grounded_sam(
        dataset.samples,
        tmp_path / "out",
        config=config(models, box_threshold=1.0),
        class_names=dataset.class_names,
        show_progress=False,
    )
    assert summary.detections == 0


def test_resume_after_interruption_matches_an_uninterrupted_run(
    tmp_path: Path, models: tuple[Path, Path], dataset_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = load_dataset(dataset_root, split="train")

    def run(folder: str, **options: object) -> grounded_sam.RunSummary:
        return run_grounded_sam(
            dataset.samples,
            tmp_path / folder,
            config=config(models, **options),
            class_names=dataset.class_names,
            show_progress=False,
        )

    run("whole")

    calls: list[int] = []
    original = GroundedSam.segment

    def interrupted(self: GroundedSam, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, image, boxes)

    monkeypatch.setattr(GroundedSam, "segment", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run("part")
    monkeypatch.setattr(GroundedSam, "segment", original)
    detected: list[int] = []
    original_detect = GroundedSam.detect

    def counting(self: GroundedSam, image: np.ndarray) -> grounded_sam.Detections:
        detected.append(1)
        return original_detect(self, image)

    monkeypatch.setattr(GroundedSam, "detect", counting)
    summary = run("part")
    assert summary.skipped == 1
    assert len(detected) == 2
    for sub in ("segments", "labels", "detections"):
        for sample in dataset.samples:
            name = f"{sample.id}.{'json' if sub == 'detections' else 'png'}"
            whole = (tmp_path / "whole" / sub / name).read_bytes()
            assert (tmp_path / "part" / sub / name).read_bytes() == whole
    # Other thresholds in the same folder would mix two runs: refused.
    with pytest.raises(Exception, match="other models, thresholds or prompts"):
        run("part", box_threshold=0.5)


def test_cli_writes_initial_labels_into_the_workspace(
    tmp_path: Path,
    models: tuple[Path, Path],
    dataset_root: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ws = tmp_path / "ws"
    assert main(["init", "-w", str(ws), "--data", str(dataset_root)]) == 0
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"sidewalk": "side walk"}))
    args = ["pseudo-label", "-w", str(ws), "--source", "grounded-sam", "--detector", str(models[0])]
    args += ["--segmenter", str(models[1]), "--box-threshold", "0.3", "--text-threshold", "0.35"]
    args += ["--prompts", str(prompts), "--device", "cpu", "--box-batch", "5"]
    assert main(args) == 0
    assert "grounded-sam: 3 images (0 done before)" in capsys.readouterr().out
    with Workspace.open(ws) as w:
        assert w.meta("initial_source") == "grounded-sam"
        recorded = json.loads(w.meta("initial_parameters") or "{}")
        assert recorded["box_threshold"] == 0.3
        assert recorded["text_threshold"] == 0.35
        assert recorded["prompts"] == {"sidewalk": "side walk"}
        present = 0
        for sample in w.samples:
            segments = w.read_segments(sample.id)
            labels = w.read_initial_labels(sample.id)
            assert ((segments == 0) == (labels == 255)).all()
            present += np.unique(segments[segments > 0]).size
        assert w.status()["segments"]["initial"] == present
        assert not (ws / "staging").exists()


OFFLINE_DRIVER = """
import os, socket, sys

def refuse(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        raise OSError(f"a2lc tried to reach the network: {address}")
    return real_connect(self, address)

real_connect = socket.socket.connect
socket.socket.connect = refuse
from a2lc.cli import main
code = main(sys.argv[1:])
print("offline:", os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
sys.exit(code)
"""


def test_runs_offline_without_touching_the_network(
    tmp_path: Path, models: tuple[Path, Path], dataset_root: Path
) -> None:
    """A fresh process with the hub's offline switches unset and every TCP connect refused."""
    ws = tmp_path / "ws"
    assert main(["init", "-w", str(ws), "--data", str(dataset_root)]) == 0
    env = {
        k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    env["TQDM_DISABLE"] = "1"
    args = ["pseudo-label", "-w", str(ws), "--source", "grounded-sam", "--device", "cpu"]
    args += ["--detector", str(models[0]), "--segmenter", str(models[1])]
    result = subprocess.run(
        [sys.executable, "-c", OFFLINE_DRIVER, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "offline: 1 1" in result.stdout
    with Workspace.open(ws) as w:
        assert w.meta("initial_source") == "grounded-sam"


def test_errors_say_what_is_wrong_and_how_to_get_weights(
    tmp_path: Path,
    models: tuple[Path, Path],
    dataset_root: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = [
        "pseudo-label",
        "--data",
        str(dataset_root),
        "--out",
        str(tmp_path / "o"),
        "--source",
        "grounded-sam",
    ]
    assert main([*base, "--detector", str(tmp_path / "nope"), "--segmenter", str(models[1])]) == 1
    err = capsys.readouterr().err
    assert "--detector: no such folder" in err
    assert "huggingface-cli download" in err
    assert main([*base, "--detector", str(models[1]), "--segmenter", str(models[1])]) == 1
    assert "holds a 'sam' model, expected grounding-dino" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text('{"model_type": "sam"}')
    assert main([*base, "--detector", str(models[0]), "--segmenter", str(empty)]) == 1
    assert "no weights" in capsys.readouterr().err
    assert main([*base]) == 1
    assert "needs --detector DIR and --segmenter DIR" in capsys.readouterr().err
    assert (
        main(["pseudo-label", "--source", "grounded-sam", "--detector", "a", "--segmenter", "b"])
        == 1
    )
    assert "give --workspace W, or --data DIR and --out DIR" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_missing_transformers_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "a2lc\[sam\]"'):
        grounded_sam._import_transformers()


def test_core_package_imports_without_transformers() -> None:
    code = (
        "import sys; sys.modules['transformers'] = None\n"
        "import a2lc, a2lc.cli, a2lc.pseudo_labels.grounded_sam\n"
        "assert a2lc.cli.main(['pseudo-label', '--help']) == 0\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "--detector" in result.stdout


def test_one_image_embedding_per_image_and_batched_boxes(models: tuple[Path, Path]) -> None:
    model = GroundedSam(config(models, box_batch=5), ["road", "car"])
    embeddings: list[int] = []
    decoder_boxes: list[int] = []
    embed, forward = model.segmenter.get_image_embeddings, model.segmenter.forward

    def counting_embed(*args: object, **kwargs: object) -> object:
        embeddings.append(1)
        return embed(*args, **kwargs)

    def counting_forward(*args: object, **kwargs: object) -> object:
        decoder_boxes.append(int(kwargs["input_boxes"].shape[1]))  # type: ignore[attr-defined]
        return forward(*args, **kwargs)

    model.segmenter.get_image_embeddings = counting_embed
    model.segmenter.forward = counting_forward
    image = (np.random.default_rng(1).random((200, 130, 3)) * 255).astype(np.uint8)
    boxes = model.detect(image).boxes
    masks = model.segment(image, boxes)
    assert masks.shape == (12, 200, 130)
    assert embeddings == [1]
    assert decoder_boxes == [5, 5, 2]


def test_refused_before_running_once_a_round_started(
    open_round: Path, models: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["pseudo-label", "-w", str(open_round), "--source", "grounded-sam"]
    assert main([*args, "--detector", str(models[0]), "--segmenter", str(models[1])]) == 1
    assert "cannot change after the first round started" in capsys.readouterr().err
    assert not (open_round / "staging").exists()
