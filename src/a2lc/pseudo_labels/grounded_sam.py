"""Initial pseudo-labels from Grounded SAM: Grounding DINO boxes, one SAM mask per box.

As in the paper: Grounding DINO detects boxes prompted with the class names;
each box takes the class of its best-matching phrase; SAM turns each box into
one mask; masks are painted in descending area so smaller ones stay on top.
The segment map holds ``detection index + 1`` (detections in descending score
order), the label map the box's class; uncovered pixels are 0 / 255.

The array functions here (:func:`phrase_token_spans`, :func:`assign_boxes`,
:func:`paint_masks`) are pure; :class:`GroundedSam` wraps the two Hugging Face
``transformers`` models (optional extra ``a2lc[sam]``), loaded from local
folders only; :func:`run_grounded_sam` runs them over images, resumably.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from a2lc._atomic import atomic_write_text
from a2lc._json import read_json
from a2lc._progress import progress
from a2lc.data.images import read_image
from a2lc.data.maps import read_label_map, read_segment_map, write_label_map, write_segment_map
from a2lc.data.sample import IGNORE_INDEX, Sample, identity_lut
from a2lc.errors import A2LCError, DataError, MissingDependencyError, Problem

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

PAPER_BOX_THRESHOLD = 0.2
"""The paper's Grounding DINO box threshold."""
DEFAULT_TEXT_THRESHOLD = 0.25
"""Grounding DINO's usual text threshold: a phrase must score this much to name a box."""
DEFAULT_BOX_BATCH = 32
"""Boxes per SAM mask-decoder call: bounds the decoder's memory, not the result."""
PHRASE_SEPARATOR = " . "
"""Grounding DINO separates the category phrases of a prompt with full stops."""

WEIGHTS_HELP = (
    "download the weights in transformers format on a machine with internet access, e.g. "
    "`huggingface-cli download IDEA-Research/grounding-dino-tiny --local-dir DIR` for the "
    "detector and `huggingface-cli download facebook/sam-vit-huge --local-dir DIR` (or "
    "sam-vit-base) for the segmenter, then pass those folders"
)


@dataclass(frozen=True)
class GroundedSamConfig:
    """Where the two models are and how detections become labels (recorded in the workspace)."""

    detector: Path
    """Local folder of a Grounding DINO checkpoint in transformers format (with its processor)."""
    segmenter: Path
    """Local folder of a SAM checkpoint in transformers format (with its processor)."""
    box_threshold: float = PAPER_BOX_THRESHOLD
    """A box is kept when its best prompt-token probability exceeds this."""
    text_threshold: float = DEFAULT_TEXT_THRESHOLD
    """... and its best-matching phrase scores above this."""
    prompts: dict[str, str] = field(default_factory=dict)
    """Optional class name → prompt phrase (default: the class name in words)."""
    device: str = "auto"
    """auto (CUDA when present), cpu or cuda."""
    box_batch: int = DEFAULT_BOX_BATCH
    """Boxes per SAM mask-decoder call."""

    def fingerprint(self) -> str:
        """Hash of everything that changes the output (not the device or batch size)."""
        keys = {
            "detector": str(Path(self.detector).resolve()),
            "segmenter": str(Path(self.segmenter).resolve()),
            "box_threshold": self.box_threshold,
            "text_threshold": self.text_threshold,
            "prompts": dict(sorted(self.prompts.items())),
        }
        return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- pure functions


