"""The benchmark harness: strategies × seeds × rounds on one dataset, with a report."""

from a2lc.bench.harness import BenchConfig, run_benchmark, summarise

__all__ = ["BenchConfig", "run_benchmark", "summarise"]
