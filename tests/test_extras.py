"""A core-only install: every command that needs an extra names it, in one line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from a2lc.data.readers import load_dataset
from a2lc.data.synthetic import SyntheticPaths
from a2lc.errors import EXTRA_OF_MODULE, missing_extra
from a2lc.workspace import Workspace

# Runs the real CLI with every optional dependency made unimportable, as on a
# machine where only `pip install a2lc` was run.
_CORE_ONLY = textwrap.dedent(
    """
    import importlib.abc, sys
    BLOCKED = set(sys.argv[1].split(","))
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    sys.meta_path.insert(0, Blocker())
    from a2lc.cli import main
    sys.exit(main(sys.argv[2:]))
    """
)


def workspace(tmp_path: Path, synthetic: SyntheticPaths) -> Path:
    dataset = load_dataset(synthetic.root, split="train")
    path = tmp_path / "ws"
    Workspace.create(
        path, dataset, segments_dir=synthetic.segments, labels_dir=synthetic.pseudo
    ).close()
    return path


def core_only(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _CORE_ONLY, ",".join(EXTRA_OF_MODULE), *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ("run", "-w", "{ws}"),
        ("pseudo-label", "-w", "{ws}"),
        ("demo", "--out", "{ws}"),
        ("bench", "--data", "{ws}", "--out", "{ws}/out"),
        ("report", "-w", "{ws}", "--out", "{ws}/report.html"),
    ],
    ids=lambda argv: argv[0],
)
def test_commands_name_the_missing_extra(
    tmp_path: Path, synthetic: SyntheticPaths, argv: tuple[str, ...]
) -> None:
    ws = workspace(tmp_path, synthetic)
    result = core_only(*(a.format(ws=ws) for a in argv))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    assert 'pip install "a2lc[train]"' in line  # each of these needs torch or matplotlib


def test_commands_that_need_no_extra_still_work(tmp_path: Path, synthetic: SyntheticPaths) -> None:
    ws = workspace(tmp_path, synthetic)
    result = core_only("status", "-w", str(ws))
    assert result.returncode == 0, result.stderr
    assert "workspace" in result.stdout


def test_an_unknown_missing_module_is_a_bug_not_a_setup_step() -> None:
    assert missing_extra(ModuleNotFoundError("x", name="not_an_extra")) is None
    message = str(missing_extra(ModuleNotFoundError("x", name="starlette.routing")))
    assert 'pip install "a2lc[web]"' in message
