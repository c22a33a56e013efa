"""Run inside a virtual environment with datumaro (not a2lc's): import an a2lc export
with datumaro, dump what datumaro understood, and export it again with datumaro.

usage: python datumaro_check.py FORMAT EXPORT_DIR OUT.npz REEXPORT_DIR

OUT.npz holds, per item id, ``<id>/labels`` (H×W int16 label names' indices into
``names``, -1 = no mask) and ``<id>/instances`` (H×W int32, one value per mask,
0 = none), plus ``names`` (datumaro's label names).
"""

import sys

import numpy as np
from datumaro.components.annotation import AnnotationType, Mask
from datumaro.components.dataset import Dataset

fmt, path, out, reexport = sys.argv[1:5]
dataset = Dataset.import_from(path, fmt)
names = [label.name for label in dataset.categories()[AnnotationType.label]]
arrays = {"names": np.asarray(names)}
for item in dataset:
    masks = [a for a in item.annotations if isinstance(a, Mask)]
    if not masks:
        raise SystemExit(f"{item.id}: no masks")
    shape = masks[0].image.shape
    labels = np.full(shape, -1, dtype=np.int16)
    instances = np.zeros(shape, dtype=np.int32)
    for number, mask in enumerate(masks, start=1):
        where = mask.image.astype(bool)
        if (instances[where] != 0).any():
            raise SystemExit(f"{item.id}: masks overlap")
        labels[where] = mask.label
        instances[where] = number
    arrays[f"{item.id}/labels"] = labels
    arrays[f"{item.id}/instances"] = instances
np.savez_compressed(out, **arrays)
dataset.export(reexport, fmt, save_media=False)
print(f"datumaro read {len(dataset)} items as {fmt}, {len(names)} labels; exported to {reexport}")
