"""Datasets, samples, and segment / label maps."""

from a2lc.data.maps import (
    read_label_map,
    read_segment_map,
    write_label_map,
    write_segment_map,
)
from a2lc.data.readers import FORMATS, load_dataset, read_ground_truth, validate_dataset
from a2lc.data.sample import IGNORE_INDEX, ClassInfo, Dataset, Sample, identity_lut

__all__ = [
    "FORMATS",
    "IGNORE_INDEX",
    "ClassInfo",
    "Dataset",
    "Sample",
    "identity_lut",
    "load_dataset",
    "read_ground_truth",
    "read_label_map",
    "read_segment_map",
    "validate_dataset",
    "write_label_map",
    "write_segment_map",
]
