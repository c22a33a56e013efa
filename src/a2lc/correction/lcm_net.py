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

    @torch.no_grad()
    def accumulate_gradients(
        self, features: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor
    ) -> None:
        """Add to every parameter's ``.grad`` the gradient of
        ``cross_entropy(self(features), targets, weight=weight)`` (the reference's double
        softmax), without building an autograd graph.

        The same kernels autograd runs, in the same order (``addmm`` forward; its
        backward as ``grad.t() @ input``, ``grad.sum(0)``, ``grad @ weight``; the
        softmax, log-softmax, NLL and ReLU backward kernels), so the gradients are
        bit-identical to ``loss.backward()``'s, at a fraction of its per-step cost:
        the network is too small for anything but the bookkeeping to matter.
        ``features``: ``(B, C)``; ``targets``: ``(B,)`` int64; ``weight``: ``(C,)``.
        """
        layers = [m for m in self.mlp if isinstance(m, nn.Linear)]
        activations = [features]
        h = features
        for i, layer in enumerate(layers):
            h = torch.addmm(layer.bias, h, layer.weight.t())
            if i < len(layers) - 1:
                h = torch.relu(h)
            activations.append(h)
        aten = torch.ops.aten
        probs = torch._softmax(h, 1, False)
        log_probs = torch._log_softmax(probs, 1, False)
        loss, total_weight = aten.nll_loss_forward(log_probs, targets, weight, 1, -100)
        grad = aten.nll_loss_backward(
            torch.ones_like(loss), log_probs, targets, weight, 1, -100, total_weight
        )
        grad = aten._log_softmax_backward_data(grad, log_probs, 1, log_probs.dtype)
        grad = aten._softmax_backward_data(grad, probs, 1, probs.dtype)
        for i in range(len(layers) - 1, -1, -1):
            layer = layers[i]
            assert layer.weight.grad is not None
            assert layer.bias.grad is not None
            layer.weight.grad.add_(grad.t().mm(activations[i]))
            layer.bias.grad.add_(grad.sum(0))
            if i:
                grad = aten.threshold_backward(grad.mm(layer.weight), activations[i], 0)


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
