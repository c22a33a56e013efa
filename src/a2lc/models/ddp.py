"""What data-parallel training (torch.distributed) needs beyond DistributedDataParallel.

Each rank trains on its part of every global batch. For the result to be that of
one process training on the whole batch, two things must see the whole batch:
batch-norm statistics (:class:`GlobalBatchNorm2d`; torch's ``SyncBatchNorm``
refuses CPU tensors, and gloo on CPU is what this project tests with) and the
loss's normaliser (the number of labelled pixels over all ranks, see
:func:`a2lc.models.training.train`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) whose backward all-reduces the gradient: each rank's input
    feeds every rank's output, so its gradient is the sum of theirs."""

    @staticmethod
    def forward(ctx: object, tensor: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        total = grad.clone()
        dist.all_reduce(total)
        return total


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training statistics cover every rank's batch.

    Per channel, the sums of ``x`` and ``x²`` and the pixel count are summed over
    ranks with a differentiable all-reduce (its backward all-reduces the gradients),
    so forward and backward are those of one batch-norm over the global batch. Works
    on any backend (gloo on CPU, NCCL on GPU); a rank may hold an empty batch.
    In eval mode, or without a process group, it is plain ``BatchNorm2d``.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        if not self.training or not (dist.is_available() and dist.is_initialized()):
            return super().forward(input)
        # Sums in float64: E[x²] − E[x]² loses digits in float32 when the mean is large.
        wide = input.double()
        count = torch.tensor(
            [input.shape[0] * input.shape[2] * input.shape[3]], dtype=torch.float64
        )
        local = torch.cat([wide.sum(dim=(0, 2, 3)), (wide * wide).sum(dim=(0, 2, 3)), count])
        total = _SumOverRanks.apply(local)  # type: ignore[no-untyped-call]
        channels = input.shape[1]
        n = total[-1]
        mean = total[:channels] / n
        var = (total[channels : 2 * channels] / n - mean * mean).clamp_min(0.0)
        with torch.no_grad():
            assert self.running_mean is not None
            assert self.running_var is not None
            momentum = 0.1 if self.momentum is None else self.momentum
            unbiased = var * (n / (n - 1).clamp_min(1.0))
            self.running_mean.mul_(1 - momentum).add_(
                mean.to(self.running_mean.dtype), alpha=momentum
            )
            self.running_var.mul_(1 - momentum).add_(
                unbiased.to(self.running_var.dtype), alpha=momentum
            )
            if self.num_batches_tracked is not None:
                self.num_batches_tracked.add_(1)
        scale = (var + self.eps).rsqrt()
        shape = (1, channels, 1, 1)
        out = (wide - mean.view(shape)) * scale.view(shape)
        out = out.to(input.dtype)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def _swap_batch_norm(
    module: nn.Module, to: type[nn.BatchNorm2d]
) -> list[tuple[nn.Module, str, nn.Module]]:
    """Replace every ``BatchNorm2d`` child by a ``to`` sharing its parameters and buffers."""
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in module.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.BatchNorm2d) and type(child) is not to:
                twin = to(
                    child.num_features,
                    eps=child.eps,
                    momentum=child.momentum,
                    affine=child.affine,
                    track_running_stats=child.track_running_stats,
                )
                # Same Parameter and buffer objects: the optimiser and state_dict see no change.
                twin._parameters = child._parameters
                twin._buffers = child._buffers
                twin.train(child.training)
                setattr(parent, name, twin)
                swapped.append((parent, name, child))
    return swapped


@contextmanager
def global_batch_norm(module: nn.Module) -> Iterator[None]:
    """Within the block, ``module``'s batch-norms use statistics over all ranks."""
    swapped = _swap_batch_norm(module, GlobalBatchNorm2d)
    try:
        yield
    finally:
        for parent, name, original in swapped:
            original.train(getattr(parent, name).training)
            setattr(parent, name, original)


class TrainStep(nn.Module):
    """What DistributedDataParallel wraps: inputs (images, or a frozen encoder's
    features) → logits at ``size``. Holds the model, so its trainable parameters
    are the ones DDP keeps in sync."""

    def __init__(self, model: nn.Module, *, from_features: bool) -> None:
        super().__init__()
        self.model = model
        self.from_features = from_features

    def forward(self, inputs: object, size: tuple[int, int]) -> torch.Tensor:
        features = inputs if self.from_features else self.model.features(inputs)  # type: ignore[operator]
        return self.model.logits(features, size)  # type: ignore[operator]
