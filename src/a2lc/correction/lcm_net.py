"""The LCM network (torch): C→256→128→64→C with ReLU and a softmax output."""

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
