"""Start real gloo process groups with torchrun for the distributed tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.web.test_e2e import free_port

REPO = Path(__file__).parents[2]


def torchrun(
    *argv: str, processes: int = 2, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``torchrun --nproc-per-node PROCESSES ARGV`` (real gloo processes), one thread each.

    ``check``: fail the test, with the output, unless every process exits with 0.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes)]
    result = subprocess.run(
        [*command, "--master-port", str(free_port()), *argv],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result
