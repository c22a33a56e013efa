"""The reference implementation's outputs, reproduced: class weights, ABC scores,
top-B selection without re-query, and the simulated annotator, for every round.

Runs on every folder under ``shared/golden/`` and on those in ``$A2LC_GOLDEN_DIRS``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from a2lc.acquisition import abc, adaptive_class_weight, class_pixel_counts, select_top
from a2lc.cli import main
from a2lc.correction import count_transitions, merge_transitions, simulate_annotator
from a2lc.data import identity_lut, read_label_map
from a2lc.workspace import Workspace
from tests.fakes import write_classes, write_gray
from tests.golden import GoldenCase, golden_dirs, load_case

DIRS = golden_dirs()
RTOL = 1e-5


def test_golden_folders_exist() -> None:
    assert DIRS, "no golden folders found under shared/golden/"


def _as_sets(queried: dict[str, list[int]]) -> dict[str, set[int]]:
    return {k: set(v) for k, v in queried.items() if v}


def _transitions_json(table: dict[int, dict[int, int]]) -> dict[str, dict[str, int]]:
    return {str(b): {str(a): n for a, n in row.items()} for b, row in table.items()}


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("folder", DIRS, ids=[p.name for p in DIRS])
def test_pure_functions_reproduce_reference(folder: Path, backend: str) -> None:
    case = load_case(folder)
    budget = int(case.expected["budget_per_round"])
    labels = {i: case.array(i, "noisy") for i in case.images}
    segments = {i: case.array(i, "objects").astype(np.int32) for i in case.images}
    manual: dict[str, list[int]] = {i: [] for i in case.images}
    for r, expected in enumerate(case.expected["rounds"]):
        counts = sum(
            class_pixel_counts(
                labels[i],
                segments[i],
                num_classes=case.num_classes,
                exclude=np.array(manual[i], dtype=np.int64),
            )
            for i in case.images
        )
        weight = adaptive_class_weight(np.asarray(counts))
        want_weight = [expected["class_weight"][str(c)] for c in range(case.num_classes)]
        np.testing.assert_allclose(weight, want_weight, rtol=RTOL, atol=1e-12)

        keys, scores, eligible = [], [], []
        for i in case.images:
            result = abc(
                case.array(i, "soft"), labels[i], segments[i], class_weight=weight, backend=backend
            )  # type: ignore[arg-type]
            for sid, score in zip(result.ids, result.scores, strict=True):
                keys.append((i, int(sid)))
                scores.append(score)
                eligible.append(int(sid) not in manual[i])
        got = {f"{i}/{s}": v for (i, s), v in zip(keys, scores, strict=True)}
        assert set(got) == set(expected["scores"])
        names = sorted(got)
        np.testing.assert_allclose(
            [got[k] for k in names], [expected["scores"][k] for k in names], rtol=RTOL, atol=1e-12
        )

        picked = select_top(np.array(scores), budget=budget, eligible=np.array(eligible))
        queried: dict[str, list[int]] = {}
        for k in picked:
            queried.setdefault(keys[k][0], []).append(keys[k][1])
        assert _as_sets(queried) == _as_sets(expected["queried"])

        tables = []
        for i, ids in queried.items():
            answer = simulate_annotator(labels[i], segments[i], case.array(i, "gt"), ids)
            labels[i] = answer.labels
            manual[i].extend(ids)
            tables.append(count_transitions(answer.before.tolist(), answer.after.tolist()))
        assert _transitions_json(merge_transitions(tables)) == expected["transitions"]
        for i in case.images:
            np.testing.assert_array_equal(
                labels[i], case.array(i, f"round{r + 1}.labels"), err_msg=i
            )


def _write_case_as_dataset(case: GoldenCase, root: Path) -> None:
    write_classes(root / "data", [f"c{c}" for c in range(case.num_classes)])
    for i in case.images:
        gt = case.array(i, "gt")
        write_gray(root / "data/images/train" / f"{i}.png", gt)
        write_gray(root / "data/labels/train" / f"{i}.png", gt)
        write_gray(root / "segments" / f"{i}.png", case.array(i, "objects"))
        write_gray(root / "noisy" / f"{i}.png", case.array(i, "noisy"))
        (root / "probs").mkdir(exist_ok=True)
        np.save(root / "probs" / f"{i}.npy", case.array(i, "soft"))


@pytest.mark.parametrize("folder", DIRS, ids=[p.name for p in DIRS])
def test_cli_and_workspace_reproduce_reference(folder: Path, tmp_path: Path) -> None:
    """The same rounds through `a2lc init / score / correct` and the workspace database."""
    case = load_case(folder)
    _write_case_as_dataset(case, tmp_path)
    ws_dir = tmp_path / "ws"
    assert (
        main(
            [
                "init",
                "-w",
                str(ws_dir),
                "--data",
                str(tmp_path / "data"),
                "--segments",
                str(tmp_path / "segments"),
                "--labels",
                str(tmp_path / "noisy"),
            ]
        )
        == 0
    )
    budget = int(case.expected["budget_per_round"])
    for r, expected in enumerate(case.expected["rounds"], start=1):
        assert (
            main(
                [
                    "score",
                    "-w",
                    str(ws_dir),
                    "--probs",
                    str(tmp_path / "probs"),
                    "--budget",
                    str(budget),
                    "--strategy",
                    "abc",
                ]
            )
            == 0
        )
        with Workspace.open(ws_dir) as ws:
            info = ws.rounds()[-1]
            assert info.round == r
            want_weight = [expected["class_weight"][str(c)] for c in range(case.num_classes)]
            np.testing.assert_allclose(
                info.config["class_weight"], want_weight, rtol=RTOL, atol=1e-12
            )
            queries = ws.queries(r)
            queried: dict[str, list[int]] = {}
            for q in queries:
                queried.setdefault(q.image_id, []).append(q.segment_id)
                assert q.score == pytest.approx(
                    expected["scores"][f"{q.image_id}/{q.segment_id}"], rel=RTOL
                )
            assert _as_sets(queried) == _as_sets(expected["queried"])
        assert main(["correct", "-w", str(ws_dir), "--oracle", "gt"]) == 0
        with Workspace.open(ws_dir) as ws:
            corrections = ws.corrections(r)
            table = count_transitions(
                [c["before"] for c in corrections], [c["after"] for c in corrections]
            )
            assert _transitions_json(table) == expected["transitions"]
            for i in case.images:
                want = case.array(i, f"round{r}.labels")
                np.testing.assert_array_equal(ws.read_labels(i), want, err_msg=i)
                snapshot = ws.path / f"labels/round_{r:03d}/{i}.png"
                if snapshot.exists():
                    np.testing.assert_array_equal(
                        read_label_map(snapshot, lut=identity_lut(case.num_classes)), want
                    )


def test_extra_golden_folders_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("A2LC_GOLDEN_DIRS", raising=False)
    shared = golden_dirs()
    monkeypatch.setenv("A2LC_GOLDEN_DIRS", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    assert golden_dirs() == [*shared, tmp_path / "a", tmp_path / "b"]