def class_phrase(name: str) -> str:
    """A class name in words: ``traffic_light`` → ``traffic light``, ``SignSymbol`` → ``sign symbol``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).replace("_", " ").replace("-", " ")
    return " ".join(spaced.lower().split())


def prompt_phrases(class_names: Sequence[str], prompts: Mapping[str, str]) -> list[str]:
    """One phrase per class: ``prompts[name]`` where given, else :func:`class_phrase`."""
    unknown = sorted(set(prompts) - set(class_names))
    if unknown:
        raise DataError(
            Problem(
                "--prompts",
                f"unknown class names {unknown}; valid names: {', '.join(class_names)}",
            )
        )
    phrases = [prompts.get(name) or class_phrase(name) for name in class_names]
    bad = [n for n, p in zip(class_names, phrases, strict=True) if not p.strip() or "." in p]
    if bad:
        raise DataError(
            Problem("--prompts", f"phrases for {bad} must be non-empty and contain no '.'")
        )
    return phrases


def build_prompt(phrases: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """The prompt ``"a . b . c ."`` and each phrase's ``[start, end)`` character span in it."""
    spans, parts, position = [], [], 0
    for phrase in phrases:
        spans.append((position, position + len(phrase)))
        parts.append(phrase)
        position += len(phrase) + len(PHRASE_SEPARATOR)
    return PHRASE_SEPARATOR.join(parts) + " .", spans


def phrase_token_spans(
    offsets: Sequence[tuple[int, int]], char_spans: Sequence[tuple[int, int]]
) -> list[np.ndarray]:
    """Token indices of each phrase, from a fast tokenizer's ``offset_mapping``.

    Special tokens (empty offsets) and separators belong to no phrase.
    """
    starts = np.array([s for s, _ in offsets])
    ends = np.array([e for _, e in offsets])
    real = ends > starts
    return [np.flatnonzero(real & (starts < end) & (ends > start)) for start, end in char_spans]


