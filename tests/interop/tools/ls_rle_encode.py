"""Run inside the Label Studio environment: encode masks with Label Studio's converter and
with a2lc's encoder (imported from the source tree given), in one process, and time both.

usage: python ls_rle_encode.py MASKS.npz A2LC_SRC OUT.json

MASKS.npz: ``H×W`` bool arrays. OUT.json: per mask, both encodings and whether they are
byte-identical; the seconds each encoder took over every mask (best of three runs).
"""

import json
import sys
import time

import numpy as np
from label_studio_sdk.converter.brush import mask2rle

masks_path, source, out = sys.argv[1:4]
sys.path.insert(0, source)
from a2lc.interop.rle import encode_mask  # noqa: E402

masks = np.load(masks_path)
names = sorted(masks.files)
arrays = [masks[name] for name in names]


def theirs(mask):
    return mask2rle(np.where(mask, 255, 0).astype(np.uint8))


def best_of_three(encode):
    times = []
    for _ in range(3):
        started = time.perf_counter()
        encoded = [encode(mask) for mask in arrays]
        times.append(time.perf_counter() - started)
    return min(times), encoded


ls_seconds, ls_rle = best_of_three(theirs)
a2lc_seconds, a2lc_rle = best_of_three(encode_mask)
result = {
    "masks": names,
    "identical": [
        list(map(int, a)) == list(map(int, b)) for a, b in zip(ls_rle, a2lc_rle, strict=True)
    ],
    "label_studio_seconds": ls_seconds,
    "a2lc_seconds": a2lc_seconds,
}
with open(out, "w") as handle:
    json.dump(result, handle)
print(
    f"{sum(result['identical'])}/{len(names)} identical; a2lc/Label Studio time "
    f"{a2lc_seconds / ls_seconds:.3f}"
)
