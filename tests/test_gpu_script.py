"""benchmarks/gpu.py keeps working: its tiny mode runs every part on the CPU."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


def test_the_gpu_script_runs_every_part_in_tiny_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from a2lc.data.synthetic import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "data", num_images=8, height=48, width=64, cell=16)
    make_synthetic_dataset(
        tmp_path / "data", num_images=2, height=48, width=64, cell=16, split="val", seed=1
    )
    spec = importlib.util.spec_from_file_location("gpu_script", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look themselves up
    spec.loader.exec_module(module)
    out = tmp_path / "gpu.json"
    assert module.main(["--data", str(data.root), "--tiny", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["tiny"] is True
    assert [loop["fine_tune"] for loop in results["loop"]] == [False, True]
    for loop in [*results["loop"], results["loop_cpu"]]:
        assert {"r0/train", "r0/eval", "r1/queries", "r1/train"} <= set(loop["seconds_per_step"])
        assert len(loop["data_miou"]) == loop["rounds"] + 1
        assert loop["model_miou"][0] is not None  # the val split was evaluated
    assert results["loop_cpu"]["device"] == "cpu"
    assert results["round_speedup_vs_cpu"]["round1"] > 0
    paper = results["paper_model"]
    assert paper["train_iterations_per_s"] > 0
    assert paper["predict_images_per_s"] > 0
    assert results["sweep"]["seconds_per_image"] > 0
    city = results["cityscapes_round"]
    assert city["paper_schedule_minutes"] > 0
    assert city["a2lc_default_minutes"] > 0
    printed = capsys.readouterr().out
    assert "| Cityscapes round, a2lc default |" in printed
