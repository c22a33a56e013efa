"""Throughput of the Grounded SAM pipeline (images/s), on this machine's device.

Without ``--detector``/``--segmenter`` it builds the public architectures
(Grounding DINO Swin-T with a BERT-base text encoder; SAM ViT-B/L/H) from their
configs with random weights: the same layers and sizes as the downloaded
checkpoints, so the same speed, and nothing to download. With the two folders
it times the real checkpoints. Random weights give arbitrary boxes, so every
image is segmented with a fixed number of boxes (``--boxes``, about what the
paper's thresholds give on a Cityscapes image).

    python benchmarks/grounded_sam.py --sam vit-h --images 3 --height 1024 --width 2048
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from a2lc.pseudo_labels.grounded_sam import GroundedSam, GroundedSamConfig

CITYSCAPES_CLASSES = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
]  # fmt: skip
SAM_VARIANTS = {
    # hidden size, layers, heads, global attention blocks (as published)
    "vit-b": (768, 12, 12, [2, 5, 8, 11]),
    "vit-l": (1024, 24, 16, [5, 11, 17, 23]),
    "vit-h": (1280, 32, 16, [7, 15, 23, 31]),
}


def save_architectures(folder: Path, sam: str) -> tuple[Path, Path]:
    from transformers import (
        BertTokenizerFast,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessorPil,
        GroundingDinoProcessor,
        SamConfig,
        SamImageProcessorPil,
        SamModel,
        SamProcessor,
        SamVisionConfig,
    )

    words = sorted({w for name in CITYSCAPES_CLASSES for w in name.split()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *words]
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    detector = folder / "grounding-dino-swin-t"
    GroundingDinoForObjectDetection(GroundingDinoConfig()).save_pretrained(detector)
    GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessorPil(), tokenizer=tokenizer
    ).save_pretrained(detector)
    hidden, layers, heads, global_attention = SAM_VARIANTS[sam]
    vision = SamVisionConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        global_attn_indexes=global_attention,
    )
    segmenter = folder / f"sam-{sam}"
    SamModel(SamConfig(vision_config=vision)).save_pretrained(segmenter)
    SamProcessor(image_processor=SamImageProcessorPil()).save_pretrained(segmenter)
    return detector, segmenter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--detector", type=Path)
    parser.add_argument("--segmenter", type=Path)
    parser.add_argument("--sam", choices=sorted(SAM_VARIANTS), default="vit-b")
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--boxes", type=int, default=30)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        if args.detector is None or args.segmenter is None:
            detector, segmenter = save_architectures(Path(tmp), args.sam)
            what = f"Grounding DINO Swin-T + SAM {args.sam} (random weights)"
        else:
            detector, segmenter = args.detector, args.segmenter
            what = f"{detector.name} + {segmenter.name}"
        config = GroundedSamConfig(detector=detector, segmenter=segmenter, device=args.device)
        model = GroundedSam(config, CITYSCAPES_CLASSES)
        rng = np.random.default_rng(0)
        image = (rng.random((args.height, args.width, 3)) * 255).astype(np.uint8)
        x0 = rng.uniform(0, args.width * 0.8, args.boxes)
        y0 = rng.uniform(0, args.height * 0.8, args.boxes)
        boxes = np.stack([x0, y0, x0 + args.width * 0.1, y0 + args.height * 0.1], axis=1)
        model.segment(image, boxes[:1])  # warm-up
        detect_s, segment_s = [], []
        for _ in range(args.images):
            started = time.perf_counter()
            model.detect(image)
            detect_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            model.segment(image, boxes)
            segment_s.append(time.perf_counter() - started)
    detect, segment = float(np.median(detect_s)), float(np.median(segment_s))
    print("| models | device | image | boxes | detect s | segment s | images/s |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {what} | {model.device} | {args.width}×{args.height} | {args.boxes} | "
        f"{detect:.2f} | {segment:.2f} | {1 / (detect + segment):.3f} |"
    )


if __name__ == "__main__":
    main()
