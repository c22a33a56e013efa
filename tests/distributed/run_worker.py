"""One rank of ``a2lc run`` under torchrun, watched (started by test_distributed_run.py).

usage: run_worker.py AUDIT_DIR KILL -- <a2lc arguments>

Runs the real CLI (``a2lc.cli.main``). An audit hook records every file this rank
opens for writing and every SQLite database it connects to; they go to
AUDIT_DIR/rank<R>.json when the rank exits normally. KILL is ``RANK:ROUND:STEP``
(or ``-``): that rank SIGKILLs itself when the loop reports that step.
"""

import json
import os
import signal
import sys
from pathlib import Path

import a2lc.rounds
from a2lc.cli import main

audit_dir, kill = Path(sys.argv[1]), sys.argv[2]
arguments = sys.argv[sys.argv.index("--") + 1 :]
rank = int(os.environ["RANK"])
writes: list[str] = []
databases: list[str] = []


def audit(event: str, args: tuple[object, ...]) -> None:
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        mode, flags = args[1], args[2]
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        )
        if writing:
            writes.append(os.fsdecode(args[0]))
    elif event == "sqlite3.connect":
        databases.append(str(args[0]))


sys.addaudithook(audit)

if kill != "-":
    kill_rank, kill_round, kill_step = kill.split(":")
    original = a2lc.rounds.run_rounds

    def run_rounds(*args, **kwargs):  # type: ignore[no-untyped-def]
        def on_step(round_index: int, name: str) -> None:
            if rank == int(kill_rank) and (round_index, name) == (int(kill_round), kill_step):
                os.kill(os.getpid(), signal.SIGKILL)

        return original(*args, on_step=on_step, **kwargs)

    a2lc.rounds.run_rounds = run_rounds  # type: ignore[assignment]

code = main(arguments)
audit_dir.mkdir(parents=True, exist_ok=True)
(audit_dir / f"rank{rank}.json").write_text(json.dumps({"writes": writes, "databases": databases}))
sys.exit(code)