def assign_boxes(
    token_probs: np.ndarray,
    spans: Sequence[np.ndarray],
    *,
    box_threshold: float,
    text_threshold: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which queries become boxes and their phrase.

    ``token_probs``: ``(Q, T)`` sigmoid of the detector's text logits;
    ``spans``: token indices of each of the ``P`` phrases. A query is kept when
    its best phrase-token probability exceeds ``box_threshold`` and its
    best-matching phrase (highest max-token probability) exceeds
    ``text_threshold``. Returns kept query indices, their phrase index and
    their score, in descending score order.
    """
    num_queries = token_probs.shape[0]
    if not spans or num_queries == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    phrase_scores = np.stack(
        [token_probs[:, s].max(axis=1) if s.size else np.zeros(num_queries) for s in spans],
        axis=1,
    )  # (Q, P)
    best = phrase_scores.argmax(axis=1)
    score = phrase_scores[np.arange(num_queries), best]
    # The best phrase's score is the best phrase-token probability, so one test covers both
    # the box threshold and the text threshold.
    keep = np.flatnonzero(score > max(box_threshold, text_threshold))
    order = keep[np.argsort(-score[keep], kind="stable")]
    return order, best[order], score[order]


def paint_masks(masks: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(segments, labels)`` from ``(N, H, W)`` bool masks and their ``(N,)`` classes.

    Masks are painted in descending area, so a smaller mask stays on top of a
    larger one it overlaps. Segment ids are ``index + 1``; uncovered pixels are
    segment 0, label 255. A mask fully hidden by smaller ones leaves no pixel.
    """
    if masks.ndim != 3 or masks.shape[0] != classes.shape[0]:
        raise ValueError(f"masks {masks.shape} and classes {classes.shape} do not match")
    height, width = masks.shape[1:]
    segments = np.zeros((height, width), dtype=np.int32)
    areas = masks.sum(axis=(1, 2))
    for index in np.argsort(-areas, kind="stable"):
        segments[masks[index]] = index + 1
    table = np.concatenate([[IGNORE_INDEX], np.asarray(classes, dtype=np.int64)]).astype(np.uint8)
    return segments, table[segments]


def corners_from_centres(boxes: np.ndarray, *, width: int, height: int) -> np.ndarray:
    """``(N, 4)`` normalised ``cx, cy, w, h`` → pixel ``x0, y0, x1, y1`` clipped to the image."""
    cx, cy, w, h = boxes.T
    corners = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    corners *= np.array([width, height, width, height], dtype=np.float64)
    return np.asarray(np.clip(corners, 0, [width, height, width, height]))


def chunk_phrases(token_counts: Sequence[int], *, max_tokens: int) -> list[list[int]]:
    """Groups of phrase indices whose prompt fits ``max_tokens`` (with [CLS], [SEP], full stops)."""
    chunks: list[list[int]] = [[]]
    used = 2  # [CLS] and [SEP]
    for index, count in enumerate(token_counts):
        need = count + 1  # the phrase and its full stop
        if need + 2 > max_tokens:
            raise DataError(
                Problem(
                    "--prompts",
                    f"phrase {index} needs {count} tokens; the detector takes {max_tokens - 3}",
                )
            )
        if chunks[-1] and used + need > max_tokens:
            chunks.append([])
            used = 2
        chunks[-1].append(index)
        used += need
    return chunks


# --------------------------------------------------------------------------- models


def _import_transformers() -> Any:
    # Weights come from local folders only: never reach for the hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import transformers
    except ImportError:
        raise MissingDependencyError(
            'Grounded SAM pseudo-labels need transformers: pip install "a2lc[sam]"'
        ) from None
    logging.getLogger("transformers").setLevel(logging.ERROR)
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    return transformers


def _check_model_dir(path: Path, *, option: str, model_types: tuple[str, ...]) -> None:
    path = Path(path)
    config = path / "config.json"
    if not path.is_dir():
        raise DataError(Problem(path, f"{option}: no such folder; {WEIGHTS_HELP}"))
    if not config.is_file():
        raise DataError(
            Problem(
                path, f"{option}: no config.json, not a transformers model folder; {WEIGHTS_HELP}"
            )
        )
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise DataError(Problem(config, f"{option}: unreadable config ({exc})")) from None
    if model_type not in model_types:
        raise DataError(
            Problem(
                path,
                f"{option}: holds a {model_type!r} model, expected {' or '.join(model_types)}; {WEIGHTS_HELP}",
            )
        )
    has_weights = any(path.glob("*.safetensors")) or any(path.glob("*.bin"))
    if not has_weights:
        raise DataError(
            Problem(path, f"{option}: no weights (*.safetensors or *.bin); {WEIGHTS_HELP}")
        )


@dataclass
class Detections:
    """One image's detections: ``(N, 4)`` pixel boxes, ``(N,)`` classes and scores."""

    boxes: np.ndarray
    classes: np.ndarray
    scores: np.ndarray


class GroundedSam:
    """Grounding DINO + SAM from local folders; ``detect`` then ``segment`` per image."""

    def __init__(self, config: GroundedSamConfig, class_names: Sequence[str]) -> None:
        _check_model_dir(config.detector, option="--detector", model_types=("grounding-dino",))
        _check_model_dir(config.segmenter, option="--segmenter", model_types=("sam",))
        transformers = _import_transformers()
        from a2lc.models.training import resolve_device
        from a2lc.runtime import configure_threads

        configure_threads()
        self.config = config
        self.device = resolve_device(config.device)
        try:
            self.detector = transformers.GroundingDinoForObjectDetection.from_pretrained(
                config.detector, local_files_only=True
            )
            self.detector_processor = transformers.AutoProcessor.from_pretrained(
                config.detector, local_files_only=True
            )
            self.segmenter = transformers.SamModel.from_pretrained(
                config.segmenter, local_files_only=True
            )
            self.segmenter_processor = transformers.SamProcessor.from_pretrained(
                config.segmenter, local_files_only=True
            )
        except (OSError, ValueError) as exc:
            raise DataError(
                Problem(
                    f"{config.detector} / {config.segmenter}",
                    f"cannot load the models ({exc}); {WEIGHTS_HELP}",
                )
            ) from None
        self.detector.to(self.device).eval()
        self.segmenter.to(self.device).eval()
        tokenizer = self.detector_processor.tokenizer
        if not getattr(tokenizer, "is_fast", False):
            raise DataError(
                Problem(
                    config.detector,
                    "the detector's tokenizer must be a fast tokenizer (tokenizer.json)",
                )
            )
        phrases = prompt_phrases(class_names, config.prompts)
        counts = [len(tokenizer(p, add_special_tokens=False).input_ids) for p in phrases]
        max_tokens = int(self.detector.config.max_text_len)
        self.prompts: list[tuple[dict[str, torch.Tensor], list[np.ndarray], list[int]]] = []
        for chunk in chunk_phrases(counts, max_tokens=max_tokens):
            prompt, char_spans = build_prompt([phrases[i] for i in chunk])
            encoded = tokenizer(prompt, return_offsets_mapping=True, return_tensors="pt")
            offsets = [(int(a), int(b)) for a, b in encoded.pop("offset_mapping")[0].tolist()]
            spans = phrase_token_spans(offsets, char_spans)
            self.prompts.append(({k: v.to(self.device) for k, v in encoded.items()}, spans, chunk))
        self.phrases = phrases

    def detect(self, image: np.ndarray) -> Detections:
        """Boxes of ``image`` (``H×W×3`` uint8) over every prompt chunk, best score first."""
        import torch

        height, width = image.shape[:2]
        pixels = self.detector_processor.image_processor(
            images=Image.fromarray(image), return_tensors="pt"
        )
        pixels = {k: v.to(self.device) for k, v in pixels.items()}
        boxes, classes, scores = [], [], []
        with torch.inference_mode():
            for text, spans, chunk in self.prompts:
                out = self.detector(**pixels, **text)
                probs = out.logits[0].sigmoid().float().cpu().numpy()
                kept, phrase, score = assign_boxes(
                    probs,
                    spans,
                    box_threshold=self.config.box_threshold,
                    text_threshold=self.config.text_threshold,
                )
                centres = out.pred_boxes[0].float().cpu().numpy()[kept]
                boxes.append(corners_from_centres(centres, width=width, height=height))
                classes.append(np.asarray(chunk, dtype=np.int64)[phrase])
                scores.append(score)
        all_scores = np.concatenate(scores)
        order = np.argsort(-all_scores, kind="stable")
        return Detections(
            boxes=np.concatenate(boxes)[order],
            classes=np.concatenate(classes)[order],
            scores=all_scores[order],
        )

    def segment(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """``(N, H, W)`` bool: one SAM mask per box; the image embedding is computed once."""
        import torch

        height, width = image.shape[:2]
        if boxes.shape[0] == 0:
            return np.zeros((0, height, width), dtype=bool)
        processor = self.segmenter_processor
        # One preprocessing call: the image once, every box mapped to the resized frame.
        inputs = processor(
            images=Image.fromarray(image), input_boxes=[boxes.tolist()], return_tensors="pt"
        )
        masks = []
        with torch.inference_mode():
            embedding = self.segmenter.get_image_embeddings(inputs["pixel_values"].to(self.device))
            prompts = inputs["input_boxes"].to(self.device)
            for start in range(0, boxes.shape[0], self.config.box_batch):
                out = self.segmenter(
                    image_embeddings=embedding,
                    input_boxes=prompts[:, start : start + self.config.box_batch],
                    multimask_output=False,
                )
                full = processor.image_processor.post_process_masks(
                    out.pred_masks.cpu(), inputs["original_sizes"], inputs["reshaped_input_sizes"]
                )[0]
                masks.append(full[:, 0].numpy().astype(bool))
        return np.concatenate(masks)


# --------------------------------------------------------------------------- running


PARAMS_FILE = "params.json"


@dataclass(frozen=True)
class RunSummary:
    images: int
    skipped: int
    detections: int
    seconds: float

    @classmethod
    def merged(cls, parts: Sequence[RunSummary]) -> RunSummary:
        """The summary of runs over disjoint images side by side (ranks of one job)."""
        return cls(
            images=sum(p.images for p in parts),
            skipped=sum(p.skipped for p in parts),
            detections=sum(p.detections for p in parts),
            seconds=max(p.seconds for p in parts),
        )


def _output_paths(out: Path, image_id: str) -> tuple[Path, Path, Path]:
    return (
        out / "segments" / f"{image_id}.png",
        out / "labels" / f"{image_id}.png",
        out / "detections" / f"{image_id}.json",
    )


def run_grounded_sam(
    samples: Sequence[Sample],
    out: Path,
    *,
    config: GroundedSamConfig,
    class_names: Sequence[str],
    palette: Sequence[tuple[int, int, int]] | None = None,
    model: GroundedSam | None = None,
    show_progress: bool = True,
) -> RunSummary:
    """Write ``out/segments/ID.png``, ``out/labels/ID.png`` and ``out/detections/ID.json``.

    Resumable: an image whose detection file exists (it is written last,
    atomically) is skipped. ``out/params.json`` records the configuration; a
    folder made with other models, thresholds or prompts is refused rather than
    mixed.
    """
    out = Path(out)
    params = {
        **{k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "fingerprint": config.fingerprint(),
        "class_names": list(class_names),
    }
    params_path = out / PARAMS_FILE
    if params_path.is_file():
        previous = read_json(params_path)
        if previous.get("fingerprint") != params["fingerprint"] or previous.get(
            "class_names"
        ) != list(class_names):
            raise A2LCError(
                f"{out} holds Grounded SAM output made with other models, thresholds or prompts "
                f"({params_path}); use another folder or delete it"
            )
    todo = [s for s in samples if not _output_paths(out, s.id)[2].is_file()]
    skipped = len(samples) - len(todo)
    if skipped:
        log.info("resuming: %d of %d images already done", skipped, len(samples))
    if not todo:
        return RunSummary(images=len(samples), skipped=skipped, detections=0, seconds=0.0)
    model = model or GroundedSam(config, class_names)  # validates before anything is written
    for sub in ("segments", "labels", "detections"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    atomic_write_text(params_path, json.dumps(params, indent=1, sort_keys=True))
    started = time.perf_counter()
    count = 0
    for sample in progress(todo, desc="grounded-sam", unit="img", enabled=show_progress):
        image = read_image(sample.image_path)
        detections = model.detect(image)
        masks = model.segment(image, detections.boxes)
        if masks.shape[1:] != sample.shape:
            masks = _resize_masks(masks, sample.shape)
        segments, labels = paint_masks(masks, detections.classes)
        seg_path, lab_path, det_path = _output_paths(out, sample.id)
        write_segment_map(seg_path, segments)
        write_label_map(lab_path, labels, palette=palette)
        record = {
            "boxes": np.round(detections.boxes, 2).tolist(),
            "classes": [class_names[c] for c in detections.classes],
            "scores": np.round(detections.scores, 4).tolist(),
            "areas": masks.sum(axis=(1, 2)).tolist(),
        }
        atomic_write_text(det_path, json.dumps(record))
        count += len(detections.classes)
    return RunSummary(
        images=len(samples),
        skipped=skipped,
        detections=count,
        seconds=time.perf_counter() - started,
    )


def _resize_masks(masks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of ``(N, h, w)`` masks to the label resolution ``shape``."""
    rows = (np.arange(shape[0]) * masks.shape[1] / shape[0]).astype(np.int64)
    cols = (np.arange(shape[1]) * masks.shape[2] / shape[1]).astype(np.int64)
    return masks[:, rows][:, :, cols]


def read_outputs(
    out: Path, samples: Sequence[Sample], *, num_classes: int
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(image id, segments, labels)`` from a finished :func:`run_grounded_sam` folder."""
    lut = identity_lut(num_classes)
    for sample in samples:
        seg_path, lab_path, _ = _output_paths(out, sample.id)
        yield (
            sample.id,
            read_segment_map(seg_path, shape=sample.shape),
            read_label_map(lab_path, lut=lut, shape=sample.shape),
        )
