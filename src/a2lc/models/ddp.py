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
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def _sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    total = tensor.clone()
    dist.all_reduce(total)
    return total


def _global_statistics(input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Per-channel mean and biased variance (float64) over every rank's ``input``, and
    the global pixel count. Each rank's own statistics are BatchNorm2d's (float32);
    they are combined in float64, where E[x²] − E[x]² keeps its digits."""
    channels = input.shape[1]
    pixels = input.shape[0] * input.shape[2] * input.shape[3]
    if pixels:
        # torch's batch-norm statistics kernel (biased variance): several times faster
        # on CPU than torch.var_mean over (N, H, W).
        mean_local, var_local = torch.batch_norm_update_stats(input, None, None, 0.0)
        mean64, var64 = mean_local.double(), var_local.double()
    else:  # an empty part of the batch
        mean64 = var64 = torch.zeros(channels, dtype=torch.float64, device=input.device)
    count = torch.tensor([float(pixels)], dtype=torch.float64, device=input.device)
    total = _sum_over_ranks(torch.cat([pixels * mean64, pixels * (var64 + mean64 * mean64), count]))
    n = float(total[-1])
    mean = total[:channels] / n
    var = (total[channels : 2 * channels] / n - mean * mean).clamp_min(0.0)
    return mean, var, n


class _GlobalBatchNorm(torch.autograd.Function):
    """Training-mode batch norm with statistics over all ranks.

    Forward and backward are torch's fused eval-mode batch-norm kernels fed the
    global statistics; backward adds the terms through the statistics, from the
    two per-channel sums (of ``dy`` and ``dy·x̂``) summed over ranks. The weight and
    bias gradients stay this rank's: DistributedDataParallel combines them over
    ranks like any parameter's.
    """

    @staticmethod
    def forward(
        ctx: Any,
        input: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        mean: torch.Tensor,
        var: torch.Tensor,
        count: float,
        eps: float,
    ) -> torch.Tensor:
        mean32, var32 = mean.to(input.dtype), var.to(input.dtype)
        ctx.save_for_backward(input, weight, mean32, var32)
        ctx.count, ctx.eps = count, eps
        return F.batch_norm(input, mean32, var32, weight, bias, training=False, eps=eps)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        input, weight, mean, var = ctx.saved_tensors
        # torch's eval-mode backward kernel, in one pass: dy·w·invstd and this rank's
        # Σ dy·x̂ (the weight's gradient) and Σ dy (the bias's).
        if input.numel():
            direct, sum_dy_xhat, sum_dy = torch.ops.aten.native_batch_norm_backward(
                grad, input, weight, mean, var, None, None, False, ctx.eps, [True, True, True]
            )
        else:  # an empty part of the batch (the kernel divides by its size)
            direct, sum_dy_xhat, sum_dy = (
                grad.clone(),
                torch.zeros_like(mean),
                torch.zeros_like(mean),
            )
        both = _sum_over_ranks(torch.cat([sum_dy, sum_dy_xhat]).double())
        channels = sum_dy.numel()
        mean_dy = (both[:channels] / ctx.count).to(grad.dtype)
        mean_dy_xhat = (both[channels:] / ctx.count).to(grad.dtype)
        # dx = w·invstd·(dy − mean(dy) − x̂·mean(dy·x̂)) = direct + b·x + c per channel.
        invstd = (var.double() + ctx.eps).rsqrt().to(grad.dtype)
        a = weight * invstd
        b = -a * invstd * mean_dy_xhat
        c = -a * mean_dy - b * mean
        shape = (1, -1, 1, 1)
        grad_input = direct.addcmul_(input, b.view(shape)).add_(c.view(shape))
        return grad_input, sum_dy_xhat, sum_dy, None, None, None, None


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training statistics cover every rank's batch.

    Forward and backward are those of one batch norm over the global batch (see
    :class:`_GlobalBatchNorm`), on any backend (gloo on CPU, NCCL on GPU); a rank
    may hold an empty part of the batch. In eval mode, or without a process group,
    it is plain ``BatchNorm2d``. Needs affine weights and running statistics (the
    models here have both).
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        if not self.training or not (dist.is_available() and dist.is_initialized()):
            return super().forward(input)
        assert self.running_mean is not None
        assert self.running_var is not None
        with torch.no_grad():
            mean, var, n = _global_statistics(input)
            momentum = 0.1 if self.momentum is None else self.momentum
            unbiased = var * (n / max(n - 1.0, 1.0))
            self.running_mean.mul_(1 - momentum).add_(
                mean.to(self.running_mean.dtype), alpha=momentum
            )
            self.running_var.mul_(1 - momentum).add_(
                unbiased.to(self.running_var.dtype), alpha=momentum
            )
            if self.num_batches_tracked is not None:
                self.num_batches_tracked.add_(1)
        out: torch.Tensor = _GlobalBatchNorm.apply(  # type: ignore[no-untyped-call]
            input, self.weight, self.bias, mean, var, n, self.eps
        )
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
