"""Run where pycocotools is installed (the datumaro environment): check an a2lc COCO
panoptic export's areas and boxes with pycocotools' own mask functions.

usage: python coco_check.py PANOPTIC.json PNG_FOLDER
"""

import json
import sys

import numpy as np
from PIL import Image
from pycocotools import mask as coco_mask

document_path, folder = sys.argv[1:3]
with open(document_path) as handle:
    document = json.load(handle)
checked = 0
for annotation in document["annotations"]:
    with Image.open(f"{folder}/{annotation['file_name']}") as image:
        rgb = np.asarray(image.convert("RGB")).astype(np.int64)
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    for info in annotation["segments_info"]:
        rle = coco_mask.encode(np.asfortranarray((ids == info["id"]).astype(np.uint8)))
        area, box = int(coco_mask.area(rle)), [int(v) for v in coco_mask.toBbox(rle)]
        if area != info["area"] or box != info["bbox"]:
            raise SystemExit(
                f"{annotation['file_name']} segment {info['id']}: area {info['area']} bbox "
                f"{info['bbox']}, pycocotools says {area} {box}"
            )
        checked += 1
print(f"pycocotools agrees on the area and bbox of {checked} segments")
