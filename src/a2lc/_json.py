"""Reading a user's JSON file with an error that names it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from a2lc.errors import DataError, Problem


def read_json(path: Path | str) -> Any:
    """The parsed content of ``path``; :class:`DataError` if it is missing or not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError(Problem(path, "no such file")) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(Problem(path, f"not a readable JSON file ({exc})")) from None
    except RecursionError:
        raise DataError(Problem(path, "not a readable JSON file (nested too deeply)")) from None
