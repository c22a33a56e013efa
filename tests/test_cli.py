from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from a2lc.cli import main
from a2lc.data.synthetic import SyntheticPaths
from a2lc.workspace import Workspace
from a2lc.workspace.workspace import DB_NAME
from tests.fakes import write_gray


def init(synthetic: SyntheticPaths, ws: Path) -> int:
    return main(
        [
            "init",
            "-w",
            str(ws),
            "--data",
            str(synthetic.root),
            "--segments",
            str(synthetic.segments),
            "--labels",
            str(synthetic.pseudo),
        ]
    )


def test_init_score_correct_status(
    synthetic: SyntheticPaths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    assert init(synthetic, ws) == 0
    assert "created workspace" in capsys.readouterr().out
    for strategy in ("abc", "alc", "random"):
        assert (
            main(
                [
                    "score",
                    "-w",
                    str(ws),
                    "--probs",
                    str(synthetic.probs),
                    "--budget",
                    "5",
                    "--strategy",
                    strategy,
                ]
            )
            == 0
        )
        assert main(["correct", "-w", str(ws)]) == 0
    capsys.readouterr()
    assert main(["status", "-w", str(ws), "--json", "--data-miou"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [r["strategy"] for r in summary["rounds"]] == ["abc", "alc", "random"]
    assert all(r["answered"] == r["queried"] == 5 for r in summary["rounds"])
    assert summary["segments"]["manual"] == 15
    assert 0 < summary["data_miou"] <= 1
    assert main(["status", "-w", str(ws)]) == 0
    assert "round  status" in capsys.readouterr().out


def test_queried_segments_are_never_requeried(synthetic: SyntheticPaths, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    init(synthetic, ws)
    for _ in range(3):
        main(["score", "-w", str(ws), "--probs", str(synthetic.probs), "--budget", "10"])
        main(["correct", "-w", str(ws)])
    with Workspace.open(ws) as w:
        keys = [(q.image_id, q.segment_id) for r in (1, 2, 3) for q in w.queries(r)]
    assert len(keys) == len(set(keys)) == 30


def test_unknown_strategy_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "score",
            "-w",
            str(tmp_path),
            "--probs",
            str(tmp_path),
            "--budget",
            "1",
            "--strategy",
            "bald",
        ]
    )
    assert code == 2
    assert "invalid choice: 'bald'" in capsys.readouterr().err


def test_bad_dataset_exits_nonzero_with_every_problem(
    synthetic: SyntheticPaths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # One run reports every kind of problem: an unreadable image (the layout), a
    # wrong-size and a bad-class label (the ground truth), a missing initial map.
    labels = synthetic.root / "labels/train"
    names = sorted(p.name for p in labels.iterdir())
    images = sorted((synthetic.root / "images/train").iterdir())
    images[-1].write_bytes(b"not an image")
    write_gray(labels / names[0], np.zeros((10, 10)))
    write_gray(labels / names[1], np.full((48, 64), 200))
    segment_maps = sorted(synthetic.segments.iterdir())
    segment_maps[2].unlink()
    code = init(synthetic, tmp_path / "ws")
    err = capsys.readouterr().err
    assert code == 1
    assert "4 problem(s)" in err
    assert f"{images[-1].name}: unreadable image" in err
    assert f"{names[0]}: size 10×10 does not match" in err
    assert f"{names[1]}: 3072 pixels have invalid" in err
    assert f"{segment_maps[2].name}" in err
    assert not (tmp_path / "ws").exists()


def test_init_with_ground_truth_for_some_images(
    synthetic: SyntheticPaths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = synthetic.root / "labels/train"
    kept = sorted(p.name for p in labels.iterdir())[:2]
    for path in labels.iterdir():
        if path.name not in kept:
            path.unlink()
    assert init(synthetic, tmp_path / "ws") == 0
    out = capsys.readouterr().out
    with Workspace.open(tmp_path / "ws") as ws:
        total = len(ws.samples)
        assert ws.ground_truth_ids == [Path(k).stem for k in kept]
    assert f"ground truth: 2 of {total} images" in out
    with Workspace.open(tmp_path / "ws") as ws:
        # The person's own labels are the labels, pixel for pixel, and never queried.
        for image_id in ws.hand_labelled_ids:
            np.testing.assert_array_equal(ws.read_labels(image_id), ws.read_ground_truth(image_id))
            given = ws.manual_segments()[image_id]
            np.testing.assert_array_equal(given, ws.segment_table(image_id).ids)
        assert ws.measured_ids == []
    assert main(["status", "-w", str(tmp_path / "ws"), "--data-miou"]) == 0
    out = capsys.readouterr().out
    # Data mIoU on the images a person labelled would say nothing: it is not shown.
    assert "data mIoU  " not in out
    assert "no data mIoU: the only ground truth is on images a person labelled" in out
    assert "given (in the 2 images a person labelled" in out


def test_bad_input_leaves_existing_workspace_untouched(
    synthetic: SyntheticPaths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    init(synthetic, ws)
    assert init(synthetic, ws) == 1
    assert "already exists" in capsys.readouterr().err
    # A truncated probability map: nothing is recorded.
    victim = sorted(synthetic.probs.iterdir())[-1]
    victim.write_bytes(victim.read_bytes()[:100])
    assert main(["score", "-w", str(ws), "--probs", str(synthetic.probs), "--budget", "3"]) == 1
    assert "unreadable probability map" in capsys.readouterr().err
    np.save(victim, np.zeros((3, 48, 64), np.float32))
    assert main(["score", "-w", str(ws), "--probs", str(synthetic.probs), "--budget", "3"]) == 1
    assert "does not match C×H×W = (8, 48, 64)" in capsys.readouterr().err
    victim.unlink()
    assert main(["score", "-w", str(ws), "--probs", str(synthetic.probs), "--budget", "3"]) == 1
    assert "probability map is missing" in capsys.readouterr().err
    with Workspace.open(ws) as w:
        assert w.rounds() == []
        assert w.corrections() == []


def test_budget_larger_than_pool(
    synthetic: SyntheticPaths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    init(synthetic, ws)
    assert (
        main(["score", "-w", str(ws), "--probs", str(synthetic.probs), "--budget", "100000"]) == 1
    )
    assert "larger than the" in capsys.readouterr().err


def test_correct_without_open_round(
    synthetic: SyntheticPaths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    init(synthetic, ws)
    assert main(["correct", "-w", str(ws)]) == 1
    assert "no open round" in capsys.readouterr().err


def test_demo_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["demo", "--out", str(tmp_path), "--rounds", "2", "--budget", "10", "--images", "6"])
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith(f"demo: writing to {tmp_path}")  # said before any work
    assert "data mIoU" in out
    assert (tmp_path / "workspace" / DB_NAME).is_file()


def test_pseudo_label_run_export_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from a2lc.data import identity_lut, read_label_map
    from a2lc.data.synthetic import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "data", num_images=6, height=48, width=64, cell=16)
    ws = tmp_path / "ws"
    assert main(["init", "-w", str(ws), "--data", str(data.root)]) == 0
    assert (
        main(
            [
                "pseudo-label",
                "-w",
                str(ws),
                "--source",
                "gt-proxy",
                "--seed-images",
                "2",
                "--seed-epochs",
                "3",
                "--min-confidence",
                "0",
            ]
        )
        == 0
    )
    assert "pseudo-labels (gt-proxy)" in capsys.readouterr().out
    with Workspace.open(ws) as w:
        assert w.has_segments
        assert w.meta("initial_source") == "gt-proxy"
        assert '"seed_images": 2' in (w.meta("initial_parameters") or "")
    assert (
        main(
            [
                "run",
                "-w",
                str(ws),
                "--strategy",
                "alc",
                "--rounds",
                "1",
                "--budget",
                "5",
                "--epochs",
                "1",
                "--report",
                str(tmp_path / "r.html"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "round  queried  data mIoU" in out
    assert (tmp_path / "r.html").read_text().startswith("<!doctype html>")
    assert main(["export", "-w", str(ws), "--out", str(tmp_path / "export")]) == 0
    exported = sorted((tmp_path / "export").glob("*.png"))
    assert len(exported) == 6
    with Workspace.open(ws) as w:
        first = exported[0].stem
        np.testing.assert_array_equal(
            read_label_map(exported[0], lut=identity_lut(8)), w.read_labels(first)
        )
    assert main(["report", "-w", str(ws), "--out", str(tmp_path / "again.html")]) == 0


def test_bench_writes_results_and_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from a2lc.data.synthetic import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "data", num_images=6, height=48, width=64, cell=16)
    make_synthetic_dataset(
        tmp_path / "data", num_images=2, height=48, width=64, cell=16, split="val", seed=1
    )
    out = tmp_path / "bench"
    names = [c["name"] for c in json.loads((data.root / "classes.json").read_text())]
    target = tmp_path / "target.json"
    target.write_text(json.dumps({name: 60.0 for name in names}))
    code = main(
        [
            "bench",
            "--data",
            str(data.root),
            "--noise",
            "seed,detector-like",
            "--noise-target",
            str(target),
            "--rounds",
            "1",
            "--budget",
            "5",
            "--seeds",
            "1,2",
            "--strategies",
            "a2lc,random",
            "--seed-images",
            "2",
            "--epochs",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    runs = results["runs"]
    assert [(r["noise"], r["strategy"], r["seed"]) for r in runs] == [
        (noise, strategy, seed)
        for noise in ("seed", "detector-like")
        for seed in (1, 2)
        for strategy in ("a2lc", "random")
    ]
    first = runs[0]["rounds"]
    assert [r["budget_spent"] for r in first] == [0, 5]
    assert set(first[1]["seconds"]) >= {"train", "predict_and_score", "eval"}
    assert {n: set(s) for n, s in results["summary"].items()} == {
        "seed": {"a2lc", "random"},
        "detector-like": {"a2lc", "random"},
    }
    # Same regime and seed → same initial labels for every strategy: round 0 data mIoU
    # agrees; the two regimes start from different labels.
    initial = [r["rounds"][0]["data_miou"] for r in runs]
    assert initial[0] == initial[1]
    assert initial[4] == initial[5]
    assert initial[0] != initial[4]
    assert (out / "results.csv").read_text().count("\n") == 1 + 8 * 2
    for name in ("report.html", "data_miou_seed.png", "model_miou_detector-like.png"):
        assert (out / name).is_file()
    printed = capsys.readouterr().out
    assert "detector-like noise, data_miou" in printed
    assert "| a2lc |" in printed


def test_bench_starts_over_an_initial_workspace_killed_before_its_database(
    tmp_path: Path,
) -> None:
    from a2lc.bench import BenchConfig, run_benchmark
    from a2lc.data.synthetic import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "data", num_images=4, height=48, width=64, cell=16)
    make_synthetic_dataset(
        tmp_path / "data", num_images=2, height=48, width=64, cell=16, split="val", seed=1
    )
    out = tmp_path / "bench"
    # What a kill during the initial pseudo-labels can leave: maps but no database yet.
    stale = out / "runs" / "seed" / "seed1" / "initial"
    (stale / "segments").mkdir(parents=True)
    (stale / "segments" / "train_000.png").write_bytes(b"partial")
    config = BenchConfig(
        data=data.root,
        out=out,
        strategies=("random",),
        seeds=(1,),
        rounds=1,
        budget=3,
        seed_images=2,
        epochs=1,
    )
    results = run_benchmark(config, show_progress=False)
    assert [r["round"] for r in results["runs"][0]["rounds"]] == [0, 1]
    assert (stale / "a2lc.sqlite").is_file()


def test_run_options_presets_and_thresholds() -> None:
    from a2lc.cli import _parser, run_config_from_args
    from a2lc.correction.lcm import CITYSCAPES_THRESHOLDS, VOC_THRESHOLDS
    from a2lc.errors import A2LCError

    parse = _parser().parse_args
    config = run_config_from_args(parse(["run", "-w", "x", "--preset", "paper-cityscapes"]))
    assert (config.budget, config.rounds, config.lcm.thresholds) == (
        10_000,
        5,
        CITYSCAPES_THRESHOLDS,
    )
    config = run_config_from_args(
        parse(["run", "-w", "x", "--preset", "paper-voc", "--budget", "7"])
    )
    assert (config.budget, config.lcm.thresholds) == (7, VOC_THRESHOLDS)
    config = run_config_from_args(
        parse(["run", "-w", "x", "--thresholds", "0.9,0.95", "--fine-tune"])
    )
    assert config.lcm.thresholds == (0.9, 0.95)
    assert not config.model.frozen_encoder
    assert config.budget is None  # default: 4% of the pool, decided when the pool is known
    with pytest.raises(A2LCError, match="--thresholds must be numbers"):
        run_config_from_args(parse(["run", "-w", "x", "--thresholds", "high"]))


def test_cli_defaults_are_the_library_defaults() -> None:
    """The CLI repeats a few library defaults to keep its start-up free of their modules."""
    from a2lc.cli import _parser
    from a2lc.interop.label_studio import LOCAL_FILES_PREFIX
    from a2lc.pseudo_labels.grounded_sam import GroundedSamConfig
    from a2lc.workspace.annotation import DEFAULT_LEASE_SECONDS

    parser = _parser()
    assert parser.parse_args(["annotate", "-w", "w"]).lease_seconds == DEFAULT_LEASE_SECONDS
    queries = parser.parse_args(["export-queries", "-w", "w", "--out", "o"])
    assert queries.image_prefix == LOCAL_FILES_PREFIX
    sam = parser.parse_args(["pseudo-label", "--source", "grounded-sam"])
    config = GroundedSamConfig(detector=Path("d"), segmenter=Path("s"))
    assert (sam.box_threshold, sam.text_threshold, sam.box_batch, sam.device) == (
        config.box_threshold,
        config.text_threshold,
        config.box_batch,
        config.device,
    )


def test_automatic_changes_are_shown_with_their_precision_or_as_unchecked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from a2lc.cli import _print_metrics
    from a2lc.steps.quality import automatic_changes

    checked = {
        "checked_changed": 40.0,
        "checked_estimated_precision": 0.97,
        "checked_precision_lower": 0.91,
        "checked_true_precision": 0.95,
    }
    assert automatic_changes(checked) == ("40", "97.00 (≥ 91.00)", "95.00")
    assert automatic_changes({"checked_changed": 0.0}) == ("0", "no group proven", "–")
    assert automatic_changes({"lcm_changed": 12.0, "lcm_precision": 0.25}) == (
        "12",
        "unchecked",
        "25.00",
    )
    _print_metrics({1: {"segments_queried": 5, **checked}})
    out = capsys.readouterr().out
    assert "97.00 (≥ 91.00)" in out
    assert "unchecked" not in out
    _print_metrics({1: {"segments_queried": 5, "lcm_changed": 12.0}})
    out = capsys.readouterr().out
    assert "unchecked" in out
    assert "benchmark" in out


def test_the_default_strategy_never_runs_the_unchecked_lcm() -> None:
    from a2lc.cli import _parser, run_config_from_args
    from a2lc.rounds import RunConfig
    from a2lc.strategies import CORRECTORS, DEFAULT_STRATEGY, resolve_strategy

    assert RunConfig().strategy == DEFAULT_STRATEGY
    assert (
        run_config_from_args(_parser().parse_args(["run", "-w", "w"])).strategy == DEFAULT_STRATEGY
    )
    default = resolve_strategy(DEFAULT_STRATEGY)
    assert default.corrector == "none" or CORRECTORS.get(default.corrector).checked
    # The paper's method stays available, exactly as published.
    assert (resolve_strategy("a2lc").acquisition, resolve_strategy("a2lc").corrector) == (
        "abc",
        "lcm",
    )


def test_every_option_has_help_and_shows_its_default() -> None:
    import argparse

    from a2lc.cli import _parser

    parser = _parser()
    missing: list[str] = []

    def walk(p: argparse.ArgumentParser, where: str) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{where} {name}")
                continue
            if isinstance(action, argparse._HelpAction | argparse._VersionAction):
                continue
            text = p.formatter_class("a2lc")._get_help_string(action) % vars(action)  # type: ignore[call-arg, attr-defined]
            if not action.help:
                missing.append(f"{where}: {action.option_strings or action.dest} has no help")
            elif (
                action.option_strings
                and not action.required
                and action.default not in (None, argparse.SUPPRESS)
                and action.default is not False
                and action.default != []
                and "default" not in text.lower()
            ):
                missing.append(f"{where}: {action.option_strings} does not show its default")

    walk(parser, "a2lc")
    assert missing == []


def test_every_command_has_a_summary_and_an_example_that_parses() -> None:
    """Issue #25: each command lists a one-line summary and an example that is valid."""
    import shlex

    from a2lc.cli import ALL, build_parser, command_parsers, commands

    parser = build_parser(ALL)
    listed = commands()
    parsers = command_parsers(parser)
    assert list(parsers) == list(listed)
    for name, (summary, example) in listed.items():
        assert summary, name
        assert "\n" not in summary, name
        assert not summary.endswith("."), name
        assert "example:" in parsers[name].format_help(), name
        for line in example.splitlines():
            words = shlex.split(line, comments=True)
            words = words[words.index("a2lc") + 1 :]  # `a2lc ...` or `torchrun ... -m a2lc ...`
            assert words[0] == name, line
            parser.parse_args(words)  # exits (fails the test) if the example is not valid


def test_help_builds_no_command_options_and_imports_no_numpy() -> None:
    """Issue #25: `a2lc --help` lists the commands without importing their registries."""
    code = (
        "import sys, contextlib, io\n"
        "from a2lc.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    assert main(['--help']) == 0\n"
        "assert 'demo' in out.getvalue() and 'ls-backend' in out.getvalue()\n"
        "print(sorted(m for m in ('numpy', 'torch', 'a2lc.workspace') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
