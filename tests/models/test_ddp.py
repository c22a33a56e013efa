"""Global batch norm against torch's BatchNorm2d (one rank: they must agree exactly up to
float rounding), and the module swap that DDP training uses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from a2lc.models.ddp import GlobalBatchNorm2d, global_batch_norm


@pytest.fixture
def process_group(tmp_path) -> Iterator[None]:  # type: ignore[no-untyped-def]
    import torch.distributed as dist

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _twins() -> tuple[nn.BatchNorm2d, GlobalBatchNorm2d]:
    torch.manual_seed(0)
    plain = nn.BatchNorm2d(6)
    with torch.no_grad():
        plain.weight.uniform_(0.5, 1.5)
        plain.bias.uniform_(-0.5, 0.5)
    twin = GlobalBatchNorm2d(6)
    twin.load_state_dict(plain.state_dict())
    return plain, twin


@pytest.mark.usefixtures("process_group")
def test_forward_backward_and_running_statistics_are_batch_norms() -> None:
    plain, twin = _twins()
    x = (torch.randn(3, 6, 7, 5) * 4 + 10).requires_grad_()  # a large mean: float32 stress
    y = x.detach().clone().requires_grad_()
    weights = torch.randn(3, 6, 7, 5)
    for _ in range(2):  # twice: running statistics accumulate
        (plain(x) * weights).sum().backward()
        (twin(y) * weights).sum().backward()
    torch.testing.assert_close(twin(y), plain(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y.grad, x.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(twin.weight.grad, plain.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(twin.bias.grad, plain.bias.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(twin.running_mean, plain.running_mean)
    torch.testing.assert_close(twin.running_var, plain.running_var)
    assert int(twin.num_batches_tracked) == int(plain.num_batches_tracked) == 3


def test_without_a_process_group_or_in_eval_it_is_batch_norm() -> None:
    plain, twin = _twins()
    x = torch.randn(2, 6, 4, 4)
    torch.testing.assert_close(twin(x), plain(x))
    plain.eval()
    twin.eval()
    torch.testing.assert_close(twin(x), plain(x))


def test_swap_shares_parameters_and_is_undone() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)))
    weight = model[1].weight
    keys = list(model.state_dict())
    with global_batch_norm(model):
        assert type(model[1]) is GlobalBatchNorm2d
        assert type(model[2][0]) is GlobalBatchNorm2d
        assert model[1].weight is weight
        assert list(model.state_dict()) == keys
        model.eval()
    assert type(model[1]) is nn.BatchNorm2d
    assert not model[1].training  # the mode set inside the block is kept


@pytest.mark.usefixtures("process_group")
def test_an_empty_part_of_the_batch_steps_without_error() -> None:
    _, twin = _twins()
    x = torch.zeros(0, 6, 7, 5, requires_grad=True)
    # One rank alone: its empty part is the whole batch, the statistics are 0/0 (NaN)
    # and must not crash the kernels; with other ranks they come from their parts.
    out = twin(x)
    out.sum().backward()
    assert x.grad is not None
    assert x.grad.shape == x.shape
