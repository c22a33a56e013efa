"""Run inside a virtual environment with FiftyOne (not a2lc's): read an a2lc
``--format fiftyone`` export with FiftyOne's ``ImageSegmentationDirectory`` importer.

usage: python fiftyone_check.py EXPORT_DIR OUT.npz

The importer is used directly (no FiftyOne dataset, so no database). OUT.npz holds
each sample's mask as FiftyOne loaded it (``<image file stem>``) and the mask
targets (``targets``: "id:name" strings) from ``mask_targets.json``.
"""

import json
import os
import sys

import numpy as np
from fiftyone.utils.data.importers import ImageSegmentationDirectoryImporter

export, out = sys.argv[1:3]
importer = ImageSegmentationDirectoryImporter(dataset_dir=export, load_masks=True)
arrays = {}
with importer:
    for image_path, _, label in importer:
        if label is None or label.mask is None:
            raise SystemExit(f"{image_path}: no mask")
        if not os.path.isfile(image_path):
            raise SystemExit(f"{image_path}: image missing")
        arrays[os.path.splitext(os.path.basename(image_path))[0]] = np.asarray(label.mask)
with open(os.path.join(export, "mask_targets.json")) as handle:
    targets = {int(k): str(v) for k, v in json.load(handle).items()}
arrays["targets"] = np.asarray([f"{k}:{v}" for k, v in sorted(targets.items())])
np.savez_compressed(out, **arrays)
print(f"FiftyOne read {len(arrays) - 1} masks, {len(targets)} mask targets")
