"""The README's own-data commands run as printed, on a dataset with ground truth for a few images."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from a2lc.cli import main
from a2lc.data.synthetic import make_synthetic_dataset

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands() -> list[list[str]]:
    """The ``a2lc`` commands of the README's first code block under "Using it on your data"."""
    text = README.read_text()
    section = text[text.index("## Using it on your data") :]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    lines = block.group(1).splitlines()
    return [shlex.split(line, comments=True) for line in lines if line.startswith("a2lc ")]


def test_the_own_data_commands_run_as_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_synthetic_dataset(tmp_path / "data", num_images=8, height=48, width=64, cell=16)
    for path in sorted((data.root / "labels/train").iterdir())[3:]:
        path.unlink()  # a person labelled 3 of the 8 images
    commands = readme_commands()
    inits = [i for i, c in enumerate(commands) if c[1] == "init"]
    assert len(inits) == 2  # with your labels, or with pseudo-labels a2lc makes
    rest = commands[inits[1] + 1 :]
    flows = {"labels": [commands[inits[0]], *rest[1:]], "pseudo": commands[inits[1] :]}
    assert flows["pseudo"][1][1] == "pseudo-label"
    for name, flow in flows.items():
        work = tmp_path / name
        for command in flow:
            args = []
            for word in command[1:]:
                if word in ("[--segments", "seg/]"):
                    continue  # optional
                word = word.replace("/data/mine", str(data.root))
                word = {"pseudo/": str(data.pseudo), "corrected/": str(work / "corrected")}.get(
                    word, word
                )
                if word == "work" or word.startswith("work/"):
                    word = str(work) + word[len("work") :]
                args.append(word)
            code = main(args)
            captured = capsys.readouterr()
            assert code == 0, (name, args, captured.err[-2000:])
        assert (work / "report.html").is_file()
        assert len(list((work / "corrected").glob("*.png"))) == 8
