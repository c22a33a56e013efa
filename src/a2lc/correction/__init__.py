"""Corrections: the simulated annotator (oracle); manual corrections and LCM build on it."""

from a2lc.correction.oracle import (
    ACCURACY_THRESHOLD,
    OracleAnswer,
    count_transitions,
    majority_labels,
    merge_transitions,
    simulate_annotator,
)

__all__ = [
    "ACCURACY_THRESHOLD",
    "OracleAnswer",
    "count_transitions",
    "majority_labels",
    "merge_transitions",
    "simulate_annotator",
]
