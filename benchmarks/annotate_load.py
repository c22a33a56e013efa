"""Is the annotation app's request cost flat after many hostile requests? (issue #24)

In process (Starlette's test client, no network), on a synthetic workspace with an
open round: the median time of an honest annotator's lease request (300 requests),
then 10,000 hostile requests (half: sessions minted by the app, each claiming a new
valid name; half: made-up sessions and 15 KB names, refused), then the honest median
again. Both medians are measured in this one run, so their ratio is what counts.

    python benchmarks/annotate_load.py --work /tmp/annotate-load
    # writes benchmarks/results/annotate_load.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

from starlette.testclient import TestClient

from a2lc._atomic import atomic_write_text
from a2lc.cli import main as cli
from a2lc.data.synthetic import make_synthetic_dataset
from a2lc.web.access import workspace_token
from a2lc.web.app import create_app

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "annotate_load.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--hostile", type=int, default=10_000)
    args = parser.parse_args(argv)
    if args.work.exists():
        shutil.rmtree(args.work)
    data = make_synthetic_dataset(args.work / "data")
    ws = str(args.work / "ws")
    init = ["init", "-w", ws, "--data", str(data.root)]
    assert cli([*init, "--segments", str(data.segments), "--labels", str(data.pseudo)]) == 0
    assert cli(["score", "-w", ws, "--probs", str(data.probs), "--budget", "40"]) == 0
    app = create_app(ws)
    client = TestClient(app)
    token = workspace_token(app.state.workspace)
    header = {"X-A2LC-Token": token}

    def mint() -> str:
        return str(client.post("/api/session", json={}, headers=header).json()["session"])

    honest = {**header, "X-A2LC-Session": mint()}

    def honest_median() -> float:
        times = []
        for _ in range(300):
            started = time.perf_counter()
            reply = client.post("/api/lease", json={"annotator": "honest"}, headers=honest)
            times.append(time.perf_counter() - started)
            assert reply.status_code == 200, reply.text
        return statistics.median(times)

    before = honest_median()
    statuses: dict[int, int] = {}
    for n in range(args.hostile):
        if n % 2 == 0:
            body = {"annotator": f"sock puppet {n}"}
            extra = {"X-A2LC-Session": mint()}
        else:
            body = {"annotator": "x" * 15_000}
            extra = {"X-A2LC-Session": f"made-up-{n}".ljust(32, "0")}
        status = client.post("/api/lease", json=body, headers={**header, **extra}).status_code
        statuses[status] = statuses.get(status, 0) + 1
    after = honest_median()
    rows = app.state.workspace.connection.execute(
        "SELECT COUNT(*) FROM annotator_sessions"
    ).fetchone()[0]
    result = {
        "hostile_requests": args.hostile,
        "hostile_status_counts": {str(k): v for k, v in sorted(statuses.items())},
        "session_rows_after": rows,
        "honest_median_ms_before": round(1000 * before, 3),
        "honest_median_ms_after": round(1000 * after, 3),
        "after_over_before": round(after / before, 3),
        "database_bytes": (Path(ws) / "a2lc.sqlite").stat().st_size,
    }
    atomic_write_text(OUT, json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
