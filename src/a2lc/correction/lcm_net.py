"""The LCM network (torch): C→256→128→64→C with ReLU and a softmax output, and its optimiser."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn


class LCMNet(nn.Module):
    def __init__(self, num_classes: int, *, hidden: Sequence[int] = (256, 128, 64)) -> None:
        super().__init__()
        sizes = [num_classes, *hidden]
        layers: list[nn.Module] = []
        for cin, cout in itertools.pairwise(sizes):
            layers += [nn.Linear(cin, cout), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], num_classes))
        self.mlp = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` mean probabilities → ``(B, C)`` softmax output."""
        return self.mlp(features).softmax(dim=1)


class FlatAdam:
    """``torch.optim.Adam`` (no weight decay, no AMSGrad) on one flat buffer.

    The module's parameters and gradients become views of two flat tensors, so a
    step is six elementwise operations on one buffer instead of about ten per
    parameter tensor plus the optimiser's bookkeeping. The arithmetic is that of
    torch's single-tensor Adam, operation for operation, so results are
    bit-identical to ``torch.optim.Adam(module.parameters(), lr=lr)``.
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        params = [p for p in module.parameters() if p.requires_grad]
        total = sum(p.numel() for p in params)
        self.param = torch.empty(total, dtype=torch.float32)
        self.grad = torch.zeros(total, dtype=torch.float32)
        offset = 0
        with torch.no_grad():
            for p in params:
                n = p.numel()
                self.param[offset : offset + n].copy_(p.reshape(-1))
                p.data = self.param[offset : offset + n].view_as(p)
                p.grad = self.grad[offset : offset + n].view_as(p)
                offset += n
        self.exp_avg = torch.zeros(total, dtype=torch.float32)
        self.exp_avg_sq = torch.zeros(total, dtype=torch.float32)
        self.lr = lr
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.steps = 0

    def zero_grad(self) -> None:
        """Zero the gradients in place (backward accumulates into the flat buffer)."""
        self.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        beta1, beta2 = self.beta1, self.beta2
        self.exp_avg.lerp_(self.grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(self.grad, self.grad, value=1 - beta2)
        bias_correction1 = 1 - beta1**self.steps
        bias_correction2 = 1 - beta2**self.steps
        denom = (self.exp_avg_sq.sqrt() / bias_correction2**0.5).add_(self.eps)
        self.param.addcdiv_(self.exp_avg, denom, value=-(self.lr / bias_correction1))
