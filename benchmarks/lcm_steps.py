"""What one step of the LCM network costs, against what its arithmetic costs.

The reference trains LCM's MLP (C→256→128→64→C) for 100 epochs of batch 8 on
the round's queries: thousands of steps of about 2 MFLOP each, so per-step
overhead, not arithmetic, sets the price. In one process, one torch thread, on
``--queries`` random queries:

- ``autograd``: ``loss.backward()`` and the flat-buffer Adam (a2lc before it
  computed gradients itself);
- ``a2lc``: :func:`a2lc.correction.lcm.fit_and_predict` (the same bits, see its
  tests);
- the floor: the step's matrix products alone (forward and both backward
  products of the four layers) plus one Adam update, timed the same way.

    python benchmarks/lcm_steps.py --repeats 3 --out benchmarks/results/lcm_steps.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=11)
    parser.add_argument("--queries", type=int, default=867, help="CamVid's 4%% budget")
    parser.add_argument("--epochs", type=int, default=100, help="the reference's")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="write the timings here (JSON)")
    args = parser.parse_args(argv)

    import torch
    import torch.nn.functional as F

    from a2lc.correction.lcm import LCMConfig, class_balanced_weights, fit_and_predict
    from a2lc.correction.lcm_net import FlatAdam, LCMNet
    from a2lc.runtime import torch_threads

    classes, queries = args.classes, args.queries
    rng = np.random.default_rng(0)
    features = rng.dirichlet(np.ones(classes) * 0.3, size=queries).astype(np.float32)
    targets = rng.integers(0, classes, size=queries)
    config = LCMConfig(epochs=args.epochs)
    batch = config.batch_size
    steps = args.epochs * -(-queries // batch)

    def autograd() -> None:
        torch.manual_seed(config.seed)
        net = LCMNet(classes, hidden=config.hidden)
        optimizer = FlatAdam(net, lr=config.lr)
        x = torch.from_numpy(features)
        y = torch.from_numpy(targets.astype(np.int64))
        weight = torch.from_numpy(class_balanced_weights(targets, classes))
        generator = torch.Generator().manual_seed(config.seed)
        for _ in range(config.epochs):
            order = torch.randperm(queries, generator=generator)
            xe, ye = x[order], y[order]
            for start in range(0, queries, batch):
                out = net(xe[start : start + batch])
                loss = F.cross_entropy(out, ye[start : start + batch], weight=weight)
                optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()

    def a2lc() -> None:
        fit_and_predict(features, targets, features, num_classes=classes, config=config)

    net = LCMNet(classes, hidden=config.hidden)
    optimizer = FlatAdam(net, lr=config.lr)
    layers = [m for m in net.mlp if isinstance(m, torch.nn.Linear)]
    inputs = [torch.rand(batch, layer.in_features) for layer in layers]
    grads = [torch.rand(batch, layer.out_features) for layer in layers]

    def floor() -> None:
        with torch.no_grad():
            for _ in range(steps):
                for layer, x, g in zip(layers, inputs, grads, strict=True):
                    torch.addmm(layer.bias, x, layer.weight.t())
                    g.t().mm(x)
                    g.mm(layer.weight)
                optimizer.step()

    seconds: dict[str, list[float]] = {"autograd": [], "a2lc": [], "floor": []}
    with torch_threads(1):
        for _ in range(args.repeats):  # interleaved, so that load affects all alike
            for name, work in (("autograd", autograd), ("a2lc", a2lc), ("floor", floor)):
                started = time.perf_counter()
                work()
                seconds[name].append(time.perf_counter() - started)
    best = {name: min(values) for name, values in seconds.items()}
    print(f"\n{steps:,} steps of batch {batch}, {queries} queries, {classes} classes, 1 thread\n")
    print("| | s (best) | s (median) | µs / step | × floor |")
    print("|---|---:|---:|---:|---:|")
    for name, values in seconds.items():
        print(
            f"| {name} | {best[name]:.2f} | {statistics.median(values):.2f} | "
            f"{1e6 * best[name] / steps:.0f} | {best[name] / best['floor']:.2f} |"
        )
    if args.out:
        payload = {"steps": steps, "queries": queries, "classes": classes, "seconds": seconds}
        Path(args.out).write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
