"""Run inside the Label Studio environment: decode an a2lc task file's brushes with Label
Studio's own converter, and encode masks with it for a2lc to decode.

usage: python ls_rle_check.py TASKS.json OUT.npz

OUT.npz: ``decoded/<n>`` (H×W bool, task n's brush as Label Studio reads it) and
``encoded/<n>`` (the RLE Label Studio writes for that mask).
"""

import json
import sys

import numpy as np
from label_studio_sdk.converter.brush import decode_rle, encode_rle

tasks_path, out = sys.argv[1:3]
with open(tasks_path) as handle:
    tasks = json.load(handle)
arrays = {}
for n, task in enumerate(tasks):
    region = task["predictions"][0]["result"][0]
    height, width = region["original_height"], region["original_width"]
    pixels = decode_rle(region["value"]["rle"]).reshape(height, width, 4)
    mask = pixels[..., 3] > 0
    arrays[f"decoded/{n}"] = mask
    rgba = np.zeros((height, width, 4), dtype=np.uint8)
    rgba[mask] = 255
    arrays[f"encoded/{n}"] = np.asarray(encode_rle(rgba.ravel()), dtype=np.int64)
np.savez_compressed(out, **arrays)
print(f"Label Studio's converter decoded and encoded {len(tasks)} brushes")
