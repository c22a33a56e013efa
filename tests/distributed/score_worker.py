"""One rank of a sharded scoring pass (started by torchrun in test_sharded_scoring.py).

usage: score_worker.py WORKSPACE PROBS_DIR STRATEGY BUDGET OUT_DIR
Every rank writes OUT_DIR/rank<R>.json with the queries it selected.
"""

import json
import sys
from pathlib import Path

from a2lc.distributed import init_from_environment, shutdown
from a2lc.steps.scoring import ScoreConfig, probability_folder_loader, select_queries
from a2lc.workspace import Workspace

workspace, probs, strategy, budget, out = sys.argv[1:6]
shard = init_from_environment()
if shard is None or shard.world != 2:
    raise SystemExit("start with torchrun --nproc-per-node 2")
with Workspace.open(workspace, read_only=True) as ws:
    selection = select_queries(
        ws,
        probability_folder_loader(ws, Path(probs)),
        config=ScoreConfig(strategy=strategy, budget=int(budget)),
        show_progress=False,
        keep_features=True,
        shard=shard,
    )
features = sorted((f[0], f[1].tolist(), f[2].round(6).tolist()) for f in selection.features or [])
Path(out, f"rank{shard.rank}.json").write_text(
    json.dumps({"queries": selection.queries, "features": features})
)
shutdown(shard)
