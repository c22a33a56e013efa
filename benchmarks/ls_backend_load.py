"""Does ``/health`` answer while the heaviest allowed ``/predict`` runs? (issue #23)

Builds a synthetic workspace of CamVid-sized images (720×960) with an open round,
starts ``a2lc ls-backend`` as a user does (its own process, uvicorn), sends one
``/predict`` with the most tasks allowed (every one a query, so every one is
worked), and meanwhile asks ``/health`` every 0.2 s. Also replays the attacks
of the issue against the running server and counts what was recorded.

    python benchmarks/ls_backend_load.py --work /tmp/ls-load
    # writes benchmarks/results/ls_backend_load.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from a2lc._atomic import atomic_write_text
from a2lc.cli import main as cli
from a2lc.data.synthetic import make_synthetic_dataset
from a2lc.interop.ls_backend import MAX_PREDICT_TASKS
from a2lc.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "ls_backend_load.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(
    url: str, body: bytes, headers: dict[str, str], timeout: float = 300
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.work.exists():
        shutil.rmtree(args.work)
    data = make_synthetic_dataset(args.work / "data", num_images=8, height=720, width=960, cell=48)
    ws_path = args.work / "ws"
    init = ["init", "-w", str(ws_path), "--data", str(data.root)]
    assert cli([*init, "--segments", str(data.segments), "--labels", str(data.pseudo)]) == 0
    assert cli(["score", "-w", str(ws_path), "--probs", str(data.probs), "--budget", "40"]) == 0
    with Workspace.open(ws_path, read_only=True) as ws:
        queries = ws.queries(1)
    tasks = [
        {"id": n, "data": {"image_id": q.image_id, "segment_id": q.segment_id}}
        for n, q in enumerate(queries * (MAX_PREDICT_TASKS // len(queries) + 1))
    ][:MAX_PREDICT_TASKS]
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "a2lc", "ls-backend", "-w", str(ws_path), "--port", str(port)],
        env={**os.environ, "A2LC_THREADS": "1"},
    )
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/health", timeout=1).read()
                break
            except OSError:
                time.sleep(0.2)
        json_type = {"Content-Type": "application/json"}
        latencies: list[float] = []
        done = threading.Event()
        predict: dict[str, Any] = {}

        def heavy() -> None:
            started = time.perf_counter()
            status, _ = _post(base + "/predict", json.dumps({"tasks": tasks}).encode(), json_type)
            predict.update(status=status, seconds=time.perf_counter() - started)
            done.set()

        thread = threading.Thread(target=heavy)
        thread.start()
        time.sleep(0.1)
        while not done.is_set():
            started = time.perf_counter()
            urllib.request.urlopen(base + "/health", timeout=30).read()
            latencies.append(time.perf_counter() - started)
            time.sleep(0.2)
        thread.join()
        # The attacks, against the running server.
        region = {"image_id": queries[0].image_id, "segment_id": queries[0].segment_id}
        answer = json.dumps(
            {
                "action": "ANNOTATION_CREATED",
                "task": {"id": 1, "data": region},
                "annotation": {"id": 1, "result": [], "completed_by": {"email": "x@y"}},
            }
        ).encode()
        attacks = {
            "text/plain from evil.example": (
                "/webhook",
                answer,
                {"Content-Type": "text/plain", "Origin": "http://evil.example"},
            ),
            "form with Origin null": (
                "/webhook",
                answer,
                {"Content-Type": "application/x-www-form-urlencoded", "Origin": "null"},
            ),
            "JSON from evil.example": (
                "/webhook",
                answer,
                {**json_type, "Origin": "http://evil.example"},
            ),
            "segment_id [1]": (
                "/predict",
                json.dumps(
                    {"tasks": [{"data": {"image_id": queries[0].image_id, "segment_id": [1]}}]}
                ).encode(),
                json_type,
            ),
            "image_id object": (
                "/predict",
                json.dumps({"tasks": [{"data": {"image_id": {"a": 1}, "segment_id": 1}}]}).encode(),
                json_type,
            ),
            "150,000 tiny tasks": (
                "/predict",
                json.dumps({"tasks": [{}] * 150_000}).encode(),
                json_type,
            ),
        }
        refused = {}
        for name, (path, body, headers) in attacks.items():
            status, _ = _post(base + path, body, headers)
            refused[name] = status
        alive = urllib.request.urlopen(base + "/health", timeout=5).status == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
    with Workspace.open(ws_path, read_only=True) as ws:
        recorded = len([c for c in ws.corrections(1) if c["source"] == "manual"])
    result = {
        "image_size": [720, 960],
        "predict_tasks": len(tasks),
        "predict_status": predict["status"],
        "predict_seconds": round(predict["seconds"], 2),
        "health_requests_during_predict": len(latencies),
        "health_max_seconds": round(max(latencies, default=float("nan")), 3),
        "health_median_seconds": round(sorted(latencies)[len(latencies) // 2], 3)
        if latencies
        else None,
        "attack_status": refused,
        "answers_recorded_by_attacks": recorded,
        "server_alive_after_attacks": alive,
    }
    atomic_write_text(OUT, json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
