"""a2lc's brush RLE against Label Studio's own encoder: byte for byte, and time (issue #23).

Masks: every class region of 5 CamVid val label maps (720×960; large runs included)
plus edge cases (empty, full, one pixel, runs around the 65,536-value chunk). Both
encoders run in one process, Label Studio's environment (`.ci/tools`), best of three.

    python benchmarks/rle_speed.py     # writes benchmarks/results/rle_speed.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from a2lc._atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "rle_speed.json"
TOOLS = Path(os.environ.get("A2LC_TOOLS", ROOT / ".tools"))


def masks(camvid: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for path in sorted((camvid / "labels" / "val").iterdir())[:5]:
        labels = np.asarray(Image.open(path))
        labels = labels[..., 0] if labels.ndim == 3 else labels
        for value in np.unique(labels):
            out[f"{path.stem}_class{int(value)}"] = labels == value
    height, width = 720, 960
    out["empty"] = np.zeros((height, width), bool)
    out["full"] = np.ones((height, width), bool)
    out["one_pixel"] = out["empty"].copy()
    out["one_pixel"][300, 400] = True
    for pixels in (16383, 16384, 16385, 32768, 32769):  # 4 values a pixel: 65,536 = 16,384 px
        run = np.zeros(height * width, bool)
        run[100 : 100 + pixels] = True
        out[f"run_{pixels}px"] = run.reshape(height, width)
    return out


def main() -> int:
    camvid = ROOT.parent / "shared" / "data" / "camvid"
    arrays = masks(camvid)
    with tempfile.TemporaryDirectory() as tmp:
        npz, result = Path(tmp) / "masks.npz", Path(tmp) / "out.json"
        np.savez(npz, **arrays)  # type: ignore[arg-type]
        tool = ROOT / "tests" / "interop" / "tools" / "ls_rle_encode.py"
        python = TOOLS / "label-studio" / "bin" / "python"
        subprocess.run(
            [str(python), str(tool), str(npz), str(ROOT / "src"), str(result)], check=True
        )
        measured = json.loads(result.read_text())
    summary = {
        "masks": len(measured["masks"]),
        "byte_identical": sum(measured["identical"]),
        "different": [
            n for n, same in zip(measured["masks"], measured["identical"], strict=True) if not same
        ],
        "label_studio_seconds": round(measured["label_studio_seconds"], 4),
        "a2lc_seconds": round(measured["a2lc_seconds"], 4),
        "a2lc_time_over_label_studio": round(
            measured["a2lc_seconds"] / measured["label_studio_seconds"], 3
        ),
    }
    atomic_write_text(OUT, json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
